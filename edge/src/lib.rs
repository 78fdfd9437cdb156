//! The edge node: capture frames, recognise plates, seal each read into the
//! node's signed log, store it in redb, and sync with the hub.

pub mod recognise;
