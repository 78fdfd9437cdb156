//! The edge's benchmarks: `alpr-bench edge recognize` (this recogniser
//! against the peer, [`recognise`]), `alpr-bench edge hotlist` (one edge
//! loading, matching and updating a bulk list, [`hotlist`]) and the
//! simulated edges `alpr-bench hub push` starts (`alpr-bench edge
//! push-edges`, [`push`]), and the state reader on labelled crops
//! (`alpr-bench edge state`, [`state`]).

pub mod camera;
pub mod hotlist;
mod paired;
pub mod push;
pub mod recognise;
pub mod state;

pub use hotlist::{hotlist, HotlistBenchArgs};
pub use push::{push_edges, PushEdgesArgs};
