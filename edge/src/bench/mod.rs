//! The edge's benchmarks: `edge bench hotlist` (one edge loading, matching
//! and updating a bulk list, [`hotlist`]) and the simulated edges `hub
//! bench push` starts (`edge bench push-edges`, [`push`]).

pub mod hotlist;
pub mod push;

pub use hotlist::{hotlist, HotlistBenchArgs};
pub use push::{push_edges, PushEdgesArgs};
