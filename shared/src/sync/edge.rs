//! The edge's side: upload the log from the hub's receipt on, then images.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::cert::{KeyPurpose, SignerCert, TrustAnchor};
use crate::control::SignedPolicy;
use crate::crypto::SecretKey;
use crate::log::SignedEntry;
use crate::types::{DeviceId, Hash32, UnixMillis};
use crate::wire::{
    sign_checkpoint, Entries, Frame, HeldList, Hello, ImageBlob, Lane, Refusal, RefusalCode,
    SignedReceipt, PROTOCOL_VERSION,
};

use super::Now;

/// Most images the hub's requests may hold waiting at the edge.
const MAX_WANTED: usize = 4 * crate::wire::MAX_WANTED_IMAGES;

/// What the core needs to read from the edge's store.
pub trait LogSource {
    /// Entries in the log.
    fn log_len(&self) -> u64;
    /// Canonical bytes of entries from `first`, at most `max_count` of them
    /// and (beyond the first) at most `max_bytes` in total, ending before
    /// any entry a loss record covers ([`Self::loss_at`]).
    fn entries(&self, first: u64, max_count: usize, max_bytes: usize) -> Vec<Vec<u8>>;
    /// Images waiting for upload, in log order: (entry seq, hash), at most
    /// `limit`, all of entries below `below`.
    fn pending_images(&self, below: u64, limit: usize) -> Vec<(u64, Hash32)>;
    /// An image's bytes.
    fn image(&self, hash: &Hash32) -> Option<Vec<u8>>;
    /// The node's signed loss record ([`crate::log::EntryKind::Loss`],
    /// canonical bytes) whose lost range starts at `first`, if it wrote one.
    fn loss_at(&self, first: u64) -> Option<Vec<u8>> {
        let _ = first;
        None
    }
    /// The hash of entry `seq` of the log, `None` if there is no such entry
    /// or it cannot be read (for a lost entry, the hash its loss record
    /// states). Receipts are checked against it.
    fn entry_hash(&self, seq: u64) -> Option<Hash32> {
        self.entries(seq, 1, usize::MAX)
            .first()
            .and_then(|b| SignedEntry::decode(b).ok())
            .filter(|e| e.seq() == seq)
            .map(|e| e.hash())
    }
}

/// Tunables of the edge core; `Default` suits a real QUIC link.
#[derive(Debug, Clone)]
pub struct SyncTuning {
    /// Entries per frame.
    pub batch_entries: usize,
    /// Bytes per frame (beyond the first entry).
    pub batch_bytes: usize,
    /// Entries sent and not yet acknowledged, at most.
    pub window_entries: u64,
    /// Images sent and not yet acknowledged, at most (a bound on
    /// bookkeeping; the byte window below is what sizes the lane).
    pub window_images: usize,
    /// Image bytes sent and not yet acknowledged: the window follows the
    /// link's bandwidth-delay product (see [`EdgeSync::set_congestion_window`]), never
    /// below `min` nor above `max`. One image always may be in flight, so
    /// an image larger than the window still moves.
    pub window_image_bytes_min: usize,
    pub window_image_bytes_max: usize,
    /// With no acknowledgement for this long, resend from the last receipt.
    pub retransmit_after: Duration,
    /// Reconnect backoff: first delay and cap (each doubles, with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// While connected, the edge tells the hub the policy version it
    /// enforces this often, and the hub confirms it (or sends a newer one):
    /// a policy stays refreshed on a connection that lasts for days.
    pub policy_refresh: Duration,
    /// The link is metered (cellular): images wait unless allowed.
    pub metered: bool,
    pub images_on_metered: bool,
    /// After a welcome, entries wait at most this long for the bulk lists
    /// the hub sent before it to be applied (the backlog is matched against
    /// current lists); a list that cannot be applied never blocks uploads
    /// for longer.
    pub hotlist_wait: Duration,
}

impl Default for SyncTuning {
    fn default() -> Self {
        SyncTuning {
            batch_entries: 256,
            batch_bytes: 256 * 1024,
            window_entries: 4096,
            window_images: 1024,
            window_image_bytes_min: 64 * 1024,
            window_image_bytes_max: 8 * 1024 * 1024,
            retransmit_after: Duration::from_secs(20),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            policy_refresh: Duration::from_secs(600),
            metered: false,
            images_on_metered: false,
            hotlist_wait: Duration::from_secs(30),
        }
    }
}

/// A frame to send, on its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub lane: Lane,
    pub frame: Frame,
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeEvent {
    /// The hub durably holds the log up to the receipt: persist it.
    Acked(SignedReceipt),
    /// The hub holds this image: it may leave the upload queue.
    ImageAcked { seq: u64, hash: Hash32 },
    /// The hub refused something; permanent ones need a person.
    Refused(Refusal),
    /// The hub sent something that cannot be right (a bad receipt).
    Protocol(String),
    /// The hub's receipt does not describe this node's log (it holds more
    /// entries than the node has, or a different entry at the end): the
    /// node's store was replaced or another device uses its identity.
    /// Uploads stop; a person must resolve it. The driver closes the
    /// connection with [`RefusalCode::IdentityConflict`]'s close code.
    IdentityConflict(String),
    /// The hub holds less of the log than it had acknowledged before (it
    /// was restored from a backup): entries and images from `now_holds` on
    /// are sent again.
    HubBehind { had: u64, now_holds: u64 },
    /// Entry `seq` of the node's own log cannot be read from its store (the
    /// node's fault, not the hub's): the driver records a signed loss for
    /// it (and any unreadable entries right after), which
    /// [`LogSource::loss_at`] then gives; uploads wait until it does.
    LocalLoss { seq: u64 },
    /// The hub sent a policy newer than the one held, signed by a key the
    /// CA certified for the policy: store it (refreshed now), then call
    /// [`EdgeSync::policy_applied`].
    Policy(Box<SignedPolicy>),
    /// The hub confirmed that the policy held is its current one: the
    /// policy counts as refreshed now.
    PolicyRefreshed { version: u64 },
    /// The hub offered an older policy than the one held: not applied.
    PolicyIgnored { held: u64, offered: u64 },
    /// A policy that is not the hub's, or not a valid one: not applied; the
    /// driver logs it.
    PolicyRefused(String),
    /// The hub sent its legal holds document: merge it into the node's
    /// (and count the holds as refreshed now). If the merge changed the
    /// node's document, hand it back with [`EdgeSync::set_holds`].
    Holds(Vec<u8>),
    /// The hub sent its local hotlist entries document: merge it into the
    /// node's. If the merge changed the node's document, hand it back with
    /// [`EdgeSync::set_local_entries`].
    LocalEntries(Vec<u8>),
    /// The hub sent the change from the generation of bulk list `source`
    /// the node holds (`from`) to generation `to`: apply it (the result is
    /// checked against the hub's signature), store it, then call
    /// [`EdgeSync::hotlist_applied`], or [`EdgeSync::hotlist_failed`] if it
    /// could not be applied (the hub then sends the list whole).
    HotlistDelta {
        source: String,
        from: u64,
        to: u64,
        delta: Vec<u8>,
    },
    /// The hub sent generation `generation` of `source` whole (all its
    /// chunks, in order): check, store and report it as for a delta.
    HotlistFull {
        source: String,
        generation: u64,
        bytes: Vec<u8>,
    },
    /// The hub sent bulk-list frames that do not fit together (a delta
    /// from a generation the node does not hold, chunks out of order):
    /// nothing applied; the node told the hub what it holds.
    HotlistRefused { source: String, why: String },
    /// The hub holds an older policy (`policy`) or older generations of
    /// the lists `sources` than this node (it was restored from a backup):
    /// answer with [`EdgeSync::show_held`], giving what the hub signed.
    ShowHeld { policy: bool, sources: Vec<String> },
}

/// A whole generation arriving in chunks.
#[derive(Debug)]
struct Assembly {
    generation: u64,
    total: u64,
    bytes: Vec<u8>,
}

/// Where the link stands, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection; the next attempt is due at the given time.
    Down { retry_at: Now },
    /// Connected, waiting for the hub's welcome.
    Handshake,
    /// Uploading.
    Ready,
    /// Refused permanently until restarted or the backoff cap passes.
    Refused { retry_at: Now },
    /// The hub's record of this node is not this node's log: no uploads;
    /// the next check is at `retry_at`.
    Conflict { retry_at: Now },
}

/// The edge's sync core. See the module docs of [`crate::sync`].
#[derive(Debug)]
pub struct EdgeSync {
    device: DeviceId,
    config: SyncTuning,
    /// The deployment's CA: what the hub's signing keys' certificates are
    /// checked against.
    anchor: TrustAnchor,
    /// The certificate of the key that signs this connection's receipts,
    /// told in the hub's welcome and checked against the CA.
    receipt_signer: Option<SignerCert>,
    /// The node's key and the wall-clock time at [`Now`] zero: each entries
    /// frame carries a checkpoint signed with them.
    signer: Option<(SecretKey, UnixMillis)>,
    state: LinkState,
    /// The hub's latest valid receipt says it holds `0..acked`.
    acked: u64,
    /// Next entry to send on this connection.
    next_send: u64,
    /// When the oldest unacknowledged frame went out (or progress was last made).
    last_progress: Option<Now>,
    hello_sent_at: Option<Now>,
    /// Image hash → (entry seq, when sent, bytes).
    images_in_flight: BTreeMap<Hash32, (u64, Now, usize)>,
    /// Sum of the bytes of `images_in_flight`.
    image_bytes_in_flight: usize,
    /// The image window in bytes, from the link's path estimate.
    image_window: usize,
    /// When the hub last acknowledged an image on this connection. An
    /// image is resent only after `retransmit_after` without any image
    /// acknowledged since it went out: behind a full window on a slow link
    /// an image may wait longer than that for its turn, and is not lost.
    image_progress: Option<Now>,
    /// Images acknowledged whose removal from the store's queue may not
    /// have happened yet: never resend these.
    images_done: VecDeque<Hash32>,
    /// Images the hub asked for (it lacks them), sent before the queue's.
    wanted: VecDeque<(u64, Hash32)>,
    /// The entry of the node's own log last found unreadable (reported once).
    loss_reported: Option<u64>,
    /// Version of the policy the node enforces (0: none yet).
    policy_version: u64,
    /// When the hub was last told (hello or report) which policy is held.
    policy_told_at: Option<Now>,
    /// The node's saved legal holds document: sent after each welcome and
    /// whenever it changes while connected.
    holds: Option<Vec<u8>>,
    /// The node's saved local hotlist entries document: sent after each
    /// welcome and whenever it changes while connected.
    local_entries: Option<Vec<u8>>,
    /// The generation of each bulk list the node holds (told in hello).
    hotlists: BTreeMap<String, u64>,
    /// Whole generations being received, by source (at most
    /// [`crate::wire::MAX_HOTLIST_SOURCES`]).
    assembling: BTreeMap<String, Assembly>,
    /// Bulk lists handed to the driver and not yet applied (or failed):
    /// entries wait for them until `hotlist_wait_until`.
    hotlists_pending: usize,
    hotlist_wait_until: Option<Now>,
    attempt: u32,
    rng: u64,
    out: VecDeque<Outgoing>,
    events: VecDeque<EdgeEvent>,
}

impl EdgeSync {
    /// A core for `device`, whose hub had acknowledged `0..acked` when last
    /// heard of. What the hub signs (receipts, policy) is checked against
    /// `anchor`, the deployment's CA.
    pub fn new(
        device: DeviceId,
        config: SyncTuning,
        acked: u64,
        seed: u64,
        anchor: TrustAnchor,
    ) -> Self {
        let image_window = config.window_image_bytes_min.max(1);
        EdgeSync {
            device,
            config,
            anchor,
            receipt_signer: None,
            signer: None,
            state: LinkState::Down {
                retry_at: Now::ZERO,
            },
            acked,
            next_send: acked,
            last_progress: None,
            hello_sent_at: None,
            images_in_flight: BTreeMap::new(),
            image_bytes_in_flight: 0,
            image_window,
            image_progress: None,
            images_done: VecDeque::new(),
            wanted: VecDeque::new(),
            loss_reported: None,
            policy_version: 0,
            policy_told_at: None,
            holds: None,
            local_entries: None,
            hotlists: BTreeMap::new(),
            assembling: BTreeMap::new(),
            hotlists_pending: 0,
            hotlist_wait_until: None,
            attempt: 0,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Sign a checkpoint of the log with every entries frame, with the
    /// node's log key; `wall_at_zero` is the wall-clock time at [`Now`] zero
    /// (the core has no clock of its own).
    pub fn with_checkpoints(mut self, key: SecretKey, wall_at_zero: UnixMillis) -> Self {
        self.signer = Some((key, wall_at_zero));
        self
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The policy version the node holds (from its store, at start): told
    /// to the hub in every hello.
    pub fn set_policy_version(&mut self, version: u64) {
        self.policy_version = version;
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// How often to have the policy confirmed while connected (the driver
    /// sets a fraction of the policy's `max_stale`).
    pub fn set_policy_refresh(&mut self, every: Duration) {
        self.config.policy_refresh = every.max(Duration::from_millis(100));
    }

    /// The node's legal holds document changed (or is known at start):
    /// send it to the hub now if connected, and after every welcome.
    pub fn set_holds(&mut self, doc: Vec<u8>) {
        if self.holds.as_ref() == Some(&doc) {
            return;
        }
        self.holds = Some(doc);
        if matches!(self.state, LinkState::Ready) {
            self.send_holds();
        }
    }

    /// The node's local hotlist entries document changed (or is known at
    /// start): send it to the hub now if connected, and after every welcome.
    pub fn set_local_entries(&mut self, doc: Vec<u8>) {
        if self.local_entries.as_ref() == Some(&doc) {
            return;
        }
        self.local_entries = Some(doc);
        if matches!(self.state, LinkState::Ready) {
            self.send_local_entries();
        }
    }

    fn send_local_entries(&mut self) {
        if let Some(doc) = &self.local_entries {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::LocalEntries { doc: doc.clone() },
            });
        }
    }

    /// The node holds generation `generation` of bulk list `source` (from
    /// its store at start): told to the hub in every hello.
    pub fn set_hotlist_held(&mut self, source: &str, generation: u64) {
        self.hotlists.insert(source.to_owned(), generation);
    }

    /// The bulk lists the node holds: (source, generation).
    pub fn hotlists_held(&self) -> Vec<HeldList> {
        self.hotlists
            .iter()
            .map(|(source, generation)| HeldList {
                source: source.clone(),
                generation: *generation,
            })
            .collect()
    }

    /// The driver stored generation `generation` of `source` (from an
    /// [`EdgeEvent::HotlistDelta`] or [`EdgeEvent::HotlistFull`]): match
    /// against it, and tell the hub.
    pub fn hotlist_applied(&mut self, source: &str, generation: u64) {
        self.hotlists.insert(source.to_owned(), generation);
        self.hotlist_done();
        self.tell_hotlist(source);
    }

    /// Whether entries wait for bulk lists being applied.
    pub fn hotlists_pending(&self) -> usize {
        self.hotlists_pending
    }

    fn hotlist_done(&mut self) {
        self.hotlists_pending = self.hotlists_pending.saturating_sub(1);
        if self.hotlists_pending == 0 {
            self.hotlist_wait_until = None;
        }
    }

    fn hotlist_handed(&mut self, now: Now) {
        self.hotlists_pending += 1;
        if self.hotlist_wait_until.is_none() {
            self.hotlist_wait_until = Some(now + self.config.hotlist_wait);
        }
    }

    /// What came for `source` could not be applied (it does not verify, or
    /// could not be stored): the node keeps what it holds and tells the hub
    /// so, which then sends the list whole.
    pub fn hotlist_failed(&mut self, source: &str) {
        self.assembling.remove(source);
        self.hotlist_done();
        self.tell_hotlist(source);
    }

    fn tell_hotlist(&mut self, source: &str) {
        if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            let generation = self.hotlists.get(source).copied().unwrap_or(0);
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HotlistApplied {
                    source: source.to_owned(),
                    generation,
                },
            });
        }
    }

    fn refuse_hotlist(&mut self, source: String, why: String) {
        self.assembling.remove(&source);
        self.tell_hotlist(&source);
        self.events
            .push_back(EdgeEvent::HotlistRefused { source, why });
    }

    /// A piece of a whole generation: kept until the last one arrives.
    fn hotlist_chunk(
        &mut self,
        now: Now,
        source: String,
        generation: u64,
        total: u64,
        offset: u64,
        chunk: Vec<u8>,
    ) {
        if offset == 0 {
            if !self.assembling.contains_key(&source)
                && self.assembling.len() >= crate::wire::MAX_HOTLIST_SOURCES
            {
                return self.refuse_hotlist(source, "too many lists arriving at once".into());
            }
            self.assembling.insert(
                source.clone(),
                Assembly {
                    generation,
                    total,
                    // Grown chunk by chunk: `total` is the sender's word.
                    bytes: Vec::new(),
                },
            );
        }
        let Some(a) = self.assembling.get_mut(&source) else {
            return self.refuse_hotlist(
                source,
                format!("a piece of generation {generation} without its start"),
            );
        };
        let end = offset.saturating_add(chunk.len() as u64);
        if a.generation != generation
            || a.total != total
            || a.bytes.len() as u64 != offset
            || end > total
            || total > crate::wire::MAX_GENERATION_BYTES
        {
            return self.refuse_hotlist(
                source,
                format!("a piece of generation {generation} out of order (at {offset})"),
            );
        }
        a.bytes.extend_from_slice(&chunk);
        if a.bytes.len() as u64 == a.total {
            if let Some(a) = self.assembling.remove(&source) {
                self.hotlist_handed(now);
                self.events.push_back(EdgeEvent::HotlistFull {
                    source,
                    generation: a.generation,
                    bytes: a.bytes,
                });
            }
        }
    }

    /// Answer an [`EdgeEvent::ShowHeld`]: the signed policy the node holds
    /// (encoded), and the signed header of each generation it holds of the
    /// lists asked for.
    pub fn show_held(&mut self, policy: Option<Vec<u8>>, headers: Vec<Vec<u8>>) {
        if !matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            return;
        }
        if let Some(policy) = policy {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HeldPolicy { policy },
            });
        }
        for header in headers {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HeldList { header },
            });
        }
    }

    fn send_holds(&mut self) {
        if let Some(doc) = &self.holds {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::Holds { doc: doc.clone() },
            });
        }
    }

    /// The driver stored the policy of an [`EdgeEvent::Policy`]: enforce
    /// it, and tell the hub.
    pub fn policy_applied(&mut self, version: u64, now: Now) {
        self.policy_version = self.policy_version.max(version);
        self.tell_policy(now);
    }

    fn tell_policy(&mut self, now: Now) {
        if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            self.policy_told_at = Some(now);
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::PolicyApplied {
                    version: self.policy_version,
                },
            });
        }
    }

    /// A policy frame from the hub: apply only a newer version that a key
    /// the CA certified for the policy signed.
    fn offered_policy(&mut self, bytes: &[u8], now: Now) {
        let p = match SignedPolicy::decode_verified(bytes, &self.anchor) {
            Ok(p) => p,
            Err(e) => {
                self.events
                    .push_back(EdgeEvent::PolicyRefused(e.to_string()));
                return;
            }
        };
        let (held, offered) = (self.policy_version, p.version());
        if offered > held {
            self.events.push_back(EdgeEvent::Policy(Box::new(p)));
        } else if offered == held {
            self.events
                .push_back(EdgeEvent::PolicyRefreshed { version: held });
        } else {
            self.events
                .push_back(EdgeEvent::PolicyIgnored { held, offered });
            self.tell_policy(now);
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn set_metered(&mut self, metered: bool) {
        self.config.metered = metered;
    }

    /// The transport's congestion window (bytes it lets be in flight; with
    /// BBR about twice its estimate of the bandwidth-delay product). The
    /// image window becomes twice that, clamped to the configured bounds:
    /// enough that the transport, not this window, limits the lane (an
    /// image is acknowledged only after the hub committed it, a little
    /// after it arrived), while only a few round trips of images wait in
    /// the send buffer, so entries and control are not queued behind them
    /// and no image waits long enough to be resent needlessly.
    pub fn set_congestion_window(&mut self, cwnd: u64) {
        let bdp = usize::try_from(cwnd).unwrap_or(usize::MAX);
        self.image_window = bdp.saturating_mul(2).clamp(
            self.config.window_image_bytes_min.max(1),
            self.config
                .window_image_bytes_max
                .max(self.config.window_image_bytes_min.max(1)),
        );
    }

    /// The image window in bytes now.
    pub fn image_window(&self) -> usize {
        self.image_window
    }

    /// Images sent and not yet acknowledged: (count, bytes).
    pub fn images_in_flight(&self) -> (usize, usize) {
        (self.images_in_flight.len(), self.image_bytes_in_flight)
    }

    fn clear_images_in_flight(&mut self) {
        self.images_in_flight.clear();
        self.image_bytes_in_flight = 0;
        self.image_progress = None;
    }

    /// When an image sent at `sent` counts as lost if still unacknowledged.
    fn image_deadline(&self, sent: Now) -> Now {
        self.image_progress.map_or(sent, |p| p.max(sent)) + self.config.retransmit_after
    }

    fn forget_image(&mut self, hash: &Hash32) -> Option<u64> {
        let (seq, _, bytes) = self.images_in_flight.remove(hash)?;
        self.image_bytes_in_flight = self.image_bytes_in_flight.saturating_sub(bytes);
        Some(seq)
    }

    /// Whether the driver should try to connect now.
    pub fn wants_link(&self, now: Now) -> bool {
        match self.state {
            LinkState::Down { retry_at }
            | LinkState::Refused { retry_at }
            | LinkState::Conflict { retry_at } => now >= retry_at,
            _ => false,
        }
    }

    /// A connection is up: greet the hub.
    pub fn link_up(&mut self, now: Now, log_len: u64) {
        self.state = LinkState::Handshake;
        // This connection's hub tells its receipt key in its welcome.
        self.receipt_signer = None;
        self.out.clear();
        self.assembling.clear();
        self.hotlists_pending = 0;
        self.hotlist_wait_until = None;
        self.clear_images_in_flight();
        self.wanted.clear();
        self.send_hello(now, log_len);
    }

    fn send_hello(&mut self, now: Now, log_len: u64) {
        self.hello_sent_at = Some(now);
        self.out.push_back(Outgoing {
            lane: Lane::Control,
            frame: Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                device: self.device.clone(),
                log_size: log_len,
                policy_version: self.policy_version,
                hotlists: self.hotlists_held(),
            }),
        });
    }

    /// The connection dropped or could not be made: back off and retry.
    pub fn link_down(&mut self, now: Now) {
        if matches!(
            self.state,
            LinkState::Refused { .. } | LinkState::Conflict { .. }
        ) {
            return;
        }
        let delay = self.backoff();
        self.state = LinkState::Down {
            retry_at: now + delay,
        };
        self.out.clear();
        self.clear_images_in_flight();
        self.hello_sent_at = None;
        self.last_progress = None;
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff(&mut self) -> Duration {
        let exp = self
            .config
            .backoff_min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.config.backoff_max);
        self.attempt = self.attempt.saturating_add(1);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let r = if jitter_ms == 0 {
            0
        } else {
            self.next_rand() % (jitter_ms + 1)
        };
        half + Duration::from_millis(r)
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic under a test's seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A frame arrived from the hub; `src` is the node's own log, which
    /// every receipt is checked against.
    pub fn handle_frame(&mut self, frame: Frame, now: Now, src: &dyn LogSource) {
        match frame {
            Frame::Welcome(w) => {
                if !matches!(self.state, LinkState::Handshake) {
                    return;
                }
                match self
                    .anchor
                    .check_signer_der(&w.receipt_cert, KeyPurpose::Receipt)
                {
                    Ok(c) => self.receipt_signer = Some(c),
                    Err(e) => {
                        self.receipt_signer = None;
                        self.events.push_back(EdgeEvent::Protocol(format!(
                            "the hub's receipt certificate is refused: {e}"
                        )));
                        return;
                    }
                }
                if !self.receipt_ok(&w.receipt) {
                    return;
                }
                if let Err(why) = receipt_matches_log(&w.receipt, src) {
                    self.conflict(now, why);
                    return;
                }
                self.attempt = 0;
                self.state = LinkState::Ready;
                self.policy_told_at = Some(now);
                let n = w.receipt.receipt.next_seq;
                let had = self.acked;
                self.acked = n;
                self.next_send = self.acked;
                self.last_progress = Some(now);
                // The receipt first: once the driver reports that the hub
                // lost reads, what the hub holds now is already recorded.
                self.events.push_back(EdgeEvent::Acked(w.receipt));
                self.send_holds();
                self.send_local_entries();
                if n < had {
                    // The hub lost what it had acknowledged (a restore):
                    // images acknowledged by the old copy go again too.
                    self.images_done.clear();
                    self.events
                        .push_back(EdgeEvent::HubBehind { had, now_holds: n });
                }
            }
            Frame::Ack(r) => {
                if !matches!(self.state, LinkState::Ready) || !self.receipt_ok(&r) {
                    return;
                }
                let n = r.receipt.next_seq;
                if n > self.acked {
                    if let Err(why) = receipt_matches_log(&r, src) {
                        self.conflict(now, why);
                        return;
                    }
                    self.acked = n;
                    self.last_progress = Some(now);
                    self.events.push_back(EdgeEvent::Acked(r));
                }
                if self.next_send < self.acked {
                    self.next_send = self.acked;
                }
            }
            Frame::ImageAck { hash } => {
                if let Some(seq) = self.forget_image(&hash) {
                    self.image_progress = Some(now);
                    if self.images_done.len() >= 4096 {
                        self.images_done.pop_front();
                    }
                    self.images_done.push_back(hash);
                    self.events.push_back(EdgeEvent::ImageAcked { seq, hash });
                }
            }
            Frame::Refused(r) => {
                // An entry refused as altered that fails this node's own
                // check too was damaged in its store: the node's fault,
                // recorded as lost, and the reads after it go on.
                if let (Some(seq), RefusalCode::Edited | RefusalCode::BadSignature) =
                    (r.seq, r.code)
                {
                    if seq >= self.acked && self.damaged_locally(seq, src) {
                        self.next_send = self.acked;
                        self.loss_reported = Some(seq);
                        self.events.push_back(EdgeEvent::LocalLoss { seq });
                        return;
                    }
                }
                if r.code.is_permanent() {
                    self.state = LinkState::Refused {
                        retry_at: now + self.config.backoff_max,
                    };
                    self.out.clear();
                } else {
                    self.next_send = self.acked;
                }
                self.events.push_back(EdgeEvent::Refused(r));
            }
            Frame::WantImages { images } => {
                // The hub lacks these (a restore): whatever it acknowledged
                // before does not count.
                for (seq, hash) in images {
                    if self.wanted.len() >= MAX_WANTED {
                        break;
                    }
                    self.images_done.retain(|h| *h != hash);
                    if !self.wanted.iter().any(|(_, h)| *h == hash) {
                        self.wanted.push_back((seq, hash));
                    }
                }
            }
            Frame::Policy { policy } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.offered_policy(&policy, now);
                }
            }
            Frame::PolicyCurrent { version } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    if version == self.policy_version && version > 0 {
                        self.events
                            .push_back(EdgeEvent::PolicyRefreshed { version });
                    } else if version < self.policy_version {
                        self.events.push_back(EdgeEvent::PolicyIgnored {
                            held: self.policy_version,
                            offered: version,
                        });
                    }
                }
            }
            Frame::Holds { doc } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events.push_back(EdgeEvent::Holds(doc));
                }
            }
            Frame::LocalEntries { doc } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events.push_back(EdgeEvent::LocalEntries(doc));
                }
            }
            Frame::HotlistDelta {
                source,
                from,
                to,
                delta,
            } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    let held = self.hotlists.get(&source).copied().unwrap_or(0);
                    if held != from {
                        self.refuse_hotlist(
                            source,
                            format!("a delta from generation {from}, but this node holds {held}"),
                        );
                    } else {
                        self.hotlist_handed(now);
                        self.events.push_back(EdgeEvent::HotlistDelta {
                            source,
                            from,
                            to,
                            delta,
                        });
                    }
                }
            }
            Frame::HotlistFull {
                source,
                generation,
                total,
                offset,
                chunk,
            } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.hotlist_chunk(now, source, generation, total, offset, chunk);
                }
            }
            Frame::ShowHeld { policy, sources } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events
                        .push_back(EdgeEvent::ShowHeld { policy, sources });
                }
            }
            Frame::Pong { .. } => {}
            Frame::HeldPolicy { .. }
            | Frame::HeldList { .. }
            | Frame::HotlistApplied { .. }
            | Frame::PolicyApplied { .. }
            | Frame::Hello(_)
            | Frame::Entries(_)
            | Frame::Image(_)
            | Frame::Loss { .. }
            | Frame::Ping { .. } => {
                self.events.push_back(EdgeEvent::Protocol(
                    "a node-to-hub frame came from the hub".into(),
                ));
            }
        }
    }

    /// Stop uploading: the hub's record is not this node's log.
    fn conflict(&mut self, now: Now, why: String) {
        self.state = LinkState::Conflict {
            retry_at: now + self.config.backoff_max,
        };
        self.out.clear();
        self.clear_images_in_flight();
        self.next_send = self.acked;
        self.events.push_back(EdgeEvent::IdentityConflict(why));
    }

    fn receipt_ok(&mut self, r: &SignedReceipt) -> bool {
        let ok = r.receipt.device == self.device
            && self.receipt_signer.as_ref().is_some_and(|c| r.verify(c));
        if !ok {
            self.events.push_back(EdgeEvent::Protocol(
                "a receipt that is not the hub's for this node".into(),
            ));
        }
        ok
    }

    /// The hub refused the connection itself (TLS or an application close).
    pub fn connection_refused(&mut self, now: Now, r: Refusal) {
        if r.code.is_permanent() {
            self.state = LinkState::Refused {
                retry_at: now + self.config.backoff_max,
            };
            self.out.clear();
        } else {
            self.link_down(now);
        }
        self.events.push_back(EdgeEvent::Refused(r));
    }

    /// Time passed: resend what the hub has not acknowledged in time.
    pub fn handle_timeout(&mut self, now: Now, log_len: u64) {
        match self.state {
            LinkState::Handshake => {
                if self
                    .hello_sent_at
                    .is_some_and(|t| now >= t + self.config.retransmit_after)
                {
                    self.send_hello(now, log_len);
                }
            }
            LinkState::Ready => {
                if self
                    .policy_told_at
                    .is_none_or(|t| now >= t + self.config.policy_refresh)
                {
                    self.tell_policy(now);
                }
                if self.next_send > self.acked
                    && self
                        .last_progress
                        .is_some_and(|t| now >= t + self.config.retransmit_after)
                {
                    self.next_send = self.acked;
                    self.last_progress = Some(now);
                }
                let stale: Vec<Hash32> = self
                    .images_in_flight
                    .iter()
                    .filter(|(_, (_, t, _))| now >= self.image_deadline(*t))
                    .map(|(h, _)| *h)
                    .collect();
                for h in stale {
                    self.forget_image(&h);
                }
            }
            LinkState::Down { .. } | LinkState::Refused { .. } | LinkState::Conflict { .. } => {}
        }
    }

    /// When [`Self::handle_timeout`] (or a connect attempt) is next due.
    pub fn poll_timeout(&self) -> Option<Now> {
        match self.state {
            LinkState::Down { retry_at }
            | LinkState::Refused { retry_at }
            | LinkState::Conflict { retry_at } => Some(retry_at),
            LinkState::Handshake => self.hello_sent_at.map(|t| t + self.config.retransmit_after),
            LinkState::Ready => {
                let entries = (self.next_send > self.acked)
                    .then_some(self.last_progress)
                    .flatten()
                    .map(|t| t + self.config.retransmit_after);
                let images = self
                    .images_in_flight
                    .values()
                    .map(|(_, t, _)| self.image_deadline(*t))
                    .min();
                let policy = self.policy_told_at.map(|t| t + self.config.policy_refresh);
                [entries, images, policy, self.hotlist_wait_until]
                    .into_iter()
                    .flatten()
                    .min()
            }
        }
    }

    /// The next frame to send, if any: control first, then entries within
    /// the window, then images (not on a metered link unless allowed).
    pub fn poll_transmit(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if !matches!(self.state, LinkState::Ready) {
            return None;
        }
        // The backlog waits for the lists the hub sent before its welcome.
        if self.hotlist_wait_until.is_some_and(|t| now < t) {
            return None;
        }
        let log_len = src.log_len();
        if self.next_send < log_len && self.next_send < self.acked + self.config.window_entries {
            let room = (self.acked + self.config.window_entries - self.next_send) as usize;
            let mut max = self.config.batch_entries.min(room);
            // Nothing is sent past an entry found damaged until its loss
            // record is written.
            if let Some(s) = self.loss_reported.filter(|s| *s >= self.next_send) {
                if s == self.next_send {
                    return self.lost_entry(now, src);
                }
                max = max.min(usize::try_from(s - self.next_send).unwrap_or(usize::MAX));
            }
            if let Some(o) = self.recorded_loss(now, src) {
                return Some(o);
            }
            let raw = src.entries(self.next_send, max, self.config.batch_bytes);
            if !raw.is_empty() {
                // The readable run from `next_send`: it ends before an entry
                // the store cannot give back (damaged or missing).
                let mut decoded = Vec::with_capacity(raw.len());
                for b in &raw {
                    match SignedEntry::decode(b) {
                        Ok(e) if e.seq() == self.next_send + decoded.len() as u64 => {
                            decoded.push(e)
                        }
                        _ => break,
                    }
                }
                if decoded.is_empty() {
                    return self.lost_entry(now, src);
                }
                let frame = Some(decoded).and_then(|log| {
                    let checkpoint = match (&self.signer, log.last()) {
                        (Some((key, wall)), Some(last)) => Some(sign_checkpoint(
                            key,
                            self.device.clone(),
                            last.seq() + 1,
                            last.hash(),
                            UnixMillis(
                                wall.0
                                    .saturating_add(u64::try_from(now.as_millis()).unwrap_or(0)),
                            ),
                        )),
                        _ => None,
                    };
                    Entries::from_log(log, checkpoint)
                });
                let Some(frame) = frame else {
                    self.events.push_back(EdgeEvent::Protocol(format!(
                        "the local log cannot be read from entry {}",
                        self.next_send
                    )));
                    return None;
                };
                if self.next_send == self.acked {
                    self.last_progress = Some(now);
                }
                self.next_send = frame.end();
                return Some(Outgoing {
                    lane: Lane::Entries,
                    frame: Frame::Entries(frame),
                });
            }
        }
        if self.config.metered && !self.config.images_on_metered {
            return None;
        }
        let room = |s: &Self| {
            s.images_in_flight.is_empty()
                || (s.images_in_flight.len() < s.config.window_images
                    && s.image_bytes_in_flight < s.image_window)
        };
        // Images the hub asked for (it lacks them for entries it holds)
        // go first.
        while room(self) {
            let Some((seq, hash)) = self.wanted.pop_front() else {
                break;
            };
            if self.images_in_flight.contains_key(&hash) {
                continue;
            }
            // An image the node no longer has cannot be sent; the hub's
            // audit reports it missing.
            if let Some(bytes) = src.image(&hash) {
                self.image_bytes_in_flight += bytes.len();
                self.images_in_flight.insert(hash, (seq, now, bytes.len()));
                return Some(Outgoing {
                    lane: Lane::Images,
                    frame: Frame::Image(ImageBlob { seq, hash, bytes }),
                });
            }
        }
        if room(self) {
            // The queue lists images in flight and (briefly) acknowledged
            // ones too: look far enough to find one that is neither.
            let limit = self.images_in_flight.len() + self.images_done.len().min(256) + 8;
            for (seq, hash) in src.pending_images(self.acked, limit) {
                if self.images_in_flight.contains_key(&hash) || self.images_done.contains(&hash) {
                    continue;
                }
                let Some(bytes) = src.image(&hash) else {
                    // Gone from the store: nothing to send, count it done.
                    self.events.push_back(EdgeEvent::ImageAcked { seq, hash });
                    continue;
                };
                self.image_bytes_in_flight += bytes.len();
                self.images_in_flight.insert(hash, (seq, now, bytes.len()));
                return Some(Outgoing {
                    lane: Lane::Images,
                    frame: Frame::Image(ImageBlob { seq, hash, bytes }),
                });
            }
        }
        None
    }

    /// Entry `next_send` cannot be read from the node's own store: send
    /// the node's signed loss record for it if there is one, else ask the
    /// driver to write one ([`EdgeEvent::LocalLoss`]) and wait.
    fn lost_entry(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        let seq = self.next_send;
        if let Some(o) = self.recorded_loss(now, src) {
            return Some(o);
        }
        if self.loss_reported != Some(seq) {
            self.loss_reported = Some(seq);
            self.events.push_back(EdgeEvent::LocalLoss { seq });
        }
        None
    }

    /// Whether entry `seq` of the node's own log fails the node's own
    /// checks (undecodable, content not matching its header, signature not
    /// its key's): damage in its store, not a fault of the hub.
    fn damaged_locally(&self, seq: u64, src: &dyn LogSource) -> bool {
        let raw = src.entries(seq, 1, usize::MAX);
        let Some(e) = raw.first().and_then(|b| SignedEntry::decode(b).ok()) else {
            return true;
        };
        e.seq() != seq
            || !e.body_matches()
            || self
                .signer
                .as_ref()
                .is_some_and(|(k, _)| !e.signature_valid(&k.public()))
    }

    /// The node's signed loss record for entry `next_send`, if it wrote
    /// one: send it in place of the lost entries.
    fn recorded_loss(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        let seq = self.next_send;
        let (last, entry) = src.loss_at(seq).and_then(|b| {
            let e = SignedEntry::decode(&b).ok()?;
            let (first, last, _) = crate::log::loss::statement(&e)?;
            (first == seq).then_some((last, b))
        })?;
        if self.loss_reported == Some(seq) {
            self.loss_reported = None;
        }
        if self.next_send == self.acked {
            self.last_progress = Some(now);
        }
        self.next_send = last + 1;
        Some(Outgoing {
            lane: Lane::Entries,
            frame: Frame::Loss { entry },
        })
    }

    /// Control frames are waiting to be sent (the driver's answers to
    /// events queue some): poll [`Self::poll_transmit`] before sleeping.
    pub fn has_control_to_send(&self) -> bool {
        !self.out.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<EdgeEvent> {
        self.events.pop_front()
    }

    /// Entries sent on this connection and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next_send.saturating_sub(self.acked)
    }
}

/// The rule a receipt must meet to describe this node's log: it may not
/// hold more entries than the log has, and its head must be the node's own
/// entry at that position (zero for an empty log). An entry the node
/// cannot read (lost in its own store) cannot contradict the hub.
fn receipt_matches_log(r: &SignedReceipt, src: &dyn LogSource) -> Result<(), String> {
    let (n, head) = (r.receipt.next_seq, r.receipt.head);
    let len = src.log_len();
    if n > len {
        return Err(format!(
            "the hub holds {n} entries of this node's log but the node has only {len}: \
             its store was replaced or wiped, or another device uses its identity"
        ));
    }
    let own = match n.checked_sub(1) {
        None => Some(Hash32::ZERO),
        Some(last) => src.entry_hash(last),
    };
    match own {
        Some(h) if h != head => Err(format!(
            "the hub's copy of this node's log ends at entry {} in an entry this node did not write: \
             another device uses its identity, or its store was replaced",
            n.saturating_sub(1)
        )),
        _ => Ok(()),
    }
}
