//! The offline verifier: from a device certificate already checked against
//! the CA, decide whether a log (or a set of its entries) is authentic, and
//! if not, name exactly what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{EntryKind, SeqRange, SignedCheckpoint, SignedEntry};
use crate::cert::{CertError, DeviceCert};
use crate::types::{DeviceId, Hash32};

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
    /// One past the highest valid sequence number.
    pub size: u64,
    /// Hash of the highest valid entry.
    pub head: Option<String>,
    pub faults: Vec<Fault>,
    /// Gaps the node covered with a signed loss record ([`super::loss`]):
    /// reported, not faults.
    pub losses: Vec<super::loss::Loss>,
}

impl LogReport {
    pub fn authentic(&self) -> bool {
        self.faults.is_empty()
    }

    /// A report for a log whose certificate could not be accepted.
    pub fn refused(device: &str, entries: usize, err: &CertError) -> Self {
        LogReport {
            device: device.to_owned(),
            entries: entries as u64,
            reads: 0,
            purged: 0,
            purge_records: 0,
            size: 0,
            head: None,
            faults: vec![Fault::Certificate {
                reason: err.to_string(),
            }],
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

/// Verify a device's entries (in stored order) and checkpoints.
pub fn verify_log(
    cert: &DeviceCert,
    entries: &[SignedEntry],
    checkpoints: &[SignedCheckpoint],
    opts: VerifyOptions,
) -> LogReport {
    let mut faults = Vec::new();
    let mut valid: BTreeMap<u64, &SignedEntry> = BTreeMap::new();
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let mut highest: Option<u64> = None;

    for (position, e) in entries.iter().enumerate() {
        let seq = e.seq();
        if e.header.device != cert.name {
            faults.push(Fault::WrongDevice {
                seq,
                claimed: e.header.device.to_string(),
            });
            continue;
        }
        present.insert(seq);
        if !e.signature_valid(&cert.key) {
            faults.push(Fault::BadSignature { seq });
            continue;
        }
        if !e.body_matches() {
            faults.push(Fault::Edited { seq });
        }
        if !cert.valid_at(e.header.captured_at) {
            faults.push(Fault::OutsideCertificateValidity { seq });
        }
        if let Some(after) = highest {
            if seq < after {
                faults.push(Fault::Reorder {
                    position,
                    seq,
                    after,
                });
            }
        }
        highest = Some(highest.map_or(seq, |h| h.max(seq)));
        match valid.get(&seq) {
            Some(prev) if prev.hash() == e.hash() => faults.push(Fault::Duplicate { seq }),
            Some(_) => faults.push(Fault::Fork { seq }),
            None => {
                valid.insert(seq, e);
            }
        }
    }

    // Contiguity and the hash chain, in sequence order. A gap the node
    // covered with a signed loss record is a loss, not a fault.
    let mut losses = Vec::new();
    let mut gap = |first: u64, last: u64, faults: &mut Vec<Fault>| match super::loss::covering(
        valid.values().copied(),
        first,
        last,
        valid.get(&(last + 1)).copied(),
    ) {
        Some(l) => losses.push(l),
        None => faults.push(Fault::Gap { first, last }),
    };
    if opts.from_start {
        if let Some(&first) = present.first() {
            if first > 0 {
                gap(0, first - 1, &mut faults);
            }
        }
    }
    let mut prev_present: Option<u64> = None;
    for &seq in &present {
        if let Some(p) = prev_present {
            if seq > p + 1 {
                gap(p + 1, seq - 1, &mut faults);
            }
        }
        prev_present = Some(seq);
    }
    for (&seq, e) in &valid {
        let expected = if seq == 0 {
            Some(Hash32::ZERO)
        } else {
            valid.get(&(seq - 1)).map(|p| p.hash())
        };
        if let Some(h) = expected {
            if e.header.prev != h {
                faults.push(Fault::BrokenChain { seq });
            }
        }
    }

    // Every purged read needs a later purge entry that names it.
    let purges: Vec<(u64, &Vec<SeqRange>)> = valid
        .values()
        .filter_map(|e| match &e.header.kind {
            EntryKind::Purge { ranges, .. } => Some((e.seq(), ranges)),
            EntryKind::Read { .. } | EntryKind::Loss { .. } => None,
        })
        .collect();
    let (mut reads, mut purged) = (0u64, 0u64);
    for e in valid.values() {
        if e.read().is_some() {
            reads += 1;
        } else if e.is_purged() {
            let seq = e.seq();
            let recorded = purges
                .iter()
                .any(|(at, ranges)| *at > seq && ranges.iter().any(|r| r.contains(seq)));
            if recorded {
                purged += 1;
            } else {
                faults.push(Fault::PurgedWithoutRecord { seq });
            }
        }
    }

    // Checkpoints: each must match the log at its size.
    let size = valid.last_key_value().map_or(0, |(s, _)| s + 1);
    let mut heads: BTreeMap<u64, Hash32> = BTreeMap::new();
    for cp in checkpoints {
        let c = &cp.checkpoint;
        if c.device != cert.name || !cp.signature_valid(&cert.key) {
            faults.push(Fault::CheckpointBadSignature { size: c.size });
            continue;
        }
        if let Some(h) = heads.insert(c.size, c.head) {
            if h != c.head {
                faults.push(Fault::ConflictingCheckpoints { size: c.size });
            }
        }
        if c.size == 0 {
            continue;
        }
        match valid.get(&(c.size - 1)) {
            Some(e) if e.hash() != c.head => {
                faults.push(Fault::CheckpointMismatch { size: c.size })
            }
            Some(_) => {}
            None if c.size > size => faults.push(Fault::MissingTail {
                checkpoint_size: c.size,
                log_size: size,
            }),
            None => {}
        }
    }

    LogReport {
        device: cert.name.to_string(),
        entries: entries.len() as u64,
        reads,
        purged,
        purge_records: purges.len() as u64,
        size,
        head: valid.last_key_value().map(|(_, e)| e.hash().to_hex()),
        faults,
        losses,
    }
}

/// Verify several devices' entries against their certificates at once:
/// entries are grouped by the device they name.
pub fn verify_devices<'a>(
    certs: &BTreeMap<DeviceId, Result<DeviceCert, CertError>>,
    entries: impl IntoIterator<Item = &'a SignedEntry>,
    checkpoints: impl IntoIterator<Item = &'a SignedCheckpoint>,
    opts: VerifyOptions,
) -> Vec<LogReport> {
    let mut by_device: BTreeMap<&DeviceId, (Vec<SignedEntry>, Vec<SignedCheckpoint>)> =
        BTreeMap::new();
    for e in entries {
        by_device
            .entry(&e.header.device)
            .or_default()
            .0
            .push(e.clone());
    }
    for c in checkpoints {
        by_device
            .entry(&c.checkpoint.device)
            .or_default()
            .1
            .push(c.clone());
    }
    by_device
        .into_iter()
        .map(|(device, (es, cps))| match certs.get(device) {
            Some(Ok(cert)) => verify_log(cert, &es, &cps, opts),
            Some(Err(e)) => LogReport::refused(device.as_str(), es.len(), e),
            None => LogReport::refused(device.as_str(), es.len(), &CertError::NotPem),
        })
        .collect()
}
