//! The hub: ingests signed reads from edge nodes over QUIC, verifies and
//! keeps them in redb, signs receipts, and serves operators and auditors
//! (`hub nodes`, `hub audit verify`, `hub revoke`) over its admin API.

pub mod pki;
pub mod refusals;
pub mod search;
pub mod verify;

pub mod access;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod health;
pub mod ingest;
pub mod store;
pub mod sync;
