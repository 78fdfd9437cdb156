//! The edge's benchmarks: `alpr-bench edge recognize` (this recogniser
//! against the peer, [`recognise`]), `alpr-bench edge hotlist` (one edge
//! loading, matching and updating a bulk list, [`hotlist`]) and the
//! simulated edges `alpr-bench hub push` starts (`alpr-bench edge
//! push-edges`, [`push`]).

pub mod camera;
pub mod hotlist;
mod paired;
pub mod push;
pub mod recognise;

pub use hotlist::{hotlist, HotlistBenchArgs};
pub use push::{push_edges, PushEdgesArgs};
