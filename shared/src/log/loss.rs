//! Entries a node lost from its own store, and the signed record that says so.
//!
//! An entry that the node can no longer read (its bytes in the store are
//! damaged) can never be uploaded, and without a rule every later read
//! would wait behind it forever. The rule: the node appends a signed
//! [`EntryKind::Loss`] entry to its log naming the lost sequence numbers
//! and the hash of the last lost entry (known from the `prev` of the entry
//! after it). The hub accepts the gap that such a statement covers (the
//! entry after the gap must link to the stated hash, so the chain still
//! holds), and the verifier reports a covered gap as a loss by the node —
//! "entry k lost by the node: unreadable in its store" — not as a fault.
//! A gap that no signed statement covers, or whose next entry does not
//! link to the stated hash, stays a [`Fault::Gap`](super::Fault::Gap).

use serde::Serialize;

use super::{EntryKind, SignedEntry};
use crate::types::Hash32;

/// A loss the node signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub first: u64,
    pub last: u64,
    /// The hash of entry `last`.
    pub lost_head: String,
    pub reason: String,
    /// The sequence number of the loss entry itself.
    pub recorded_at: u64,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "entry {} lost by the node", self.first)?;
        } else {
            write!(f, "entries {}..={} lost by the node", self.first, self.last)?;
        }
        write!(
            f,
            ": {} (signed in entry {})",
            self.reason, self.recorded_at
        )
    }
}

/// The loss statement in `e`, if it is one: (first, last, lost head).
pub fn statement(e: &SignedEntry) -> Option<(u64, u64, Hash32)> {
    match &e.header.kind {
        EntryKind::Loss {
            first,
            last,
            lost_head,
            ..
        } => Some((*first, *last, *lost_head)),
        _ => None,
    }
}

/// Whether a gap `first..=last` of a log is covered by one of the valid
/// (signature-checked) `entries`: a loss entry recorded after the gap that
/// names exactly those entries, and whose stated hash is what `next` (the
/// entry after the gap, if held) links to. Returns the loss to report.
pub fn covering<'a>(
    entries: impl IntoIterator<Item = &'a SignedEntry>,
    first: u64,
    last: u64,
    next: Option<&SignedEntry>,
) -> Option<Loss> {
    entries.into_iter().find_map(|e| {
        let EntryKind::Loss {
            first: f,
            last: l,
            lost_head,
            reason,
        } = &e.header.kind
        else {
            return None;
        };
        let links = next.is_none_or(|n| n.seq() != l + 1 || n.header.prev == *lost_head);
        (*f == first && *l == last && e.seq() > last && links).then(|| Loss {
            first,
            last,
            lost_head: lost_head.to_hex(),
            reason: reason.clone(),
            recorded_at: e.seq(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::DeviceCert;
    use crate::crypto::SecretKey;
    use crate::log::verify::{verify_log, VerifyOptions};
    use crate::log::{Fault, LogWriter};
    use crate::types::{DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis};

    fn log_with_loss(lost: u64, statement_head: Option<Hash32>) -> (DeviceCert, Vec<SignedEntry>) {
        let key = SecretKey::from_bytes(&[3; 32]);
        let device = DeviceId::new("pole-l").expect("valid");
        let cert = DeviceCert {
            name: device.clone(),
            kind: DeviceKind::Pole,
            key: key.public(),
            not_before: UnixMillis(0),
            not_after: UnixMillis(u64::MAX),
            serial: String::new(),
            der: Vec::new(),
        };
        let mut w = LogWriter::new(key, device);
        let mut log = Vec::new();
        for i in 0..10u64 {
            let content = ReadContent {
                location: Location::Site {
                    site_id: "s".into(),
                },
                camera: "c".into(),
                plate: "ABC123".into(),
                confidence: 9000,
                char_confidence: vec![9000; 6],
                issuer: Default::default(),
                detector_model: "d".into(),
                ocr_model: "o".into(),
                crop_hash: Hash32::ZERO,
                overview_hash: Hash32::ZERO,
            };
            log.push(
                w.append_read(content, UnixMillis(1000 + i), TimeSource::Ntp)
                    .expect("valid"),
            );
        }
        let head = statement_head.unwrap_or(log[lost as usize + 1].header.prev);
        let loss = w
            .append_loss(
                lost,
                lost,
                head,
                "unreadable in the node's store",
                UnixMillis(5000),
                TimeSource::Ntp,
            )
            .expect("valid");
        log.push(loss);
        log.remove(lost as usize);
        (cert, log)
    }

    #[test]
    fn a_signed_loss_is_reported_as_a_loss_not_a_fault() {
        let (cert, log) = log_with_loss(4, None);
        let r = verify_log(&cert, &log, &[], VerifyOptions { from_start: true });
        assert!(r.authentic(), "{:?}", r.faults);
        assert_eq!(r.losses.len(), 1);
        assert_eq!(r.losses[0].first, 4);
        assert!(r.losses[0]
            .to_string()
            .starts_with("entry 4 lost by the node: unreadable"));
    }

    #[test]
    fn a_loss_of_entry_zero_is_covered_too() {
        let (cert, log) = log_with_loss(0, None);
        let r = verify_log(&cert, &log, &[], VerifyOptions { from_start: true });
        assert!(r.authentic(), "{:?}", r.faults);
        assert_eq!(r.losses.len(), 1);
    }

    #[test]
    fn a_loss_statement_with_the_wrong_hash_covers_nothing() {
        let (cert, log) = log_with_loss(4, Some(Hash32([7; 32])));
        let r = verify_log(&cert, &log, &[], VerifyOptions { from_start: true });
        assert!(r.losses.is_empty());
        assert!(r.faults.contains(&Fault::Gap { first: 4, last: 4 }));
    }

    #[test]
    fn a_gap_without_a_statement_is_still_a_gap() {
        let (cert, mut log) = log_with_loss(4, None);
        log.pop();
        let r = verify_log(&cert, &log, &[], VerifyOptions { from_start: true });
        assert!(r.losses.is_empty());
        assert!(r.faults.contains(&Fault::Gap { first: 4, last: 4 }));
    }
}
