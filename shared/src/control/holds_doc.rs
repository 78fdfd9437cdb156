//! The replicated document of legal holds: an automerge document that the
//! hub and its edges each edit — some of them offline for days — and that
//! merges without losing a hold.
//!
//! Layout, chosen so no edit can shadow another: the document's root map
//! (which every replica shares from the start) holds one key per hold,
//! `hold/<id>`, whose value is the hold as placed (postcard bytes, never
//! changed), and one key per release, `release/<id>`, set once when that
//! hold is released. Nothing is ever deleted. There is no nested object
//! that two replicas could each create and so conflict over: a replica
//! that never saw a hold cannot overwrite it, a release writes only its
//! own hold's key, and a stale copy merges in as a subset of the history.
//! A hold is therefore active until a `release/<id>` for that very id
//! exists in the merged history.

use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc, ScalarValue, Value, ROOT};

use super::holds::{Hold, Release};

/// The largest saved document accepted from storage or a peer (some
/// thousands of holds); it bounds the control frame nodes may send.
pub const MAX_HOLDS_DOC_BYTES: usize = 256 << 10;

const HOLD_PREFIX: &str = "hold/";
const RELEASE_PREFIX: &str = "release/";
/// Ids are made by the placing side; bound them so a key stays small.
const MAX_ID_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HoldsDocError {
    #[error("holds document is {0} bytes, over the {MAX_HOLDS_DOC_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("holds document does not load: {0}")]
    Corrupt(String),
    #[error("hold {0}: entry in the holds document does not decode")]
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

/// The holds, by id, as one automerge document.
pub struct HoldsDoc {
    doc: AutoCommit,
}

impl std::fmt::Debug for HoldsDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldsDoc")
            .field("holds", &self.holds().len())
            .finish()
    }
}

impl Default for HoldsDoc {
    fn default() -> Self {
        Self::new()
    }
}

impl HoldsDoc {
    /// An empty document, with a fresh random actor.
    pub fn new() -> Self {
        Self {
            doc: AutoCommit::new(),
        }
    }

    /// A saved document (from storage or a peer). Bounded in size; every
    /// entry must decode, so a document that loads also lists cleanly.
    pub fn load(bytes: &[u8]) -> Result<Self, HoldsDocError> {
        if bytes.len() > MAX_HOLDS_DOC_BYTES {
            return Err(HoldsDocError::TooLarge(bytes.len()));
        }
        // automerge checks its input; catching a panic here keeps a
        // malformed peer document from ever taking a process down.
        let doc = catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| HoldsDocError::Corrupt("decoder panicked".into()))?
            .map_err(|e| HoldsDocError::Corrupt(e.to_string()))?;
        let this = Self { doc };
        this.validate()?;
        Ok(this)
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Place a hold. Its id must be new and its scope name something.
    pub fn add(&mut self, hold: Hold) -> Result<(), HoldsDocError> {
        check_id(&hold.id)?;
        if hold.scope.is_empty() {
            return Err(HoldsDocError::EmptyScope);
        }
        let key = format!("{HOLD_PREFIX}{}", hold.id);
        if self.bytes_at(&key).is_some() {
            return Err(HoldsDocError::Exists(hold.id));
        }
        let mut placed = hold;
        let release = placed.released.take();
        let bytes =
            postcard::to_allocvec(&placed).map_err(|e| HoldsDocError::Edit(e.to_string()))?;
        self.doc
            .put(ROOT, key, ScalarValue::Bytes(bytes))
            .map_err(|e| HoldsDocError::Edit(e.to_string()))?;
        if let Some(release) = release {
            self.release(&placed.id, release)?;
        }
        Ok(())
    }

    /// Release the hold `id`, and only it.
    pub fn release(&mut self, id: &str, release: Release) -> Result<(), HoldsDocError> {
        if self.bytes_at(&format!("{HOLD_PREFIX}{id}")).is_none() {
            return Err(HoldsDocError::NoSuchHold(id.into()));
        }
        let key = format!("{RELEASE_PREFIX}{id}");
        if self.bytes_at(&key).is_some() {
            return Err(HoldsDocError::AlreadyReleased(id.into()));
        }
        let bytes =
            postcard::to_allocvec(&release).map_err(|e| HoldsDocError::Edit(e.to_string()))?;
        self.doc
            .put(ROOT, key, ScalarValue::Bytes(bytes))
            .map_err(|e| HoldsDocError::Edit(e.to_string()))
    }

    /// Take in every change `other` has that this one lacks. `other` is
    /// checked first, so a bad peer document changes nothing here.
    pub fn merge(&mut self, other: &mut HoldsDoc) -> Result<(), HoldsDocError> {
        // Both sides valid means the union is: each key's values come
        // from one side or the other, and a release always travels with
        // the history that placed its hold.
        other.validate()?;
        catch_unwind(AssertUnwindSafe(|| self.doc.merge(&mut other.doc)))
            .map_err(|_| HoldsDocError::Corrupt("merge panicked".into()))?
            .map_err(|e| HoldsDocError::Corrupt(e.to_string()))?;
        Ok(())
    }

    /// Merge a saved document (as sent by a peer). Returns whether anything
    /// new arrived.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<bool, HoldsDocError> {
        let mut other = Self::load(bytes)?;
        let before = self.doc.get_heads();
        self.merge(&mut other)?;
        Ok(self.doc.get_heads() != before)
    }

    /// Every hold, released or not, sorted by id.
    pub fn holds(&self) -> Vec<Hold> {
        let mut out: Vec<Hold> = self
            .doc
            .keys(ROOT)
            .filter_map(|k| {
                let id = k.strip_prefix(HOLD_PREFIX)?;
                self.hold(id).ok().flatten()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The holds not released, sorted by id.
    pub fn active(&self) -> Vec<Hold> {
        self.holds().into_iter().filter(Hold::active).collect()
    }

    /// One hold, with its release if any.
    pub fn get(&self, id: &str) -> Option<Hold> {
        self.hold(id).ok().flatten()
    }

    fn hold(&self, id: &str) -> Result<Option<Hold>, HoldsDocError> {
        Self::hold_in(&self.doc, id)
    }

    fn hold_in(doc: &AutoCommit, id: &str) -> Result<Option<Hold>, HoldsDocError> {
        let Some(bytes) = bytes_in(doc, &format!("{HOLD_PREFIX}{id}")) else {
            return Ok(None);
        };
        let mut hold: Hold =
            postcard::from_bytes(&bytes).map_err(|_| HoldsDocError::BadEntry(id.into()))?;
        if hold.id != id {
            return Err(HoldsDocError::BadEntry(id.into()));
        }
        if let Some(bytes) = bytes_in(doc, &format!("{RELEASE_PREFIX}{id}")) {
            hold.released =
                Some(postcard::from_bytes(&bytes).map_err(|_| HoldsDocError::BadEntry(id.into()))?);
        }
        Ok(Some(hold))
    }

    fn bytes_at(&self, key: &str) -> Option<Vec<u8>> {
        bytes_in(&self.doc, key)
    }

    fn validate(&self) -> Result<(), HoldsDocError> {
        Self::validate_doc(&self.doc)
    }

    fn validate_doc(doc: &AutoCommit) -> Result<(), HoldsDocError> {
        for key in doc.keys(ROOT) {
            let id = if let Some(id) = key.strip_prefix(HOLD_PREFIX) {
                id
            } else if let Some(id) = key.strip_prefix(RELEASE_PREFIX) {
                id
            } else {
                return Err(HoldsDocError::BadEntry(key));
            };
            // Every value (each side of a conflict too) must be bytes.
            let all = doc
                .get_all(ROOT, key.as_str())
                .map_err(|e| HoldsDocError::Corrupt(e.to_string()))?;
            if all
                .iter()
                .any(|(v, _)| !matches!(v, Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Bytes(_))))
            {
                return Err(HoldsDocError::BadEntry(id.into()));
            }
            if key.starts_with(HOLD_PREFIX) {
                Self::hold_in(doc, id)?;
            } else if bytes_in(doc, &format!("{HOLD_PREFIX}{id}")).is_none() {
                return Err(HoldsDocError::BadEntry(id.into()));
            }
        }
        Ok(())
    }
}

fn bytes_in(doc: &AutoCommit, key: &str) -> Option<Vec<u8>> {
    match doc.get(ROOT, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Bytes(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn check_id(id: &str) -> Result<(), HoldsDocError> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(HoldsDocError::BadId(id.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
