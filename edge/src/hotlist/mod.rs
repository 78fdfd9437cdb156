//! Bulk lists on the edge.

pub mod generations;
