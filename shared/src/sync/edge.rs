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

mod transmit;

mod frames;

mod control;

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

    pub fn acked(&self) -> u64 {
        self.acked
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
