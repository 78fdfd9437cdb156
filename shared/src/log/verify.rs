//! The offline verifier: from a device certificate already checked against
//! the CA, decide whether a log (or a set of its entries) is authentic, and
//! if not, name exactly what is wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::{EntryKind, SignedCheckpoint, SignedEntry};
use crate::cert::{CertError, DeviceCert, Revocation};
use crate::types::{DeviceId, Hash32, UnixMillis};

mod ranges;
pub(crate) use ranges::RangeSet;

mod pending;
pub(crate) use pending::AwaitingHubPurges;

/// One thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The device certificate is missing, from another CA or wrongly issued.
    Certificate { reason: String },
    /// An entry names a different device than the certificate.
    WrongDevice { seq: u64, claimed: String },
    /// The header's signature does not verify: the header was altered or
    /// not signed by this device.
    BadSignature { seq: u64 },
    /// The content does not match what the signed header commits to.
    Edited { seq: u64 },
    /// Captured while the certificate was not valid.
    OutsideCertificateValidity { seq: u64 },
    /// An entry appears after one with a higher sequence number.
    Reorder {
        position: usize,
        seq: u64,
        after: u64,
    },
    /// The same entry appears twice.
    Duplicate { seq: u64 },
    /// Two different validly signed entries share one sequence number.
    Fork { seq: u64 },
    /// Sequence numbers are missing.
    Gap { first: u64, last: u64 },
    /// The entry does not link to the hash of the entry before it.
    BrokenChain { seq: u64 },
    /// A read's content is gone and no purge entry records it.
    PurgedWithoutRecord { seq: u64 },
    /// A checkpoint whose signature does not verify.
    CheckpointBadSignature { size: u64 },
    /// The log at a signed checkpoint's size does not end at its head: the
    /// history was rewritten after the node vouched for it.
    CheckpointMismatch { size: u64 },
    /// Two signed checkpoints of the same size name different heads.
    ConflictingCheckpoints { size: u64 },
    /// The node vouched for more entries than the log holds: the tail was
    /// deleted.
    MissingTail { checkpoint_size: u64, log_size: u64 },
    /// Signed with a certificate's key at or after that certificate's
    /// revocation took effect.
    SignedAfterRevocation { seq: u64, serial: String },
    /// Signed with an older certificate's key after a newer certificate of
    /// the node had signed: keys only move forward along a log.
    KeyWentBack { seq: u64, serial: String },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Certificate { reason } => write!(f, "device certificate refused: {reason}"),
            Fault::WrongDevice { seq, claimed } => {
                write!(
                    f,
                    "entry {seq} claims to be from another device ({claimed})"
                )
            }
            Fault::BadSignature { seq } => write!(f, "entry {seq}: signature does not verify"),
            Fault::Edited { seq } => {
                write!(f, "entry {seq}: content was edited after signing")
            }
            Fault::OutsideCertificateValidity { seq } => {
                write!(
                    f,
                    "entry {seq}: captured outside the certificate's validity"
                )
            }
            Fault::Reorder {
                position,
                seq,
                after,
            } => write!(
                f,
                "entry {seq} at position {position} comes after entry {after}: reordered"
            ),
            Fault::Duplicate { seq } => write!(f, "entry {seq} appears twice"),
            Fault::Fork { seq } => {
                write!(f, "fork: two different signed entries for sequence {seq}")
            }
            Fault::Gap { first, last } if first == last => {
                write!(f, "gap: entry {first} is missing")
            }
            Fault::Gap { first, last } => write!(f, "gap: entries {first}..={last} are missing"),
            Fault::BrokenChain { seq } => {
                write!(f, "entry {seq} does not link to the entry before it")
            }
            Fault::PurgedWithoutRecord { seq } => {
                write!(f, "entry {seq}: content deleted without a purge record")
            }
            Fault::CheckpointBadSignature { size } => {
                write!(f, "checkpoint at size {size}: signature does not verify")
            }
            Fault::CheckpointMismatch { size } => write!(
                f,
                "checkpoint at size {size}: the log does not match what the node signed"
            ),
            Fault::ConflictingCheckpoints { size } => {
                write!(
                    f,
                    "two signed checkpoints at size {size} name different heads"
                )
            }
            Fault::MissingTail {
                checkpoint_size,
                log_size,
            } => write!(
                f,
                "the node signed a log of {checkpoint_size} entries but only {log_size} are here"
            ),
            Fault::SignedAfterRevocation { seq, serial } => write!(
                f,
                "entry {seq}: signed with certificate {serial} after its revocation took effect"
            ),
            Fault::KeyWentBack { seq, serial } => write!(
                f,
                "entry {seq}: signed with the older certificate {serial} after a newer one had signed"
            ),
        }
    }
}

/// What the verifier found for one device's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub device: String,
    /// Entries examined.
    pub entries: u64,
    /// Read entries whose content is held.
    pub reads: u64,
    /// Read entries whose content was purged (with a record).
    pub purged: u64,
    /// Purge entries.
    pub purge_records: u64,
    /// Access records (§1798.90.52) in the log.
    #[serde(default)]
    pub accesses: u64,
    /// One past the highest valid sequence number.
    pub size: u64,
    /// Hash of the highest valid entry.
    pub head: Option<String>,
    /// Sizes of the signed checkpoints the log was checked against.
    pub checkpoints: Vec<u64>,
    pub faults: Vec<Fault>,
    /// Faults found beyond the first [`MAX_FAULTS`], counted but not kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub faults_omitted: u64,
    /// Gaps the node covered with a signed loss record ([`super::loss`]):
    /// reported, not faults.
    pub losses: Vec<super::loss::Loss>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Most faults one report keeps; the rest are counted.
pub const MAX_FAULTS: usize = 1000;

impl LogReport {
    pub fn authentic(&self) -> bool {
        self.faults.is_empty() && self.faults_omitted == 0
    }

    /// Keep `f`, or count it once [`MAX_FAULTS`] are kept.
    fn fault(&mut self, f: Fault) {
        if self.faults.len() < MAX_FAULTS {
            self.faults.push(f);
        } else {
            self.faults_omitted += 1;
        }
    }

    /// A report for a log whose certificate could not be accepted.
    pub fn refused(device: &str, entries: usize, err: &CertError) -> Self {
        LogReport {
            device: device.to_owned(),
            entries: entries as u64,
            reads: 0,
            purged: 0,
            purge_records: 0,
            accesses: 0,
            size: 0,
            head: None,
            checkpoints: Vec::new(),
            faults: vec![Fault::Certificate {
                reason: err.to_string(),
            }],
            faults_omitted: 0,
            losses: Vec::new(),
        }
    }
}

/// Options for [`verify_log`].
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// The entries are the whole log, so it must start at sequence 0.
    pub from_start: bool,
}

/// How many of the most recent valid entries the verifier remembers, to
/// tell a duplicate from a fork and to check the chain across a reorder.
const WINDOW: usize = 256;
/// Most ranges (missing entries, purged reads awaiting their record) one
/// log keeps open; beyond, the oldest is reported at once.
pub(crate) const MAX_PENDING: usize = 4096;
/// Most checkpoints one log keeps to match against later entries.
const MAX_CHECKPOINTS: usize = 256;

/// The keys a node's log may be signed with: every certificate the node has
/// held (each already checked against the CA), and revocations.
#[derive(Debug, Clone, Default)]
pub struct NodeKeys {
    /// Oldest first: by start of validity, then in the order given.
    certs: Vec<DeviceCert>,
    /// Serial → the moment its revocation took effect (the earliest given).
    revoked: BTreeMap<String, UnixMillis>,
}

impl NodeKeys {
    pub fn new(certs: Vec<DeviceCert>, revocations: &[Revocation]) -> Self {
        let mut keys = NodeKeys::default();
        for c in certs {
            keys.add(c);
        }
        for r in revocations {
            let at = keys
                .revoked
                .entry(r.serial.to_ascii_lowercase())
                .or_insert(r.effective_at);
            *at = (*at).min(r.effective_at);
        }
        keys
    }

    /// One certificate, no revocations.
    pub fn single(cert: &DeviceCert) -> Self {
        Self::new(vec![cert.clone()], &[])
    }

    /// Add a certificate (ignored if its serial is already held). Give
    /// certificates oldest first: those whose validity starts in the same
    /// second keep the order given.
    pub fn add(&mut self, cert: DeviceCert) {
        if self.certs.iter().any(|c| c.serial == cert.serial) {
            return;
        }
        let at = self
            .certs
            .partition_point(|c| c.not_before <= cert.not_before);
        self.certs.insert(at, cert);
    }

    pub fn certs(&self) -> &[DeviceCert] {
        &self.certs
    }

    fn revoked_at(&self, serial: &str) -> Option<UnixMillis> {
        self.revoked.get(&serial.to_ascii_lowercase()).copied()
    }
}

/// Verifies one device's log entry by entry, in the order given, with state
/// that does not grow with the log: the last [`WINDOW`] entries' hashes and
/// what is still pending (missing ranges, purged reads awaiting their
/// record, checkpoints awaiting their entry). Feed the checkpoints first,
/// then the entries, then call [`LogVerifier::finish`].
#[derive(Debug)]
pub struct LogVerifier {
    device: DeviceId,
    keys: NodeKeys,
    refusal: Option<CertError>,
    opts: VerifyOptions,
    faults: Vec<Fault>,
    omitted: u64,
    entries: u64,
    reads: u64,
    purged: u64,
    purge_records: u64,
    accesses: u64,
    /// One past the highest sequence number that appeared.
    next_present: Option<u64>,
    /// The highest valid entry and its hash.
    highest: Option<(u64, Hash32)>,
    /// Recent valid entries: seq → (hash, prev).
    recent: BTreeMap<u64, (Hash32, Hash32)>,
    missing: RangeSet,
    unrecorded: RangeSet,
    /// Ranges the hub signed that it purged ([`LogVerifier::hub_purged`]).
    hub_ranges: RangeSet,
    checkpoints: BTreeMap<u64, Hash32>,
    /// The newest certificate (index into the keys) that has signed.
    key_index: usize,
    /// The `prev` of each valid entry that came after a missing one: what
    /// a loss statement covering the gap must name.
    after_gap: BTreeMap<u64, Hash32>,
    /// Losses the node signed ([`super::loss`]), matched against the gaps
    /// at the end.
    stated: Vec<super::loss::Loss>,
}

impl LogVerifier {
    pub fn new(device: DeviceId, keys: NodeKeys, opts: VerifyOptions) -> Self {
        LogVerifier {
            device,
            keys,
            refusal: None,
            opts,
            faults: Vec::new(),
            omitted: 0,
            entries: 0,
            reads: 0,
            purged: 0,
            purge_records: 0,
            accesses: 0,
            next_present: None,
            highest: None,
            recent: BTreeMap::new(),
            missing: RangeSet::default(),
            unrecorded: RangeSet::default(),
            hub_ranges: RangeSet::default(),
            checkpoints: BTreeMap::new(),
            key_index: 0,
            after_gap: BTreeMap::new(),
            stated: Vec::new(),
        }
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Add a certificate of this device (checked against the CA) before
    /// the entries it signed.
    pub fn add_certificate(&mut self, cert: DeviceCert) {
        self.keys.add(cert);
    }

    /// A certificate offered for this device was refused: reported if no
    /// certificate is accepted.
    pub fn refuse_certificate(&mut self, err: CertError) {
        self.refusal.get_or_insert(err);
    }

    /// Ranges of this node's log whose content the hub purged, as a
    /// hub-signed [`EntryKind::NodePurge`] record states (the caller checks
    /// that record against the hub's key). Feed them before the entries: a
    /// read without content in these ranges is purged with a record.
    pub fn hub_purged(&mut self, ranges: &[super::SeqRange]) {
        for r in ranges {
            if self.hub_ranges.len() >= MAX_PENDING {
                break;
            }
            self.hub_ranges.insert(r.first, r.last);
        }
    }

    /// Entries seen so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn fault(&mut self, f: Fault) {
        if self.faults.len() < MAX_FAULTS {
            self.faults.push(f);
        } else {
            self.omitted += 1;
        }
    }

    /// The index of a certificate whose key verifies `check`: the newest
    /// that has signed first, then the others from newest.
    fn signer(&self, check: impl Fn(&crate::crypto::PublicKey) -> bool) -> Option<usize> {
        let certs = &self.keys.certs;
        if certs.is_empty() {
            return None;
        }
        let current = self.key_index.min(certs.len() - 1);
        std::iter::once(current)
            .chain((0..certs.len()).rev().filter(|&i| i != current))
            .find(|&i| check(&certs[i].key))
    }

    /// A signed checkpoint of this device.
    pub fn checkpoint(&mut self, cp: &SignedCheckpoint) {
        let c = &cp.checkpoint;
        if c.device != self.device || self.signer(|k| cp.signature_valid(k)).is_none() {
            self.fault(Fault::CheckpointBadSignature { size: c.size });
            return;
        }
        if let Some(&h) = self.checkpoints.get(&c.size) {
            if h != c.head {
                self.fault(Fault::ConflictingCheckpoints { size: c.size });
            }
            return;
        }
        if c.size == 0 {
            return;
        }
        // An entry already seen (checkpoints normally come first).
        if let Some(&(hash, _)) = self.recent.get(&(c.size - 1)) {
            if hash != c.head {
                self.fault(Fault::CheckpointMismatch { size: c.size });
            }
        }
        if self.checkpoints.len() < MAX_CHECKPOINTS {
            self.checkpoints.insert(c.size, c.head);
        }
    }

    /// The next entry, in the order given.
    pub fn entry(&mut self, e: &SignedEntry) {
        let position = self.entries as usize;
        self.entries += 1;
        let seq = e.seq();
        if e.header.device != self.device {
            self.fault(Fault::WrongDevice {
                seq,
                claimed: e.header.device.to_string(),
            });
            return;
        }
        self.present(seq);
        if self.keys.certs.is_empty() {
            // Reported as a refused certificate by `finish`.
            return;
        }
        let Some(signer) = self.signer(|k| e.signature_valid(k)) else {
            self.fault(Fault::BadSignature { seq });
            return;
        };
        if !e.body_matches() {
            self.fault(Fault::Edited { seq });
        }
        // The newest certificate with that key that was valid at capture.
        let at = e.header.captured_at;
        let key = self.keys.certs[signer].key.to_bytes();
        let certs = &self.keys.certs;
        let same_key = |i: &usize| certs[*i].key.to_bytes() == key;
        let valid = (0..certs.len())
            .rev()
            .filter(same_key)
            .find(|&i| certs[i].valid_at(at));
        let newest = (0..certs.len()).rev().find(same_key).unwrap_or(signer);
        let used = match valid {
            Some(i) => i,
            None => {
                self.fault(Fault::OutsideCertificateValidity { seq });
                newest
            }
        };
        let serial = self.keys.certs[used].serial.clone();
        if self.keys.revoked_at(&serial).is_some_and(|r| r <= at) {
            self.fault(Fault::SignedAfterRevocation {
                seq,
                serial: serial.clone(),
            });
        }
        if used < self.key_index {
            self.fault(Fault::KeyWentBack { seq, serial });
        } else {
            self.key_index = used;
        }
        if let Some((after, _)) = self.highest {
            if seq < after {
                self.fault(Fault::Reorder {
                    position,
                    seq,
                    after,
                });
            }
        }
        let hash = e.hash();
        if let Some(&(h, _)) = self.recent.get(&seq) {
            self.fault(if h == hash {
                Fault::Duplicate { seq }
            } else {
                Fault::Fork { seq }
            });
            return;
        }
        self.place(seq, hash, e.header.prev);
        self.kind(e);
    }

    /// A sequence number appeared: track what is missing.
    fn present(&mut self, seq: u64) {
        match self.next_present {
            None => {
                if self.opts.from_start && seq > 0 {
                    self.missing.insert(0, seq - 1);
                }
                self.next_present = Some(seq.saturating_add(1));
            }
            Some(next) if seq >= next => {
                if seq > next {
                    self.missing.insert(next, seq - 1);
                }
                self.next_present = Some(seq.saturating_add(1));
            }
            Some(_) => {
                self.missing.remove(seq, seq);
            }
        }
        while self.missing.len() > MAX_PENDING {
            if let Some((first, last)) = self.missing.pop_first() {
                self.fault(Fault::Gap { first, last });
            }
        }
    }

    /// Put a valid entry in its place on the chain.
    fn place(&mut self, seq: u64, hash: Hash32, prev: Hash32) {
        let expected = if seq == 0 {
            Some(Hash32::ZERO)
        } else {
            self.recent.get(&(seq - 1)).map(|&(h, _)| h)
        };
        if expected.is_some_and(|h| h != prev) {
            self.fault(Fault::BrokenChain { seq });
        }
        if expected.is_none() && self.after_gap.len() < MAX_PENDING {
            self.after_gap.insert(seq, prev);
        }
        let next = seq.saturating_add(1);
        if let Some(&(_, next_prev)) = self.recent.get(&next).filter(|_| next > seq) {
            if next_prev != hash {
                self.fault(Fault::BrokenChain { seq: next });
            }
        }
        if let Some(&head) = self.checkpoints.get(&next) {
            if head != hash {
                self.fault(Fault::CheckpointMismatch { size: next });
            }
        }
        self.recent.insert(seq, (hash, prev));
        if self.recent.len() > WINDOW {
            self.recent.pop_first();
        }
        if self.highest.is_none_or(|(h, _)| seq > h) {
            self.highest = Some((seq, hash));
        }
    }

    /// What a valid entry records. (Entry kinds added later, such as a
    /// signed record of a loss, are accounted for here.)
    fn kind(&mut self, e: &SignedEntry) {
        let seq = e.seq();
        match &e.header.kind {
            EntryKind::Read { .. } => {
                if e.read().is_some() {
                    self.reads += 1;
                } else if e.is_purged() && self.hub_ranges.contains(seq) {
                    self.purged += 1;
                } else if e.is_purged() {
                    self.unrecorded.insert(seq, seq);
                    while self.unrecorded.len() > MAX_PENDING {
                        if let Some((first, last)) = self.unrecorded.pop_first() {
                            for s in first..=last.min(first.saturating_add(MAX_FAULTS as u64)) {
                                self.fault(Fault::PurgedWithoutRecord { seq: s });
                            }
                        }
                    }
                }
            }
            EntryKind::Purge { ranges, .. } => {
                self.purge_records += 1;
                for r in ranges {
                    if r.first < seq {
                        self.purged += self.unrecorded.remove(r.first, r.last.min(seq - 1));
                    }
                }
            }
            EntryKind::Loss {
                first,
                last,
                lost_head,
                reason,
            } => {
                if self.stated.len() < MAX_PENDING {
                    self.stated.push(super::loss::Loss {
                        first: *first,
                        last: *last,
                        lost_head: lost_head.to_hex(),
                        reason: reason.clone(),
                        recorded_at: seq,
                    });
                }
            }
            EntryKind::Access(_) => self.accesses += 1,
            // A hub's record of what it purged from a node's log: counted
            // as a purge record of this (the hub's) log; the ranges are fed
            // to the node's verifier with [`LogVerifier::hub_purged`].
            EntryKind::NodePurge { .. } => self.purge_records += 1,
            // Alerts and dispositions carry their record in the signed
            // header; nothing to pair up.
            EntryKind::Alert(_) | EntryKind::Disposition(_) => {}
        }
    }

    /// The verdict, once every entry was given.
    pub fn finish(self) -> LogReport {
        self.finish_awaiting_hub().resolve(None)
    }

    /// The verdict but for the reads purged without a record.
    fn report(mut self) -> LogReport {
        if self.keys.certs.is_empty() {
            let err = self.refusal.take().unwrap_or(CertError::NotPem);
            return LogReport::refused(self.device.as_str(), self.entries as usize, &err);
        }
        // A gap the node covered with a signed loss record (recorded after
        // it, naming exactly it, and stating the hash the entry after it
        // links to) is a loss, not a fault.
        let mut losses = Vec::new();
        while let Some((first, last)) = self.missing.pop_first() {
            let next_prev = last
                .checked_add(1)
                .and_then(|n| self.after_gap.get(&n))
                .map(Hash32::to_hex);
            let covered = self.stated.iter().position(|l| {
                l.first == first
                    && l.last == last
                    && l.recorded_at > last
                    && next_prev.as_ref().is_none_or(|p| *p == l.lost_head)
            });
            match covered {
                Some(i) => losses.push(self.stated.swap_remove(i)),
                None => self.fault(Fault::Gap { first, last }),
            }
        }
        let size = self.highest.map_or(0, |(s, _)| s.saturating_add(1));
        let sizes: Vec<u64> = self.checkpoints.keys().copied().collect();
        for &c in &sizes {
            if c > size {
                self.fault(Fault::MissingTail {
                    checkpoint_size: c,
                    log_size: size,
                });
            }
        }
        LogReport {
            device: self.device.to_string(),
            entries: self.entries,
            reads: self.reads,
            purged: self.purged,
            purge_records: self.purge_records,
            accesses: self.accesses,
            size,
            head: self.highest.map(|(_, h)| h.to_hex()),
            checkpoints: sizes,
            faults: self.faults,
            faults_omitted: self.omitted,
            losses,
        }
    }

    /// The verdict, except for reads whose content is gone without a
    /// record in this log: a bundle carries the hub's own log, whose
    /// signed [`EntryKind::NodePurge`] records may cover them, after the
    /// nodes' logs (the hub reads its log last, so every purge a node's
    /// entries show is in it). [`AwaitingHubPurges::resolve`] settles them
    /// once that log was read. What is kept meanwhile is the ranges of such
    /// reads (at most [`MAX_PENDING`]), not the reads.
    pub(crate) fn finish_awaiting_hub(mut self) -> AwaitingHubPurges {
        let unrecorded = std::mem::take(&mut self.unrecorded);
        AwaitingHubPurges {
            report: self.report(),
            unrecorded,
        }
    }
}

/// Verify a device's entries (in stored order) and checkpoints against one
/// certificate.
pub fn verify_log(
    cert: &DeviceCert,
    entries: &[SignedEntry],
    checkpoints: &[SignedCheckpoint],
    opts: VerifyOptions,
) -> LogReport {
    verify_node_log(
        cert.name.clone(),
        NodeKeys::single(cert),
        entries,
        checkpoints,
        opts,
    )
}

/// Verify a node's log against every certificate it has held and the
/// deployment's revocations.
pub fn verify_node_log<'a>(
    device: DeviceId,
    keys: NodeKeys,
    entries: impl IntoIterator<Item = &'a SignedEntry>,
    checkpoints: impl IntoIterator<Item = &'a SignedCheckpoint>,
    opts: VerifyOptions,
) -> LogReport {
    let mut v = LogVerifier::new(device, keys, opts);
    for c in checkpoints {
        v.checkpoint(c);
    }
    for e in entries {
        v.entry(e);
    }
    v.finish()
}
