//! The edge's side: upload the log from the hub's receipt on, then images.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::crypto::{PublicKey, SecretKey};
use crate::log::SignedEntry;
use crate::types::{DeviceId, Hash32, UnixMillis};
use crate::wire::{
    sign_checkpoint, Entries, Frame, Hello, ImageBlob, Lane, Refusal, SignedReceipt,
    PROTOCOL_VERSION,
};

use super::Now;

/// What the core needs to read from the edge's store.
pub trait LogSource {
    /// Entries in the log.
    fn log_len(&self) -> u64;
    /// Canonical bytes of entries from `first`, at most `max_count` of them
    /// and (beyond the first) at most `max_bytes` in total.
    fn entries(&self, first: u64, max_count: usize, max_bytes: usize) -> Vec<Vec<u8>>;
    /// Images waiting for upload, in log order: (entry seq, hash), at most
    /// `limit`, all of entries below `below`.
    fn pending_images(&self, below: u64, limit: usize) -> Vec<(u64, Hash32)>;
    /// An image's bytes.
    fn image(&self, hash: &Hash32) -> Option<Vec<u8>>;
}

/// Tunables of the edge core; `Default` suits a real QUIC link.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
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
    /// The link is metered (cellular): images wait unless allowed.
    pub metered: bool,
    pub images_on_metered: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            batch_entries: 256,
            batch_bytes: 256 * 1024,
            window_entries: 4096,
            window_images: 1024,
            window_image_bytes_min: 64 * 1024,
            window_image_bytes_max: 8 * 1024 * 1024,
            retransmit_after: Duration::from_secs(20),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            metered: false,
            images_on_metered: false,
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
}

/// The edge's sync core. See the module docs of [`crate::sync`].
#[derive(Debug)]
pub struct EdgeSync {
    device: DeviceId,
    config: EdgeConfig,
    hub_key: Option<PublicKey>,
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
    attempt: u32,
    rng: u64,
    out: VecDeque<Outgoing>,
    events: VecDeque<EdgeEvent>,
}

impl EdgeSync {
    /// A core for `device`, whose hub had acknowledged `0..acked` when last
    /// heard of. `hub_key` checks receipts once known (see [`Self::set_hub_key`]).
    pub fn new(device: DeviceId, config: EdgeConfig, acked: u64, seed: u64) -> Self {
        let image_window = config.window_image_bytes_min.max(1);
        EdgeSync {
            device,
            config,
            hub_key: None,
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

    /// The hub's receipt-signing key (from its certificate, checked by TLS).
    pub fn set_hub_key(&mut self, key: PublicKey) {
        self.hub_key = Some(key);
    }

    pub fn state(&self) -> LinkState {
        self.state
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
            LinkState::Down { retry_at } | LinkState::Refused { retry_at } => now >= retry_at,
            _ => false,
        }
    }

    /// A connection is up: greet the hub.
    pub fn link_up(&mut self, now: Now, log_len: u64) {
        self.state = LinkState::Handshake;
        self.out.clear();
        self.clear_images_in_flight();
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
            }),
        });
    }

    /// The connection dropped or could not be made: back off and retry.
    pub fn link_down(&mut self, now: Now) {
        if matches!(self.state, LinkState::Refused { .. }) {
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

    /// A frame arrived from the hub.
    pub fn handle_frame(&mut self, frame: Frame, now: Now) {
        match frame {
            Frame::Welcome(w) => {
                if !matches!(self.state, LinkState::Handshake) {
                    return;
                }
                if !self.receipt_ok(&w.receipt) {
                    return;
                }
                self.attempt = 0;
                self.state = LinkState::Ready;
                self.acked = w.receipt.receipt.next_seq;
                self.next_send = self.acked;
                self.last_progress = Some(now);
                self.events.push_back(EdgeEvent::Acked(w.receipt));
            }
            Frame::Ack(r) => {
                if !matches!(self.state, LinkState::Ready) || !self.receipt_ok(&r) {
                    return;
                }
                let n = r.receipt.next_seq;
                if n > self.acked {
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
            Frame::Pong { .. } => {}
            Frame::Hello(_) | Frame::Entries(_) | Frame::Image(_) | Frame::Ping { .. } => {
                self.events.push_back(EdgeEvent::Protocol(
                    "a node-to-hub frame came from the hub".into(),
                ));
            }
        }
    }

    fn receipt_ok(&mut self, r: &SignedReceipt) -> bool {
        let ok = r.receipt.device == self.device
            && self.hub_key.as_ref().is_none_or(|k| r.signature_valid(k));
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
            LinkState::Down { .. } | LinkState::Refused { .. } => {}
        }
    }

    /// When [`Self::handle_timeout`] (or a connect attempt) is next due.
    pub fn poll_timeout(&self) -> Option<Now> {
        match self.state {
            LinkState::Down { retry_at } | LinkState::Refused { retry_at } => Some(retry_at),
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
                match (entries, images) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
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
        let log_len = src.log_len();
        if self.next_send < log_len && self.next_send < self.acked + self.config.window_entries {
            let room = (self.acked + self.config.window_entries - self.next_send) as usize;
            let max = self.config.batch_entries.min(room);
            let raw = src.entries(self.next_send, max, self.config.batch_bytes);
            if !raw.is_empty() {
                let decoded: Result<Vec<SignedEntry>, _> =
                    raw.iter().map(|b| SignedEntry::decode(b)).collect();
                let frame = decoded
                    .ok()
                    .filter(|log| log.first().map(SignedEntry::seq) == Some(self.next_send))
                    .and_then(|log| {
                        let checkpoint =
                            match (&self.signer, log.last()) {
                                (Some((key, wall)), Some(last)) => Some(sign_checkpoint(
                                    key,
                                    self.device.clone(),
                                    last.seq() + 1,
                                    last.hash(),
                                    UnixMillis(wall.0.saturating_add(
                                        u64::try_from(now.as_millis()).unwrap_or(0),
                                    )),
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
        let room = self.images_in_flight.is_empty()
            || (self.images_in_flight.len() < self.config.window_images
                && self.image_bytes_in_flight < self.image_window);
        if room {
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

    pub fn poll_event(&mut self) -> Option<EdgeEvent> {
        self.events.pop_front()
    }

    /// Entries sent on this connection and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next_send.saturating_sub(self.acked)
    }
}
