//! A deterministic two-peer harness: an edge core and a hub core over a
//! simulated link (loss, bursts, duplication, reordering, delay, outages)
//! under a virtual clock, in one thread. The hub's store is in memory but
//! uses the real verification and chain placement.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{sha256, SecretKey};
use crate::log::{LogWriter, SignedCheckpoint, SignedEntry};
use crate::signer::dev::Deployment;
use crate::signer::{HubKey, PolicySigning, ReceiptSigning};
use crate::types::{DeviceId, Hash32, Location, ReadContent, TimeSource, UnixMillis};
use crate::wire::{Frame, Refusal};

use super::*;

/// The wall clock at which the pair merges local hotlist entries (their
/// expiry is by wall time, not the virtual link clock).
pub const LOCAL_ENTRIES_NOW: UnixMillis = UnixMillis(1_700_000_000_000);

/// A small deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// How the simulated link misbehaves.
#[derive(Debug, Clone, Default)]
pub struct LinkModel {
    /// Independent loss probability per frame.
    pub loss: f64,
    /// Gilbert–Elliott bursts: (P(good→bad), P(bad→good)) per frame; all
    /// frames are lost in the bad state.
    pub burst: Option<(f64, f64)>,
    pub duplicate: f64,
    /// One-way delay and extra uniform jitter (which reorders frames).
    pub delay: Duration,
    pub jitter: Duration,
    /// Periods [start, end) with no connectivity at all.
    pub outages: Vec<(Duration, Duration)>,
    /// A connection is declared dead this long into an outage.
    pub idle_timeout: Duration,
    /// Bandwidth each way in bits per second: frames queue for the link
    /// one after another (None: unlimited).
    pub rate_bps: Option<u64>,
}

/// The edge's log, in memory.
#[derive(Debug)]
pub struct MemLog {
    pub writer: LogWriter,
    pub entries: Vec<SignedEntry>,
    pub images: BTreeMap<Hash32, Vec<u8>>,
    pub image_queue: BTreeMap<(u64, Hash32), ()>,
    /// first lost seq → (last lost seq, seq of the loss record).
    pub losses: BTreeMap<u64, (u64, u64)>,
    /// Bytes of each image appended from now on (at least its name).
    pub image_size: usize,
}

impl MemLog {
    /// As the edge's store does on [`EdgeEvent::LocalLoss`]: sign a loss
    /// record for entry `seq` (its hash from the next entry's `prev`).
    pub fn record_loss(&mut self, seq: u64) {
        if self.losses.contains_key(&seq) {
            return;
        }
        let head = self
            .entries
            .get(seq as usize + 1)
            .map_or(self.writer.head(), |e| e.header.prev);
        let e = self
            .writer
            .append_loss(
                seq,
                seq,
                head,
                "damaged in the node's store",
                UnixMillis(1_700_000_000_000),
                TimeSource::Ntp,
            )
            .expect("valid loss");
        self.losses.insert(seq, (seq, e.seq()));
        self.entries.push(e);
    }

    pub fn append(&mut self, i: u64, with_image: bool) {
        let plate = format!("P{:06}", i % 1_000_000);
        let mut image = format!("jpeg bytes of read {i}").into_bytes();
        if image.len() < self.image_size {
            image.resize(self.image_size, 0xA5);
        }
        let hash = sha256(&image);
        let content = ReadContent {
            location: Location::Site {
                site_id: "site-1".into(),
            },
            camera: "cam".into(),
            char_confidence: vec![9000; plate.len()],
            plate,
            confidence: 9000,
            issuer: Default::default(),
            detector_model: "det-1".into(),
            ocr_model: "ocr-1".into(),
            crop_hash: hash,
            overview_hash: hash,
        };
        let e = self
            .writer
            .append_read(content, UnixMillis(1_700_000_000_000 + i), TimeSource::Ntp)
            .expect("valid read");
        if with_image {
            self.images.insert(hash, image);
            self.image_queue.insert((e.seq(), hash), ());
        }
        self.entries.push(e);
    }
}

impl LogSource for MemLog {
    fn log_len(&self) -> u64 {
        self.entries.len() as u64
    }
    fn entries(&self, first: u64, max_count: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let stop = self.losses.range(first..).next().map(|(f, _)| *f);
        for e in self.entries.iter().skip(first as usize).take(max_count) {
            if stop.is_some_and(|s| e.seq() >= s) {
                break;
            }
            let b = e.encode();
            bytes += b.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(b);
        }
        out
    }
    fn pending_images(&self, below: u64, limit: usize) -> Vec<(u64, Hash32)> {
        self.image_queue
            .keys()
            .filter(|(s, _)| *s < below)
            .take(limit)
            .copied()
            .collect()
    }
    fn image(&self, hash: &Hash32) -> Option<Vec<u8>> {
        self.images.get(hash).cloned()
    }
    fn loss_at(&self, first: u64) -> Option<Vec<u8>> {
        let (_, at) = self.losses.get(&first)?;
        self.entries.get(*at as usize).map(SignedEntry::encode)
    }
    fn entry_hash(&self, seq: u64) -> Option<Hash32> {
        if let Some((_, (last, at))) = self.losses.range(..=seq).next_back() {
            if *last >= seq {
                let e = self.entries.get(*at as usize)?;
                return match &e.header.kind {
                    crate::log::EntryKind::Loss { lost_head, .. } => Some(*lost_head),
                    _ => None,
                };
            }
        }
        self.entries.get(seq as usize).map(SignedEntry::hash)
    }
}

/// The hub's store, in memory, with the real placement rule.
#[derive(Debug, Default)]
pub struct MemHub {
    pub entries: BTreeMap<u64, Verified>,
    pub progress: Progress,
    pub images: BTreeMap<Hash32, Vec<u8>>,
    pub refusals: Vec<Refusal>,
    pub duplicates: usize,
    pub checkpoint: Option<SignedCheckpoint>,
}

impl MemHub {
    fn ingest(&mut self, batch: VerifiedBatch) -> Result<Progress, Refusal> {
        let VerifiedBatch {
            entries: batch,
            checkpoint,
            ..
        } = batch;
        let p = place(&batch, self.progress, |s| {
            self.entries.get(&s).map(|v| v.hash)
        })?;
        if let Some(c) = checkpoint {
            let first = batch.first().map_or(0, Verified::seq);
            let replace = check_checkpoint(
                self.checkpoint.as_ref().map(|c| &c.checkpoint),
                &c.checkpoint,
                |s| match s.checked_sub(first) {
                    Some(i) if (i as usize) < batch.len() => Some(batch[i as usize].hash),
                    _ => self.entries.get(&s).map(|v| v.hash),
                },
            )?;
            if replace {
                self.checkpoint = Some(c);
            }
        }
        self.duplicates += p.duplicates;
        for v in batch.into_iter().skip(p.append_from) {
            self.entries.insert(v.seq(), v);
        }
        self.progress = p.after;
        Ok(p.after)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    ToHub,
    ToEdge,
}

/// Counters of what crossed the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_sent: u64,
    pub frames_lost: u64,
    pub bytes_sent: u64,
    pub connects: u64,
    pub failed_connects: u64,
    /// How often each image was sent to the hub.
    pub image_sends: BTreeMap<Hash32, u32>,
}

/// The deployment of every pair (made once: its CA and keys are the same
/// for all).
pub fn deployment() -> &'static Deployment {
    static D: std::sync::OnceLock<Deployment> = std::sync::OnceLock::new();
    D.get_or_init(|| Deployment::new().expect("a test deployment"))
}

type Keys = (Arc<HubKey<ReceiptSigning>>, Arc<HubKey<PolicySigning>>);

/// The hub's receipt and policy keys in [`deployment`].
fn hub_keys() -> Keys {
    static K: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let d = deployment();
        (
            Arc::new(d.key("hub").expect("receipt key")),
            Arc::new(d.key("hub").expect("policy key")),
        )
    })
    .clone()
}

/// An edge and a hub over a simulated link.
pub struct Pair {
    pub now: Now,
    pub rng: Rng,
    pub link: LinkModel,
    pub edge: EdgeSync,
    pub log: MemLog,
    pub hub: MemHub,
    /// The hub's receipt and policy keys, of [`deployment`].
    pub receipt_key: Arc<HubKey<ReceiptSigning>>,
    pub policy_key: Arc<HubKey<PolicySigning>>,
    pub session: Option<HubSession>,
    pub edge_events: Vec<EdgeEvent>,
    pub stats: Stats,
    epoch: u64,
    order: u64,
    bad_state: bool,
    queue: BinaryHeap<Reverse<(Now, u64, Dir, u64)>>,
    /// When the link is next free, each way (with `rate_bps`).
    link_free: [Now; 2],
    payloads: BTreeMap<u64, Frame>,
    node_key_pub: crate::crypto::PublicKey,
    /// The hub's current policy (version, encoded), given to each session.
    pub hub_policy: Option<(u64, Arc<Vec<u8>>)>,
    /// What the hub recorded as the node's policy version.
    pub node_policy: Option<u64>,
    /// The policy the edge stored, and when it was last refreshed.
    pub edge_policy: Option<crate::control::SignedPolicy>,
    pub edge_refreshed: Option<Now>,
    /// The hub's legal holds, and the edge's (merged as the drivers do).
    pub hub_holds: crate::control::holds_doc::HoldsDoc,
    pub edge_holds: crate::control::holds_doc::HoldsDoc,
    /// When the edge last merged the hub's holds.
    pub holds_refreshed: Option<Now>,
    /// The hub's local hotlist entries, and the edge's (merged as the
    /// drivers do, at [`LOCAL_ENTRIES_NOW`]).
    pub hub_local: crate::hotlist::local::LocalEntriesDoc,
    pub edge_local: crate::hotlist::local::LocalEntriesDoc,
    /// The hub's bulk lists: source → latest generation. A generation's
    /// bytes are [`Pair::generation_bytes`]; the hub keeps a delta only
    /// from the generation just before (`hub_delta_depth` back).
    pub hub_lists: BTreeMap<String, u64>,
    pub hub_list_size: usize,
    pub hub_delta_depth: u64,
    /// What the hub recorded the node holds.
    pub node_lists: Vec<(String, u64)>,
    /// The edge's bulk lists, as its driver stores them.
    pub edge_lists: BTreeMap<String, u64>,
    /// The edge's driver fails to apply deltas / everything.
    pub edge_delta_broken: bool,
    pub edge_lists_broken: bool,
    /// The edge's driver never answers about a list (a hung apply).
    pub edge_lists_hang: bool,
    /// What the node showed the hub when asked ([`Frame::ShowHeld`]): its
    /// signed policy, and generation headers (the harness's stand-in for
    /// a generation's signed header is `header <source> <gen>`).
    pub shown_policy: Option<Vec<u8>>,
    pub shown_lists: Vec<Vec<u8>>,
    /// What happened, in order: `applied <source> <gen>`,
    /// `ingest <first_seq>`, `delta <source> <from> <to>`, `full <source> <gen>`.
    pub trace: Vec<String>,
}

impl Pair {
    pub fn new(seed: u64, link: LinkModel, config: SyncTuning) -> Self {
        let device = DeviceId::new("veh-1").expect("valid");
        let node_key = SecretKey::from_bytes(&[11; 32]);
        let node_key_pub = node_key.public();
        let (receipt_key, policy_key) = hub_keys();
        let edge = EdgeSync::new(device.clone(), config, 0, seed, deployment().anchor.clone())
            .with_checkpoints(
                SecretKey::from_bytes(&[11; 32]),
                UnixMillis(1_700_000_000_000),
            );
        Pair {
            now: Now::ZERO,
            rng: Rng::new(seed),
            link,
            edge,
            log: MemLog {
                writer: LogWriter::new(node_key, device),
                entries: Vec::new(),
                images: BTreeMap::new(),
                image_queue: BTreeMap::new(),
                losses: BTreeMap::new(),
                image_size: 0,
            },
            hub: MemHub::default(),
            receipt_key,
            policy_key,
            session: None,
            edge_events: Vec::new(),
            stats: Stats::default(),
            epoch: 0,
            order: 0,
            bad_state: false,
            queue: BinaryHeap::new(),
            link_free: [Now::ZERO; 2],
            payloads: BTreeMap::new(),
            node_key_pub,
            hub_policy: None,
            node_policy: None,
            edge_policy: None,
            edge_refreshed: None,
            hub_holds: crate::control::holds_doc::HoldsDoc::new(),
            edge_holds: crate::control::holds_doc::HoldsDoc::new(),
            holds_refreshed: None,
            hub_local: crate::hotlist::local::LocalEntriesDoc::new(),
            edge_local: crate::hotlist::local::LocalEntriesDoc::new(),
            hub_lists: BTreeMap::new(),
            hub_list_size: 64,
            hub_delta_depth: 1,
            node_lists: Vec::new(),
            edge_lists: BTreeMap::new(),
            edge_delta_broken: false,
            edge_lists_broken: false,
            edge_lists_hang: false,
            shown_policy: None,
            shown_lists: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// The stored form of generation `g` of `source` (stands in for a
    /// signed generation: the harness checks what arrives byte for byte).
    pub fn generation_bytes(&self, source: &str, g: u64) -> Vec<u8> {
        let seed = format!("{source}:{g}:");
        seed.bytes()
            .cycle()
            .take(self.hub_list_size.max(seed.len()))
            .collect()
    }

    fn delta_bytes(source: &str, from: u64, to: u64) -> Vec<u8> {
        format!("delta {source} {from} {to}").into_bytes()
    }

    /// The hub published a new generation of `source`: connected
    /// sessions push it.
    pub fn publish_list(&mut self, source: &str, generation: u64) {
        self.hub_lists.insert(source.to_owned(), generation);
        let current: Vec<(String, u64)> = self
            .hub_lists
            .iter()
            .map(|(s, g)| (s.clone(), *g))
            .collect();
        if let Some(s) = self.session.as_mut() {
            let outs = s.set_hotlists(current);
            self.hub_outputs(outs);
        }
    }

    /// The hub's holds changed (a person edited them): connected sessions
    /// push them.
    pub fn hub_holds_changed(&mut self) {
        let doc = Arc::new(self.hub_holds.save());
        if let Some(s) = self.session.as_mut() {
            let outs = s.set_holds(doc);
            self.hub_outputs(outs);
        }
    }

    /// The hub's local entries changed: connected sessions push them.
    pub fn hub_local_changed(&mut self) {
        let doc = Arc::new(self.hub_local.save());
        if let Some(s) = self.session.as_mut() {
            let outs = s.set_local_entries(doc);
            self.hub_outputs(outs);
        }
    }

    /// The edge's local entries changed: the edge sends them.
    pub fn edge_local_changed(&mut self) {
        let doc = self.edge_local.save();
        self.edge.set_local_entries(doc);
    }

    /// The edge's holds changed locally: the edge sends them.
    pub fn edge_holds_changed(&mut self) {
        let doc = self.edge_holds.save();
        self.edge.set_holds(doc);
    }

    /// The hub's policy changes: connected sessions push it.
    pub fn publish_policy(&mut self, p: &crate::control::SignedPolicy) {
        let enc = Arc::new(p.encode());
        self.hub_policy = Some((p.version(), enc.clone()));
        if let Some(s) = self.session.as_mut() {
            let outs = s.set_policy(p.version(), enc);
            self.hub_outputs(outs);
        }
    }

    pub fn device(&self) -> DeviceId {
        self.log.writer.device().clone()
    }

    fn in_outage(&self, t: Now) -> Option<Now> {
        self.link
            .outages
            .iter()
            .find(|(s, e)| *s <= t && t < *e)
            .map(|(s, _)| *s)
    }

    fn unix(&self) -> UnixMillis {
        UnixMillis(1_700_000_000_000 + self.now.as_millis() as u64)
    }

    fn send(&mut self, dir: Dir, frame: Frame) {
        let len = frame.encode().len() as u64;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += len;
        // The frame holds the link for its length, lost or not.
        let on_link_until = match self.link.rate_bps {
            Some(rate) if rate > 0 => {
                let free = &mut self.link_free[dir as usize];
                *free = (*free).max(self.now)
                    + Duration::from_nanos(len.saturating_mul(8_000_000_000) / rate);
                *free
            }
            _ => self.now,
        };
        if let (Dir::ToHub, Frame::Image(i)) = (dir, &frame) {
            *self.stats.image_sends.entry(i.hash).or_default() += 1;
        }
        if self.in_outage(self.now).is_some() {
            self.stats.frames_lost += 1;
            return;
        }
        if let Some((to_bad, to_good)) = self.link.burst {
            if self.bad_state {
                if self.rng.chance(to_good) {
                    self.bad_state = false;
                }
            } else if self.rng.chance(to_bad) {
                self.bad_state = true;
            }
            if self.bad_state {
                self.stats.frames_lost += 1;
                return;
            }
        }
        if self.rng.chance(self.link.loss) {
            self.stats.frames_lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_ms = self.link.jitter.as_millis() as u64;
            let extra = if jitter_ms == 0 {
                0
            } else {
                self.rng.next() % jitter_ms
            };
            let at = on_link_until + self.link.delay + Duration::from_millis(extra);
            self.order += 1;
            self.payloads.insert(self.order, frame.clone());
            self.queue.push(Reverse((at, self.order, dir, self.epoch)));
        }
    }

    fn connect(&mut self) {
        self.epoch += 1;
        self.stats.connects += 1;
        let mut session = HubSession::new(
            self.device(),
            self.node_key_pub,
            self.receipt_key.clone(),
            self.hub.progress,
        );
        if let Some((v, enc)) = &self.hub_policy {
            session = session.with_policy(*v, enc.clone());
        }
        session = session.with_holds(Arc::new(self.hub_holds.save()));
        session = session.with_local_entries(Arc::new(self.hub_local.save()));
        session = session.with_hotlists(
            self.hub_lists
                .iter()
                .map(|(s, g)| (s.clone(), *g))
                .collect(),
        );
        self.session = Some(session);
        let len = self.log.log_len();
        self.edge.link_up(self.now, len);
    }

    fn disconnect(&mut self) {
        self.epoch += 1;
        self.session = None;
        self.edge.link_down(self.now);
    }

    fn hub_outputs(&mut self, outs: Vec<HubOutput>) {
        let mut work = outs;
        while !work.is_empty() {
            let mut next = Vec::new();
            for o in work {
                match o {
                    HubOutput::Send(f) => self.send(Dir::ToEdge, f),
                    // As the hub's driver does: the delta if it keeps one
                    // from the node's generation, else the list whole.
                    HubOutput::SendHotlist { source, from, to } => {
                        match from.filter(|f| to.saturating_sub(*f) <= self.hub_delta_depth) {
                            Some(from) => {
                                self.trace.push(format!("delta {source} {from} {to}"));
                                let delta = Self::delta_bytes(&source, from, to);
                                self.send(
                                    Dir::ToEdge,
                                    Frame::HotlistDelta {
                                        source,
                                        from,
                                        to,
                                        delta,
                                    },
                                );
                            }
                            None => {
                                self.trace.push(format!("full {source} {to}"));
                                let bytes = self.generation_bytes(&source, to);
                                let frames: Vec<Frame> =
                                    crate::wire::full_generation_frames(&source, to, &bytes)
                                        .collect();
                                for f in frames {
                                    self.send(Dir::ToEdge, f);
                                }
                            }
                        }
                    }
                    HubOutput::NodeHotlists { held } => self.node_lists = held,
                    HubOutput::NodeHeldPolicy { policy } => self.shown_policy = Some(policy),
                    HubOutput::NodeHeldList { header } => self.shown_lists.push(header),
                    HubOutput::Ingest(batch) => {
                        if let Some(first) = batch.entries.first() {
                            self.trace.push(format!("ingest {}", first.seq()));
                        }
                        let r = self.hub.ingest(batch);
                        let unix = self.unix();
                        if let Some(s) = self.session.as_mut() {
                            next.extend(s.ingested(r, unix));
                        }
                    }
                    HubOutput::StoreImage { seq, image } => {
                        let named = self.hub.entries.get(&seq).is_some_and(|v| {
                            v.entry.read().is_some_and(|c| {
                                c.crop_hash == image.hash || c.overview_hash == image.hash
                            })
                        });
                        if named {
                            self.hub.images.insert(image.hash, image.bytes);
                            if let Some(s) = self.session.as_mut() {
                                next.extend(s.image_stored(image.hash));
                            }
                        }
                    }
                    HubOutput::Refused(r) => self.hub.refusals.push(r),
                    HubOutput::NodePolicy { version } => self.node_policy = Some(version),
                    // As the hub's driver does: merge, and push a change
                    // back to the node.
                    HubOutput::NodeHolds { doc } => {
                        if self
                            .hub_holds
                            .merge_bytes(&doc, LOCAL_ENTRIES_NOW)
                            .unwrap_or(false)
                        {
                            let saved = Arc::new(self.hub_holds.save());
                            if let Some(s) = self.session.as_mut() {
                                next.extend(s.set_holds(saved));
                            }
                        }
                    }
                    HubOutput::NodeLocalEntries { doc } => {
                        if self
                            .hub_local
                            .merge_bytes(&doc, LOCAL_ENTRIES_NOW)
                            .unwrap_or(false)
                        {
                            let saved = Arc::new(self.hub_local.save());
                            if let Some(s) = self.session.as_mut() {
                                next.extend(s.set_local_entries(saved));
                            }
                        }
                    }
                    HubOutput::Skip {
                        first, last, head, ..
                    } => {
                        let r = if self.hub.progress.next_seq == first {
                            self.hub.progress = Progress {
                                next_seq: last + 1,
                                head,
                            };
                            Ok(self.hub.progress)
                        } else {
                            Ok(self.hub.progress)
                        };
                        let unix = self.unix();
                        if let Some(s) = self.session.as_mut() {
                            next.extend(s.ingested(r, unix));
                        }
                    }
                    HubOutput::FindMissingImages { from, to } => {
                        let mut missing = Vec::new();
                        let mut scanned_to = to;
                        for (seq, v) in self.hub.entries.range(from..to) {
                            if missing.len() >= crate::wire::MAX_WANTED_IMAGES {
                                scanned_to = *seq;
                                break;
                            }
                            if let Some(c) = v.entry.read() {
                                if !self.hub.images.contains_key(&c.crop_hash) {
                                    missing.push((*seq, c.crop_hash));
                                }
                            }
                        }
                        if let Some(s) = self.session.as_mut() {
                            next.extend(s.images_missing(missing, scanned_to, to));
                        }
                    }
                }
            }
            work = next;
        }
    }

    /// One step of the event loop at the current virtual time.
    fn step(&mut self) {
        if self.edge.wants_link(self.now) {
            if self.in_outage(self.now).is_some() {
                self.stats.failed_connects += 1;
                self.edge.link_down(self.now);
            } else {
                self.connect();
            }
        }
        if self.session.is_some() {
            if let Some(start) = self.in_outage(self.now) {
                if self.now >= start + self.link.idle_timeout {
                    self.disconnect();
                }
            }
        }
        while let Some(o) = self.edge.poll_transmit(self.now, &self.log) {
            self.send(Dir::ToHub, o.frame);
        }
        while let Some(Reverse((at, order, dir, epoch))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let Some(frame) = self.payloads.remove(&order) else {
                continue;
            };
            if epoch != self.epoch {
                continue;
            }
            match dir {
                Dir::ToHub => {
                    let unix = self.unix();
                    if let Some(s) = self.session.as_mut() {
                        let outs = s.handle_frame(frame, unix);
                        self.hub_outputs(outs);
                    }
                }
                Dir::ToEdge => self.edge.handle_frame(frame, self.now, &self.log),
            }
        }
        let len = self.log.log_len();
        self.edge.handle_timeout(self.now, len);
        while let Some(ev) = self.edge.poll_event() {
            if let EdgeEvent::ImageAcked { seq, hash } = &ev {
                self.log.image_queue.remove(&(*seq, *hash));
            }
            if let EdgeEvent::LocalLoss { seq } = &ev {
                self.log.record_loss(*seq);
            }
            // As the edge's driver does: store a newer policy, then enforce it.
            match &ev {
                EdgeEvent::Policy(p) => {
                    self.edge_policy = Some(p.as_ref().clone());
                    self.edge_refreshed = Some(self.now);
                    self.edge.policy_applied(p.version(), self.now);
                }
                EdgeEvent::PolicyRefreshed { .. } => self.edge_refreshed = Some(self.now),
                // As the edge's driver does: what it holds, as signed.
                EdgeEvent::ShowHeld { policy, sources } => {
                    let policy = policy
                        .then(|| self.edge_policy.as_ref().map(|p| p.encode()))
                        .flatten();
                    let headers = sources
                        .iter()
                        .filter_map(|s| {
                            let g = self.edge_lists.get(s)?;
                            Some(format!("header {s} {g}").into_bytes())
                        })
                        .collect();
                    self.edge.show_held(policy, headers);
                }
                // As the edge's driver does: apply, check, store, report.
                EdgeEvent::HotlistDelta {
                    source,
                    from,
                    to,
                    delta,
                } if !self.edge_lists_hang => {
                    let ok = !self.edge_delta_broken
                        && !self.edge_lists_broken
                        && self.edge_lists.get(source) == Some(from)
                        && *delta == Self::delta_bytes(source, *from, *to);
                    if ok {
                        self.edge_lists.insert(source.clone(), *to);
                        self.trace.push(format!("applied {source} {to}"));
                        self.edge.hotlist_applied(source, *to);
                    } else {
                        self.edge.hotlist_failed(source);
                    }
                }
                EdgeEvent::HotlistFull {
                    source,
                    generation,
                    bytes,
                } if !self.edge_lists_hang => {
                    let ok = !self.edge_lists_broken
                        && *bytes == self.generation_bytes(source, *generation);
                    if ok {
                        self.edge_lists.insert(source.clone(), *generation);
                        self.trace.push(format!("applied {source} {generation}"));
                        self.edge.hotlist_applied(source, *generation);
                    } else {
                        self.edge.hotlist_failed(source);
                    }
                }
                // As the edge's driver does: merge, mark refreshed, and
                // send back what the hub lacks.
                EdgeEvent::Holds(doc) => {
                    if let Ok(changed) = self.edge_holds.merge_bytes(doc, LOCAL_ENTRIES_NOW) {
                        self.holds_refreshed = Some(self.now);
                        if changed {
                            let saved = self.edge_holds.save();
                            self.edge.set_holds(saved);
                        }
                    }
                }
                EdgeEvent::LocalEntries(doc) => {
                    if let Ok(true) = self.edge_local.merge_bytes(doc, LOCAL_ENTRIES_NOW) {
                        let saved = self.edge_local.save();
                        self.edge.set_local_entries(saved);
                    }
                }
                _ => {}
            }
            // As the edge's driver does: the hub lost what it acknowledged,
            // so the images of those entries go back on the queue.
            if let EdgeEvent::HubBehind { had, now_holds } = &ev {
                for e in &self.log.entries[*now_holds as usize..*had as usize] {
                    if let Some(c) = e.read() {
                        if self.log.images.contains_key(&c.crop_hash) {
                            self.log.image_queue.insert((e.seq(), c.crop_hash), ());
                        }
                    }
                }
            }
            self.edge_events.push(ev);
        }
        while let Some(o) = self.edge.poll_transmit(self.now, &self.log) {
            self.send(Dir::ToHub, o.frame);
        }
    }

    fn next_time(&self) -> Now {
        let mut t = self.now + Duration::from_millis(50);
        if let Some(d) = self.edge.poll_timeout() {
            t = t.min(d);
        }
        if let Some(Reverse((at, ..))) = self.queue.peek() {
            t = t.min(*at);
        }
        for (s, e) in &self.link.outages {
            for b in [*s, *e, *s + self.link.idle_timeout] {
                if b > self.now {
                    t = t.min(b);
                }
            }
        }
        t.max(self.now + Duration::from_millis(1))
    }

    /// Run until `done` holds or the virtual clock reaches `limit`;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Now, mut done: impl FnMut(&Pair) -> bool) -> bool {
        loop {
            self.step();
            if done(self) {
                return true;
            }
            if self.now >= limit {
                return false;
            }
            self.now = self.next_time();
        }
    }

    /// Everything in the edge's log is held by the hub and acknowledged.
    pub fn synced(&self) -> bool {
        let n = self.log.log_len();
        self.hub.progress.next_seq == n && self.edge.acked() == n
    }
}
