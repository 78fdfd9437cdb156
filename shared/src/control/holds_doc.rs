//! The replicated document of legal holds: an automerge document that the
//! hub and its edges each edit — some of them offline for days — and that
//! merges without losing a hold.
//!
//! Layout, chosen so no edit can shadow another: the document's root map
//! holds only scalar keys ([`super::replica`]):
//! - `hold/<id>`: the hold as placed (postcard bytes, never changed);
//! - `release/<id>`: its release, set once. Concurrent releases (two hub
//!   processes): the earliest counts;
//! - `gone/<id>`: the small tombstone of a released hold whose record
//!   compaction dropped (value: the time until which it is kept);
//! - `epoch`: the compaction count (absent: 0);
//! - `sig/<digest>`: an officer's signature of one value at one key
//!   ([`crate::control::officer::ChangeSignature`]; the digest names the
//!   key and value), written beside a hold placed on an edge and copied
//!   with it, so the hub can check who placed it
//!   ([`crate::control::node_change`]).
//!
//! A replica that never saw a hold cannot overwrite it, a release writes
//! only its own hold's key, and a stale copy merges in as a subset of the
//! history. A hold is therefore active until a `release/<id>` for that
//! very id exists in the merged history.
//!
//! Keeping it small: automerge keeps every change, so the document would
//! only grow. The hub [`compact`](HoldsDoc::compact)s it: a fresh
//! document, `epoch + 1`, holding every active hold, the holds released
//! within [`GRACE_MS`] (so a node offline a few days still sees why a hold
//! ended) and a tombstone for each hold released before, kept
//! [`TOMBSTONE_MS`]. An active hold is never dropped. Documents of
//! different epochs never merge histories: the newer one is taken and the
//! older one's content *rebased* onto it — holds it lacks added (unless
//! tombstoned), its releases applied. A stale copy therefore never drops
//! a hold and never brings a released one back, and an offline edge's
//! new holds survive a compaction they never saw.

use std::collections::BTreeMap;

use super::holds::{Hold, Release};
use super::replica::{replicated_doc, valid_id, Replica, ReplicaError};
use crate::types::UnixMillis;

/// The largest saved document accepted from storage or a peer (some
/// thousands of holds); it bounds the control frame nodes may send.
pub const MAX_HOLDS_DOC_BYTES: usize = 256 << 10;
/// Released holds stay whole this long, then compaction drops them.
pub const GRACE_MS: u64 = 7 * DAY_MS;
/// A dropped hold's tombstone is kept this long after its release:
/// longer than any edge runs offline.
pub const TOMBSTONE_MS: u64 = 365 * DAY_MS;
const DAY_MS: u64 = 24 * 3600 * 1000;

const HOLD_PREFIX: &str = "hold/";
const RELEASE_PREFIX: &str = "release/";

#[derive(Debug, thiserror::Error)]
pub enum HoldsDocError {
    #[error("holds document is {0} bytes, over the {MAX_HOLDS_DOC_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("holds document does not load: {0}")]
    Corrupt(String),
    #[error("holds document: key {0:?} does not decode")]
    BadEntry(String),
    #[error("a hold must name at least one plate, node, time bound or place")]
    EmptyScope,
    #[error("hold id {0:?} is empty, too long, or not [A-Za-z0-9-_]")]
    BadId(String),
    #[error("hold {0} already exists")]
    Exists(String),
    #[error("no hold {0}")]
    NoSuchHold(String),
    #[error("hold {0} is already released")]
    AlreadyReleased(String),
    #[error("holds document edit failed: {0}")]
    Edit(String),
}

impl From<ReplicaError> for HoldsDocError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Corrupt(m) => HoldsDocError::Corrupt(m),
            ReplicaError::Edit(m) => HoldsDocError::Edit(m),
            ReplicaError::BadKey(k) => HoldsDocError::BadEntry(k),
        }
    }
}

/// One hold's raw parts, as read from a document.
#[derive(Debug, Clone)]
struct Record {
    /// As placed (never released).
    hold: Hold,
    bytes: Vec<u8>,
    release: Option<(Release, Vec<u8>)>,
}

impl Record {
    fn view(&self) -> Hold {
        let mut h = self.hold.clone();
        h.released = self.release.as_ref().map(|(r, _)| r.clone());
        h
    }

    /// Released longer than the grace period ago: compaction drops it.
    fn droppable(&self, now: UnixMillis) -> bool {
        self.release
            .as_ref()
            .is_some_and(|(r, _)| r.at.0.saturating_add(GRACE_MS) <= now.0)
    }

    /// Until when the tombstone of this (released) hold is kept.
    fn tombstone_until(&self) -> UnixMillis {
        let released = self
            .release
            .as_ref()
            .map_or(self.hold.placed_at, |(r, _)| r.at);
        UnixMillis(released.0.saturating_add(TOMBSTONE_MS))
    }
}

/// The holds, by id, as one automerge document.
pub struct HoldsDoc {
    doc: Replica,
}

impl std::fmt::Debug for HoldsDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldsDoc")
            .field("epoch", &self.epoch())
            .field("holds", &self.holds().len())
            .finish()
    }
}

impl HoldsDoc {
    /// Place a hold. Its id must be new and its scope name something.
    pub fn add(&mut self, hold: Hold) -> Result<(), HoldsDocError> {
        if !valid_id(&hold.id) {
            return Err(HoldsDocError::BadId(hold.id));
        }
        if hold.scope.is_empty() {
            return Err(HoldsDocError::EmptyScope);
        }
        let key = hold_key(&hold.id);
        if self.doc.has(&key) || self.doc.gone(&hold.id) {
            return Err(HoldsDocError::Exists(hold.id));
        }
        let mut placed = hold;
        let release = placed.released.take();
        let bytes =
            postcard::to_allocvec(&placed).map_err(|e| HoldsDocError::Edit(e.to_string()))?;
        self.doc.write(&key, bytes)?;
        if let Some(release) = release {
            self.release(&placed.id, release)?;
        }
        Ok(())
    }

    /// Release the hold `id`, and only it.
    pub fn release(&mut self, id: &str, release: Release) -> Result<(), HoldsDocError> {
        let record = self
            .record(id)?
            .ok_or_else(|| HoldsDocError::NoSuchHold(id.into()))?;
        if record.release.is_some() {
            return Err(HoldsDocError::AlreadyReleased(id.into()));
        }
        let bytes =
            postcard::to_allocvec(&release).map_err(|e| HoldsDocError::Edit(e.to_string()))?;
        Ok(self.doc.write(&release_key(id), bytes)?)
    }

    /// Sign every change this document's writer makes from now on as
    /// `signer` (an officer logged in on an edge).
    pub fn sign_as(&mut self, signer: std::sync::Arc<crate::control::officer::OfficerSigner>) {
        self.doc.sign_as(DOC_NAME, signer);
    }

    /// Every hold the document holds whole, released or not, sorted by id.
    pub fn holds(&self) -> Vec<Hold> {
        self.records().values().map(Record::view).collect()
    }

    /// The holds not released, sorted by id.
    pub fn active(&self) -> Vec<Hold> {
        self.holds().into_iter().filter(Hold::active).collect()
    }

    /// One hold, with its release if any.
    pub fn get(&self, id: &str) -> Option<Hold> {
        self.record(id).ok().flatten().map(|r| r.view())
    }

    /// Whether it is time to [`compact`](Self::compact): something has
    /// been droppable for a grace period already, so compactions (each a
    /// new epoch every node rebases onto) come at most about once per
    /// [`GRACE_MS`], each dropping a batch.
    pub fn needs_compaction(&self, now: UnixMillis) -> bool {
        let earlier = UnixMillis(now.0.saturating_sub(GRACE_MS));
        self.records().values().any(|r| r.droppable(earlier))
            || self
                .doc
                .tombstones()
                .values()
                .any(|&until| until <= earlier)
    }

    /// A fresh document of the next epoch holding what is still worth
    /// keeping at `now`: every active hold; holds released more than
    /// [`GRACE_MS`] ago leave, each with a tombstone kept until
    /// [`TOMBSTONE_MS`] after its release. Only the hub compacts; other
    /// replicas take the new epoch when they merge it.
    pub fn compact(&self, now: UnixMillis) -> Result<HoldsDoc, HoldsDocError> {
        let mut fresh = HoldsDoc::new();
        fresh.doc.set_epoch(self.epoch().saturating_add(1))?;
        fresh.doc.keep_tombstones(&self.doc, now)?;
        for (id, record) in self.records() {
            if record.droppable(now) {
                fresh.doc.bury(&id, record.tombstone_until(), now)?;
                continue;
            }
            fresh.copy_record(self, &id, &record)?;
        }
        Ok(fresh)
    }

    /// Apply the content of `stale` (another epoch) onto this document:
    /// what it has that this one lacks is added, never removed.
    fn rebase(&mut self, stale: &HoldsDoc, now: UnixMillis) -> Result<(), HoldsDocError> {
        // Its tombstones first.
        let gone = self.doc.keep_tombstones(&stale.doc, now)?;
        let mine = self.records();
        for (id, theirs) in stale.records() {
            if gone.contains_key(&id) {
                continue;
            }
            match mine.get(&id) {
                // Unknown here: new on the stale side, or dropped here
                // past its tombstone. An active one comes back (a hold is
                // never dropped by a copy); a long-released one comes as
                // its tombstone.
                None if theirs.droppable(now) => {
                    self.doc.bury(&id, theirs.tombstone_until(), now)?;
                }
                None => self.copy_record(stale, &id, &theirs)?,
                Some(ours) => {
                    if let (None, Some((_, bytes))) = (&ours.release, &theirs.release) {
                        self.doc.copy_from(&stale.doc, &release_key(&id), bytes)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Copy `record` of `from` (with the signatures it keeps).
    fn copy_record(
        &mut self,
        from: &HoldsDoc,
        id: &str,
        record: &Record,
    ) -> Result<(), HoldsDocError> {
        self.doc
            .copy_from(&from.doc, &hold_key(id), &record.bytes)?;
        if let Some((_, bytes)) = &record.release {
            self.doc.copy_from(&from.doc, &release_key(id), bytes)?;
        }
        Ok(())
    }

    fn records(&self) -> BTreeMap<String, Record> {
        self.doc
            .records(HOLD_PREFIX, |id| self.record(id).ok().flatten())
    }

    fn record(&self, id: &str) -> Result<Option<Record>, HoldsDocError> {
        let bad = || HoldsDocError::BadEntry(id.into());
        // A tombstone (met in a merge with a copy that still had the
        // record) hides the record: it was released for good.
        if self.doc.gone(id) {
            return Ok(None);
        }
        // Copies of one hold are identical bytes; take the least.
        let Some(bytes) = self.doc.all_bytes(&hold_key(id))?.into_iter().min() else {
            return Ok(None);
        };
        let hold: Hold = postcard::from_bytes(&bytes).map_err(|_| bad())?;
        if hold.id != id || hold.released.is_some() {
            return Err(bad());
        }
        // Concurrent releases: the earliest (then least bytes) counts.
        let release = self.doc.earliest(
            &release_key(id),
            |b| postcard::from_bytes::<Release>(b).map_err(|_| bad()),
            |r| r.at,
        )?;
        Ok(Some(Record {
            hold,
            bytes,
            release,
        }))
    }

    fn validate(&self) -> Result<(), HoldsDocError> {
        for key in self.doc.keys() {
            if self.doc.check_common(&key)? {
                continue;
            }
            if let Some(id) = key.strip_prefix(HOLD_PREFIX) {
                if !valid_id(id) {
                    return Err(HoldsDocError::BadEntry(key.clone()));
                }
                // Every value (each side of a conflict too) must decode.
                for bytes in self.doc.all_bytes(&key)? {
                    let hold: Hold = postcard::from_bytes(&bytes)
                        .map_err(|_| HoldsDocError::BadEntry(key.clone()))?;
                    if hold.id != id || hold.released.is_some() {
                        return Err(HoldsDocError::BadEntry(key.clone()));
                    }
                }
            } else if let Some(id) = key.strip_prefix(RELEASE_PREFIX) {
                // A release only travels with the hold it ends.
                if !self.doc.has(&hold_key(id)) {
                    return Err(HoldsDocError::BadEntry(key.clone()));
                }
                for bytes in self.doc.all_bytes(&key)? {
                    postcard::from_bytes::<Release>(&bytes)
                        .map_err(|_| HoldsDocError::BadEntry(key.clone()))?;
                }
            } else {
                return Err(HoldsDocError::BadEntry(key));
            }
        }
        Ok(())
    }
}

replicated_doc!(
    HoldsDoc,
    HoldsDocError,
    MAX_HOLDS_DOC_BYTES,
    HoldsDocError::TooLarge
);

fn hold_key(id: &str) -> String {
    format!("{HOLD_PREFIX}{id}")
}

fn release_key(id: &str) -> String {
    format!("{RELEASE_PREFIX}{id}")
}

mod changes;

pub use changes::DOC_NAME;

#[cfg(test)]
mod tests;
