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
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ReadDoc, ScalarValue, Value, ROOT};

use super::officer::{ChangeSignature, OfficerSigner};
use crate::types::UnixMillis;

pub(crate) const EPOCH_KEY: &str = "epoch";
pub(crate) const GONE_PREFIX: &str = "gone/";
/// `sig/<first 16 bytes of a hash of key and value, hex>`: the officers'
/// signatures of that very value at that key ([`ChangeSignature`]).
pub(crate) const SIG_PREFIX: &str = "sig/";
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
    /// What a node's copy `theirs` changes against this document, one
    /// logical change each ([`super::node_change`]).
    fn node_changes(&self, theirs: &Self, now: UnixMillis) -> Vec<super::node_change::NodeChange>;
    /// Write an accepted change (its exact value, and the signature that
    /// verified) as this document's own writer.
    fn take_change(
        &mut self,
        change: &super::node_change::NodeChange,
        signature: &ChangeSignature,
    ) -> Result<(), Self::Error>;
}

/// What every replicated document `$ty` (a struct whose only field is a
/// [`Replica`] named `doc`) has alike: `new`, `Default`, bounded `load`
/// (every key checked by its own `validate`), `save`, `epoch`, `merge`
/// across epochs (over its own `rebase`), and [`ReplicatedDoc`] over its
/// own `needs_compaction`, `compact`, `changes_from` and `apply`; a
/// document over `$max` bytes is `$too_large(len)`.
macro_rules! replicated_doc {
    ($ty:ident, $err:ty, $max:expr, $too_large:path) => {
        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $ty {
            /// An empty document (epoch 0), with a fresh random actor.
            pub fn new() -> Self {
                Self {
                    doc: $crate::control::replica::Replica::new(),
                }
            }

            /// A saved document (from storage or a peer). Bounded in size;
            /// every key must decode, so a document that loads also lists
            /// cleanly.
            pub fn load(bytes: &[u8]) -> Result<Self, $err> {
                if bytes.len() > $max {
                    return Err($too_large(bytes.len()));
                }
                let this = Self {
                    doc: $crate::control::replica::Replica::load(bytes)?,
                };
                this.validate()?;
                Ok(this)
            }

            /// The whole document, compacted by automerge (history kept).
            pub fn save(&mut self) -> Vec<u8> {
                self.doc.save()
            }

            /// How many times the hub has compacted this document.
            pub fn epoch(&self) -> u64 {
                self.doc.epoch()
            }

            /// Take in what `other` has that this one lacks. `other` is
            /// checked first, so a bad peer document changes nothing here.
            /// Returns whether anything changed here.
            pub fn merge(
                &mut self,
                other: &mut $ty,
                now: $crate::types::UnixMillis,
            ) -> Result<bool, $err> {
                other.validate()?;
                let before = self.doc.heads();
                let (mine, theirs) = (self.epoch(), other.epoch());
                if mine == theirs {
                    self.doc.merge(&mut other.doc)?;
                    // Both sides valid; check the union too (a key that
                    // depends on a record can only arrive with it, but a
                    // peer is not trusted to keep it so).
                    self.validate()?;
                    return Ok(self.doc.heads() != before);
                }
                if theirs > mine {
                    // Take the newer epoch (own actor), then rebase our
                    // content.
                    let fresh = other.doc.fork()?;
                    let old = std::mem::replace(self, $ty { doc: fresh });
                    self.rebase(&old, now)?;
                    return Ok(true);
                }
                self.rebase(other, now)?;
                Ok(self.doc.heads() != before)
            }

            /// Merge a saved document (as sent by a peer). Returns whether
            /// anything changed here.
            pub fn merge_bytes(
                &mut self,
                bytes: &[u8],
                now: $crate::types::UnixMillis,
            ) -> Result<bool, $err> {
                let mut other = Self::load(bytes)?;
                self.merge(&mut other, now)
            }
        }

        impl $crate::control::replica::ReplicatedDoc for $ty {
            type Error = $err;
            const MAX_BYTES: usize = $max;

            fn load(bytes: &[u8]) -> Result<Self, Self::Error> {
                <$ty>::load(bytes)
            }

            fn save(&mut self) -> Vec<u8> {
                <$ty>::save(self)
            }

            fn write_as(&mut self, other: &Self) {
                self.doc.write_as(&other.doc);
            }

            fn new_actor(&mut self) {
                self.doc.new_actor();
            }

            fn merge_bytes(
                &mut self,
                bytes: &[u8],
                now: $crate::types::UnixMillis,
            ) -> Result<bool, Self::Error> {
                <$ty>::merge_bytes(self, bytes, now)
            }

            fn needs_compaction(&self, now: $crate::types::UnixMillis) -> bool {
                <$ty>::needs_compaction(self, now)
            }

            fn compact(&self, now: $crate::types::UnixMillis) -> Result<Self, Self::Error> {
                <$ty>::compact(self, now)
            }

            fn too_large(len: usize) -> Self::Error {
                $too_large(len)
            }

            fn node_changes(
                &self,
                theirs: &Self,
                now: $crate::types::UnixMillis,
            ) -> Vec<$crate::control::node_change::NodeChange> {
                <$ty>::changes_from(self, theirs, now)
            }

            fn take_change(
                &mut self,
                change: &$crate::control::node_change::NodeChange,
                signature: &$crate::control::officer::ChangeSignature,
            ) -> Result<(), Self::Error> {
                <$ty>::apply(self, change, signature)
            }
        }
    };
}
pub(crate) use replicated_doc;

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
    /// Who signs what [`Replica::write`] writes (an officer on an edge):
    /// the document's name and the signer.
    signer: Option<(&'static str, Arc<OfficerSigner>)>,
}

impl Replica {
    /// An empty document with a fresh random actor.
    pub(crate) fn new() -> Self {
        Replica {
            doc: AutoCommit::new(),
            signer: None,
        }
    }

    /// A saved document (the caller bounds its size first).
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, ReplicaError> {
        // automerge checks its input; catching a panic here keeps a
        // malformed peer document from ever taking a process down.
        let doc = catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| ReplicaError::Corrupt("decoder panicked".into()))?
            .map_err(|e| ReplicaError::Corrupt(e.to_string()))?;
        Ok(Replica { doc, signer: None })
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
        Ok(Replica {
            doc,
            signer: self.signer.clone(),
        })
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

    /// Sign what [`Replica::write`] writes from now on, as `signer`, in
    /// the document named `doc`.
    pub(crate) fn sign_as(&mut self, doc: &'static str, signer: Arc<OfficerSigner>) {
        self.signer = Some((doc, signer));
    }

    /// A change of this replica's own writer: the value, and its signature
    /// when an officer signs ([`Replica::sign_as`]). Copies of what others
    /// wrote go through [`Replica::put_bytes`] and carry the signatures
    /// they had ([`Replica::copy_signatures`]).
    pub(crate) fn write(&mut self, key: &str, bytes: Vec<u8>) -> Result<(), ReplicaError> {
        if let Some((doc, signer)) = &self.signer {
            let signature = signer.sign(doc, key, &bytes);
            self.put_signature(key, &bytes, &signature)?;
        }
        self.put_bytes(key, bytes)
    }

    /// Keep `signature` of `value` at `key`.
    pub(crate) fn put_signature(
        &mut self,
        key: &str,
        value: &[u8],
        signature: &ChangeSignature,
    ) -> Result<(), ReplicaError> {
        let bytes =
            postcard::to_allocvec(signature).map_err(|e| ReplicaError::Edit(e.to_string()))?;
        self.put_bytes(&sig_key(key, value), bytes)
    }

    /// The signatures kept for `value` at `key` (those that decode).
    pub(crate) fn signatures(&self, key: &str, value: &[u8]) -> Vec<ChangeSignature> {
        self.all_bytes(&sig_key(key, value))
            .unwrap_or_default()
            .iter()
            .filter_map(|b| postcard::from_bytes(b).ok())
            .collect()
    }

    /// A change this replica (a node's copy) makes to document `doc`: the
    /// key and value, what it does, what is wrong with it if anything,
    /// and the signatures kept for it.
    pub(crate) fn node_change(
        &self,
        doc: &'static str,
        key: &str,
        value: Vec<u8>,
        what: super::node_change::What,
        invalid: Option<String>,
    ) -> super::node_change::NodeChange {
        super::node_change::NodeChange {
            doc,
            signatures: self.signatures(key, &value),
            key: key.to_string(),
            value,
            what,
            invalid,
        }
    }

    /// What `theirs` (a node's copy of document `doc`) changes that no
    /// node may, in every replicated document alike: an epoch beyond this
    /// replica's, and a tombstone, still kept at `now` and not ours, of a
    /// record `live` says is in force here (`live(id)` gives what the
    /// tombstone would remove).
    pub(crate) fn epoch_and_tombstone_changes(
        &self,
        theirs: &Replica,
        doc: &'static str,
        now: UnixMillis,
        live: impl Fn(&str) -> Option<super::node_change::What>,
    ) -> Vec<super::node_change::NodeChange> {
        let mut out = Vec::new();
        let (ours_epoch, their_epoch) = (self.epoch(), theirs.epoch());
        if their_epoch > ours_epoch {
            out.push(theirs.node_change(
                doc,
                EPOCH_KEY,
                Vec::new(),
                super::node_change::What::Epoch {
                    theirs: their_epoch,
                    ours: ours_epoch,
                },
                None,
            ));
        }
        let our_gone = self.tombstones();
        for (id, until) in theirs.tombstones() {
            if until <= now || our_gone.contains_key(&id) {
                continue;
            }
            if let Some(what) = live(&id) {
                out.push(theirs.node_change(
                    doc,
                    &gone_key(&id),
                    until.0.to_be_bytes().to_vec(),
                    what,
                    None,
                ));
            }
        }
        out
    }

    /// The changes a node's copy (this replica) makes with `values` at
    /// `key` of document `doc`: one for each value that decodes as a `T`,
    /// `what` saying what it does and what is wrong with it if anything.
    pub(crate) fn decoded_changes<T: serde::de::DeserializeOwned>(
        &self,
        doc: &'static str,
        key: &str,
        values: impl IntoIterator<Item = Vec<u8>>,
        what: impl Fn(T) -> (super::node_change::What, Option<String>),
    ) -> Vec<super::node_change::NodeChange> {
        values
            .into_iter()
            .filter_map(|value| {
                let (what, invalid) = what(postcard::from_bytes::<T>(&value).ok()?);
                Some(self.node_change(doc, key, value, what, invalid))
            })
            .collect()
    }

    /// The earliest of the values under `key` (each side of a conflict) by
    /// `(at, bytes)`, with its bytes: concurrent releases or removals of
    /// one record resolve alike on every replica. Each value must
    /// `decode`.
    pub(crate) fn earliest<T, E: From<ReplicaError>>(
        &self,
        key: &str,
        decode: impl Fn(&[u8]) -> Result<T, E>,
        at: impl Fn(&T) -> UnixMillis,
    ) -> Result<Option<(T, Vec<u8>)>, E> {
        let mut earliest: Option<(T, Vec<u8>)> = None;
        for bytes in self.all_bytes(key)? {
            let value = decode(&bytes)?;
            if earliest
                .as_ref()
                .is_none_or(|(o, ob)| (at(&value), &bytes) < (at(o), ob))
            {
                earliest = Some((value, bytes));
            }
        }
        Ok(earliest)
    }

    /// Every record under `prefix` that `read` (given its id) can read, by
    /// id; one that does not read is left out.
    pub(crate) fn records<R>(
        &self,
        prefix: &str,
        read: impl Fn(&str) -> Option<R>,
    ) -> BTreeMap<String, R> {
        self.keys()
            .into_iter()
            .filter_map(|k| {
                let id = k.strip_prefix(prefix)?;
                Some((id.to_string(), read(id)?))
            })
            .collect()
    }

    /// Write `value` at `key` as `from` has it, with the signatures `from`
    /// keeps for it (a copied record keeps them, so the hub can still
    /// check a change it has not seen).
    pub(crate) fn copy_from(
        &mut self,
        from: &Replica,
        key: &str,
        value: &[u8],
    ) -> Result<(), ReplicaError> {
        self.copy_signatures(from, key, value)?;
        self.put_bytes(key, value.to_vec())
    }

    fn copy_signatures(
        &mut self,
        from: &Replica,
        key: &str,
        value: &[u8],
    ) -> Result<(), ReplicaError> {
        let at = sig_key(key, value);
        let mut have = self.all_bytes(&at).unwrap_or_default();
        for bytes in from.all_bytes(&at).unwrap_or_default() {
            if !have.contains(&bytes) {
                self.put_bytes(&at, bytes.clone())?;
                have.push(bytes);
            }
        }
        Ok(())
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

    /// Leave a tombstone for `id` kept until `until`, unless that has
    /// passed at `now`.
    pub(crate) fn bury(
        &mut self,
        id: &str,
        until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), ReplicaError> {
        if until > now {
            self.put_gone(id, until)?;
        }
        Ok(())
    }

    /// Keep the tombstones of `from` (an older epoch) still kept at `now`
    /// where this replica keeps none as long: they travel on, so no third
    /// replica's copy of a record can bring it back. Returns this
    /// replica's tombstones after.
    pub(crate) fn keep_tombstones(
        &mut self,
        from: &Replica,
        now: UnixMillis,
    ) -> Result<BTreeMap<String, UnixMillis>, ReplicaError> {
        let mut gone = self.tombstones();
        for (id, until) in from.tombstones() {
            if until > now && gone.get(&id).is_none_or(|&mine| mine < until) {
                self.put_gone(&id, until)?;
                gone.insert(id, until);
            }
        }
        Ok(gone)
    }

    /// The checks every document makes of the keys it shares: the epoch
    /// and tombstones hold integers, a tombstone names a valid id, a
    /// signature decodes. Whether `key` is one of those.
    pub(crate) fn check_common(&self, key: &str) -> Result<bool, ReplicaError> {
        if let Some(digest) = key.strip_prefix(SIG_PREFIX) {
            let hex_ok = digest.len() == 32
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(ReplicaError::BadKey(key.into()));
            }
            for bytes in self.all_bytes(key)? {
                let s: ChangeSignature =
                    postcard::from_bytes(&bytes).map_err(|_| ReplicaError::BadKey(key.into()))?;
                if !s.well_formed() {
                    return Err(ReplicaError::BadKey(key.into()));
                }
            }
            return Ok(true);
        }
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

/// Where the signatures of `value` at `key` are kept.
fn sig_key(key: &str, value: &[u8]) -> String {
    let h = crate::crypto::tagged_hash(
        b"alpr/control/v1/signature-place\0",
        &[key.as_bytes(), &[0], value],
    );
    format!("{SIG_PREFIX}{}", hex::encode(&h.0[..16]))
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
