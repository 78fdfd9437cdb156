//! Matching a read (with its alternatives) against every active list.
//! (Skeleton: the index helper replaces this file.)

use std::sync::Arc;

use crate::types::UnixMillis;

use super::generation::Generation;
use super::{Category, Hit, LocalEntry};

/// Every list an edge matches against, built once per change and shared.
#[derive(Debug, Default)]
pub struct Matcher {
    _private: (),
}

impl Matcher {
    /// Bulk generations (one per source), the local entries, and the
    /// categories policy excludes.
    pub fn new(
        _bulk: Vec<Arc<Generation>>,
        _local: Vec<LocalEntry>,
        _excluded: &[Category],
    ) -> Matcher {
        todo!("index helper")
    }

    /// Hits of a read whose best text and alternatives are `texts` (best
    /// first) and whose state is `read_state` if the recogniser read one;
    /// local entries expired at `now` do not match. Appends to `out`.
    pub fn match_read(
        &self,
        _texts: &[&str],
        _read_state: Option<&str>,
        _now: UnixMillis,
        _out: &mut Vec<Hit>,
    ) {
        todo!("index helper")
    }
}
