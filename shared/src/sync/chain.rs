//! Placing verified entries on a device's stored chain: the rule that makes
//! uploads idempotent and forks impossible to store.

use crate::log::Checkpoint;
use crate::types::Hash32;
use crate::wire::{Refusal, RefusalCode};

use super::Verified;

/// How far a device's log is durably held: entries `0..next_seq`, the last
/// hashing to `head` (zero when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub next_seq: u64,
    pub head: Hash32,
}

/// What to do with a verified batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Entries at the front of the batch that are already stored, identical.
    pub duplicates: usize,
    /// Index in the batch of the first entry to append.
    pub append_from: usize,
    /// Progress once the new entries are stored.
    pub after: Progress,
}

/// Decide where a batch of consecutive, verified entries goes on a chain at
/// `progress`. `stored_hash(seq)` gives the hash of an entry already held.
///
/// Entries below `next_seq` must equal what is stored (a replay: skipped);
/// a different one is a fork. The first new entry must be `next_seq` and
/// link to `head`; a batch that starts later leaves a gap and is refused.
pub fn place(
    batch: &[Verified],
    progress: Progress,
    mut stored_hash: impl FnMut(u64) -> Option<Hash32>,
) -> Result<Placement, Refusal> {
    let mut after = progress;
    let mut duplicates = 0;
    let mut append_from = batch.len();
    for (i, v) in batch.iter().enumerate() {
        let seq = v.seq();
        if seq < after.next_seq {
            if i >= append_from {
                return Err(refusal(
                    RefusalCode::Malformed,
                    seq,
                    "sequence numbers go back",
                ));
            }
            match stored_hash(seq) {
                Some(h) if h == v.hash => duplicates += 1,
                Some(_) => {
                    return Err(refusal(
                        RefusalCode::Fork,
                        seq,
                        "a different entry is already stored for this sequence number",
                    ))
                }
                None => {
                    return Err(refusal(
                        RefusalCode::Gap,
                        seq,
                        "stored entry missing below the acknowledged sequence",
                    ))
                }
            }
        } else if seq == after.next_seq {
            if v.entry.header.prev != after.head {
                return Err(refusal(
                    RefusalCode::BrokenChain,
                    seq,
                    "entry does not link to the stored head",
                ));
            }
            if append_from == batch.len() {
                append_from = i;
            }
            after = Progress {
                next_seq: seq + 1,
                head: v.hash,
            };
        } else {
            return Err(refusal(
                RefusalCode::Gap,
                seq,
                &format!("expected sequence {}", after.next_seq),
            ));
        }
    }
    Ok(Placement {
        duplicates,
        append_from,
        after,
    })
}

fn refusal(code: RefusalCode, seq: u64, detail: &str) -> Refusal {
    Refusal {
        code,
        seq: Some(seq),
        detail: detail.to_owned(),
    }
}

/// Hold a node to one history: a new checkpoint (already checked against
/// the entries it came with) and the one stored must both name heads on the
/// stored chain, so the larger extends the smaller. `chain_hash(seq)` gives
/// the hash of entry `seq` as held (the entries being placed included).
/// Returns whether `new` should replace the stored one (it is larger).
pub fn check_checkpoint(
    stored: Option<&Checkpoint>,
    new: &Checkpoint,
    mut chain_hash: impl FnMut(u64) -> Option<Hash32>,
) -> Result<bool, Refusal> {
    for c in stored.into_iter().chain([new]) {
        let on_chain = match c.size.checked_sub(1) {
            None => c.head == Hash32::ZERO,
            Some(last) => chain_hash(last) == Some(c.head),
        };
        if !on_chain {
            return Err(refusal(
                RefusalCode::Fork,
                c.size,
                "the node signed two histories: a checkpoint names a head that is not on its stored chain",
            ));
        }
    }
    Ok(stored.is_none_or(|s| new.size > s.size))
}
