//! The edge node: capture frames, recognise plates, seal each read into the
//! node's signed log, store it in redb, and sync it with the hub.
//!
//! Data flows `capture` → `recognise` → `store` (signed via
//! `alpr_shared::log::LogWriter`) → `sync` (upload to the hub).

pub mod alert;
pub mod capture;
pub mod cli;
pub mod config;
pub mod health;
pub mod holds;
pub mod hotlist;
pub mod local;
pub mod pipeline;
pub mod policy;
pub mod recognise;
pub mod replay;
pub mod retention;
pub mod run;
pub mod search;
pub mod store;
pub mod sync;
