//! What the replicated documents (legal holds, local hotlist entries)
//! share: an automerge document whose root map holds only scalar keys —
//! never a nested object two replicas could each create and so conflict
//! over — loaded within a size bound and without ever panicking on a
//! peer's bytes, with an `epoch` (how many times the hub compacted it) and
//! `gone/<id>` tombstones (what compaction dropped for good, and until
//! when that is remembered).
//!
//! The documents' own rules (what a key holds, who wins a conflict, what
//! compaction keeps) live in their modules; this one only reads and
//! writes keys. [`ReplicatedDoc`] is what the hub's and the edges'
//! drivers need of either document.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ReadDoc, ScalarValue, Value, ROOT};

use crate::types::UnixMillis;

pub(crate) const EPOCH_KEY: &str = "epoch";
pub(crate) const GONE_PREFIX: &str = "gone/";
/// Ids are made by the writing side; bound them so a key stays small.
pub(crate) const MAX_ID_LEN: usize = 64;

/// A replicated document as the drivers that keep one see it: bounded
/// loading, saving, merging a peer's copy, the hub's compaction, and the
/// automerge actor its writer edits under.
pub trait ReplicatedDoc: Sized + Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The largest saved document a peer accepts: never store a larger one.
    const MAX_BYTES: usize;
    fn load(bytes: &[u8]) -> Result<Self, Self::Error>;
    fn save(&mut self) -> Vec<u8>;
    /// Write under `other`'s actor (copies of one lineage, edited in turn).
    fn write_as(&mut self, other: &Self);
    /// Write under a fresh actor (after a write whose fate is unknown).
    fn new_actor(&mut self);
    /// Merge a saved document; whether anything changed here.
    fn merge_bytes(&mut self, bytes: &[u8], now: UnixMillis) -> Result<bool, Self::Error>;
    /// Whether it is time for [`Self::compact`].
    fn needs_compaction(&self, now: UnixMillis) -> bool;
    /// The next epoch, without what compaction drops at `now`.
    fn compact(&self, now: UnixMillis) -> Result<Self, Self::Error>;
    /// The error of a document of `len` bytes, over [`Self::MAX_BYTES`].
    fn too_large(len: usize) -> Self::Error;
}

/// Why a replica could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicaError {
    /// The bytes are not a document, or automerge refused them.
    #[error("{0}")]
    Corrupt(String),
    /// A write failed.
    #[error("{0}")]
    Edit(String),
    /// A key holds a value of the wrong kind.
    #[error("{0}")]
    BadKey(String),
}

/// One replicated document's root map.
pub(crate) struct Replica {
    doc: AutoCommit,
}

impl Replica {
    /// An empty document with a fresh random actor.
    pub(crate) fn new() -> Self {
        Replica {
            doc: AutoCommit::new(),
        }
    }

    /// A saved document (the caller bounds its size first).
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, ReplicaError> {
        // automerge checks its input; catching a panic here keeps a
        // malformed peer document from ever taking a process down.
        let doc = catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| ReplicaError::Corrupt("decoder panicked".into()))?
            .map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        Ok(Replica { doc })
    }

    /// The whole document (history kept).
    pub(crate) fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    pub(crate) fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Take in `other`'s history.
    pub(crate) fn merge(&mut self, other: &mut Replica) -> Result<(), ReplicaError> {
        catch_unwind(AssertUnwindSafe(|| self.doc.merge(&mut other.doc)))
            .map_err(|_| ReplicaError::Corrupt("merge panicked".into()))?
            .map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        Ok(())
    }

    /// A copy with its own fresh actor.
    pub(crate) fn fork(&mut self) -> Result<Replica, ReplicaError> {
        let doc = catch_unwind(AssertUnwindSafe(|| self.doc.fork()))
            .map_err(|_| ReplicaError::Corrupt("fork panicked".into()))?;
        Ok(Replica { doc })
    }

    /// Write as `other` does (its actor): one writer editing copies of its
    /// own document one after another adds no actor per edit. Only for
    /// copies of one lineage edited in turn, never at once.
    pub(crate) fn write_as(&mut self, other: &Replica) {
        self.doc.set_actor(other.doc.get_actor().clone());
    }

    /// Write under a fresh random actor (after a write whose fate is
    /// unknown, so no two different changes ever share an actor's number).
    pub(crate) fn new_actor(&mut self) {
        self.doc.set_actor(ActorId::random());
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        self.doc.keys(ROOT).collect()
    }

    /// Whether `key` has any value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.doc.get(ROOT, key).ok().flatten().is_some()
    }

    /// Every value under `key` (each side of a conflict), which must all
    /// be bytes.
    pub(crate) fn all_bytes(&self, key: &str) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let all = self
            .doc
            .get_all(ROOT, key)
            .map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        all.into_iter()
            .map(|(v, _)| match v {
                Value::Scalar(s) => match s.as_ref() {
                    ScalarValue::Bytes(b) => Ok(b.clone()),
                    _ => Err(ReplicaError::BadKey(key.into())),
                },
                _ => Err(ReplicaError::BadKey(key.into())),
            })
            .collect()
    }

    /// Every unsigned integer under `key`.
    pub(crate) fn uints(&self, key: &str) -> Vec<u64> {
        self.doc
            .get_all(ROOT, key)
            .map(|all| {
                all.into_iter()
                    .filter_map(|(v, _)| match v {
                        Value::Scalar(s) => match s.as_ref() {
                            ScalarValue::Uint(n) => Some(*n),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn put_bytes(&mut self, key: &str, bytes: Vec<u8>) -> Result<(), ReplicaError> {
        self.doc
            .put(ROOT, key, ScalarValue::Bytes(bytes))
            .map_err(|e| ReplicaError::Edit(e.to_string()))
    }

    fn put_uint(&mut self, key: &str, n: u64) -> Result<(), ReplicaError> {
        self.doc
            .put(ROOT, key, ScalarValue::Uint(n))
            .map_err(|e| ReplicaError::Edit(e.to_string()))
    }

    /// How many times the hub has compacted this document (absent: 0;
    /// concurrent values: the greatest).
    pub(crate) fn epoch(&self) -> u64 {
        self.uints(EPOCH_KEY).into_iter().max().unwrap_or(0)
    }

    pub(crate) fn set_epoch(&mut self, epoch: u64) -> Result<(), ReplicaError> {
        self.put_uint(EPOCH_KEY, epoch)
    }

    /// Tombstones by id: until when each is kept (concurrent tombstones
    /// of two compactions: the longest).
    pub(crate) fn tombstones(&self) -> BTreeMap<String, UnixMillis> {
        self.keys()
            .into_iter()
            .filter_map(|k| {
                let id = k.strip_prefix(GONE_PREFIX)?.to_string();
                let until = self.uints(&k).into_iter().max()?;
                Some((id, UnixMillis(until)))
            })
            .collect()
    }

    /// Whether `id` has a tombstone.
    pub(crate) fn gone(&self, id: &str) -> bool {
        self.has(&gone_key(id))
    }

    pub(crate) fn put_gone(&mut self, id: &str, until: UnixMillis) -> Result<(), ReplicaError> {
        self.put_uint(&gone_key(id), until.0)
    }

    /// The checks every document makes of the keys it shares: the epoch
    /// and tombstones hold integers, a tombstone names a valid id.
    pub(crate) fn check_common(&self, key: &str) -> Result<bool, ReplicaError> {
        if key == EPOCH_KEY {
            if self.uints(key).is_empty() {
                return Err(ReplicaError::BadKey(key.into()));
            }
            return Ok(true);
        }
        if let Some(id) = key.strip_prefix(GONE_PREFIX) {
            if !valid_id(id) || self.uints(key).is_empty() {
                return Err(ReplicaError::BadKey(key.into()));
            }
            return Ok(true);
        }
        Ok(false)
    }
}

pub(crate) fn gone_key(id: &str) -> String {
    format!("{GONE_PREFIX}{id}")
}

/// Ids: 1 to [`MAX_ID_LEN`] of `[A-Za-z0-9_-]`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
