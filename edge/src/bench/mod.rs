//! The edge's benchmarks: `edge bench hotlist` (one edge loading, matching
//! and updating a bulk list, [`hotlist`]).

pub mod hotlist;

pub use hotlist::{hotlist, HotlistBenchArgs};
