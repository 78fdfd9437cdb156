//! A signed, immutable generation of a bulk list. (Skeleton: the index
//! helper replaces this file.)

use crate::crypto::{PublicKey, SecretKey};
use crate::types::{Hash32, UnixMillis};

use super::{Category, HotEntry, ListSettings};

/// What the hub says about a generation (signed with it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerationInfo {
    /// The list's name (`ncic`, `ca-svs`, …).
    pub source: String,
    /// 1, 2, 3, … per source.
    pub number: u64,
    pub issued_at: UnixMillis,
    /// SHA-256 of the file it was imported from.
    pub source_sha256: Hash32,
    /// Rows the file held and rows in the generation.
    pub source_rows: u64,
    pub rows: u64,
    /// Rows per category.
    pub categories: Vec<(Category, u64)>,
    pub settings: ListSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("generation: {0}")]
    Invalid(String),
    #[error("the generation's signature is not the hub's")]
    BadSignature,
}

/// A generation held in memory, ready to match.
#[derive(Debug)]
pub struct Generation {
    _private: (),
}

impl Generation {
    /// Sort, check and sign `entries` as generation `info` (its `rows` and
    /// `categories` are filled in here).
    pub fn build(
        _info: GenerationInfo,
        _entries: Vec<HotEntry>,
        _key: &SecretKey,
    ) -> Result<Generation, GenerationError> {
        todo!("index helper")
    }

    /// Load stored or received bytes, checking the hub's signature.
    pub fn open(_bytes: Vec<u8>, _hub: &PublicKey) -> Result<Generation, GenerationError> {
        todo!("index helper")
    }

    pub fn info(&self) -> &GenerationInfo {
        todo!("index helper")
    }

    /// The bytes to store or send.
    pub fn bytes(&self) -> &[u8] {
        todo!("index helper")
    }

    pub fn len(&self) -> usize {
        todo!("index helper")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry at `i` in index order.
    pub fn entry(&self, _i: usize) -> HotEntry {
        todo!("index helper")
    }

    /// Entries listed for exactly this plate (any state).
    pub fn lookup(&self, _plate: &str) -> Vec<HotEntry> {
        todo!("index helper")
    }
}
