//! Placing verified entries on a device's stored chain: the rule that makes
//! uploads idempotent and forks impossible to store.

use crate::log::{Checkpoint, SignedCheckpoint};
use crate::types::Hash32;
use crate::wire::{Refusal, RefusalCode};

use super::{NewKey, Verified};

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
    try_place(batch, progress, |s| {
        Ok::<_, std::convert::Infallible>(stored_hash(s))
    })
    .map_err(|e| match e {
        ChainError::Refused(r) => r,
        ChainError::Storage(never) => match never {},
    })
}

/// Why a batch cannot be placed: the protocol refuses it, or the stored
/// state could not be read (then nothing is acknowledged: a read error never
/// counts as "nothing stored").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError<E> {
    Refused(Refusal),
    Storage(E),
}

impl<E> From<Refusal> for ChainError<E> {
    fn from(r: Refusal) -> Self {
        ChainError::Refused(r)
    }
}

/// [`place`] over a store whose reads can fail.
pub fn try_place<E>(
    batch: &[Verified],
    progress: Progress,
    mut stored_hash: impl FnMut(u64) -> Result<Option<Hash32>, E>,
) -> Result<Placement, ChainError<E>> {
    let mut after = progress;
    let mut duplicates = 0;
    let mut append_from = batch.len();
    for (i, v) in batch.iter().enumerate() {
        let seq = v.seq();
        if seq < after.next_seq {
            if i >= append_from {
                return Err(
                    refusal(RefusalCode::Malformed, seq, "sequence numbers go back").into(),
                );
            }
            match stored_hash(seq).map_err(ChainError::Storage)? {
                Some(h) if h == v.hash => duplicates += 1,
                Some(_) => {
                    return Err(refusal(
                        RefusalCode::Fork,
                        seq,
                        "a different entry is already stored for this sequence number",
                    )
                    .into())
                }
                None => {
                    return Err(refusal(
                        RefusalCode::Gap,
                        seq,
                        "stored entry missing below the acknowledged sequence",
                    )
                    .into())
                }
            }
        } else if seq == after.next_seq {
            if v.entry.header.prev != after.head {
                return Err(refusal(
                    RefusalCode::BrokenChain,
                    seq,
                    "entry does not link to the stored head",
                )
                .into());
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
            )
            .into());
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
    try_check_checkpoint(stored, new, |s| {
        Ok::<_, std::convert::Infallible>(chain_hash(s))
    })
    .map_err(|e| match e {
        ChainError::Refused(r) => r,
        ChainError::Storage(never) => match never {},
    })
}

/// [`check_checkpoint`] over a store whose reads can fail.
pub fn try_check_checkpoint<E>(
    stored: Option<&Checkpoint>,
    new: &Checkpoint,
    mut chain_hash: impl FnMut(u64) -> Result<Option<Hash32>, E>,
) -> Result<bool, ChainError<E>> {
    for c in stored.into_iter().chain([new]) {
        let on_chain = match c.size.checked_sub(1) {
            None => c.head == Hash32::ZERO,
            Some(last) => chain_hash(last).map_err(ChainError::Storage)? == Some(c.head),
        };
        if !on_chain {
            return Err(refusal(
                RefusalCode::Fork,
                c.size,
                "the node signed two histories: a checkpoint names a head that is not on its stored chain",
            )
            .into());
        }
    }
    Ok(stored.is_none_or(|s| new.size > s.size))
}

/// What a storage backend holds of one device's chain, read inside the
/// transaction that will write the batch. A read that fails (or a record
/// that does not decode) is an error, never "nothing stored".
pub trait ChainState {
    type Error;
    /// The hash of stored entry `seq`, if held.
    fn stored_hash(&mut self, seq: u64) -> Result<Option<Hash32>, Self::Error>;
    /// The latest checkpoint kept for the device.
    fn checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, Self::Error>;
}

/// What a backend writes for an accepted batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub placement: Placement,
    /// The batch's checkpoint extends the kept one: keep it instead.
    pub keep_checkpoint: bool,
}

/// The protocol's rules for one verified batch, for every storage backend:
/// place the entries on the chain held at `progress` ([`try_place`]), then
/// hold the node to one history ([`try_check_checkpoint`]). The backend
/// only reads through `state` and writes what the decision says.
pub fn decide<S: ChainState>(
    batch: &[Verified],
    checkpoint: Option<&SignedCheckpoint>,
    progress: Progress,
    state: &mut S,
) -> Result<Decision, ChainError<S::Error>> {
    let stored = |state: &mut S, seq: u64| {
        if seq.checked_add(1) == Some(progress.next_seq) {
            return Ok(Some(progress.head));
        }
        state.stored_hash(seq)
    };
    let placement = try_place(batch, progress, |seq| stored(state, seq))?;
    let Some(c) = checkpoint else {
        return Ok(Decision {
            placement,
            keep_checkpoint: false,
        });
    };
    let kept = state.checkpoint().map_err(ChainError::Storage)?;
    let first = batch.first().map_or(0, Verified::seq);
    let keep_checkpoint = try_check_checkpoint(
        kept.as_ref().map(|k| &k.checkpoint),
        &c.checkpoint,
        |seq| match seq.checked_sub(first) {
            Some(i) if (i as usize) < batch.len() => Ok(Some(batch[i as usize].hash)),
            _ => stored(state, seq),
        },
    )?;
    Ok(Decision {
        placement,
        keep_checkpoint,
    })
}

/// A certificate a node has held, as [`new_key_effect`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKey<'a> {
    pub serial: &'a str,
    /// The first sequence number it signs for; `None` while pending.
    pub effective_from: Option<u64>,
}

/// When a renewed certificate takes effect: the node's pending certificate
/// `new` takes effect at its first entry this batch appends (`placement`),
/// and never before `new.first_seq`. Refused if another certificate took
/// effect at or after that point (keys only move forward) or `new` is not
/// among the node's `held` certificates. `Some(from)`: record `new.serial`
/// as effective from `from`; `None`: nothing changes (nothing appended, or
/// it took effect already).
pub fn new_key_effect(
    held: &[HeldKey<'_>],
    new: &NewKey,
    batch: &[Verified],
    placement: &Placement,
) -> Result<Option<u64>, Refusal> {
    let Some(first_appended) = batch.get(placement.append_from).map(Verified::seq) else {
        return Ok(None);
    };
    let from = new.first_seq.max(first_appended);
    let Some(cert) = held.iter().find(|c| c.serial == new.serial) else {
        return Err(Refusal {
            code: RefusalCode::UnknownNode,
            seq: Some(from),
            detail: format!("certificate {} is not known for this node", new.serial),
        });
    };
    if cert.effective_from.is_some() {
        return Ok(None);
    }
    if held
        .iter()
        .any(|c| c.effective_from.is_some_and(|f| f >= from))
    {
        return Err(Refusal {
            code: RefusalCode::BadSignature,
            seq: Some(from),
            detail: "signed by an older certificate after a newer one took effect".into(),
        });
    }
    Ok(Some(from))
}
