//! The hub: ingests signed reads from edge nodes over QUIC, keeps them in
//! redb, pushes control state, and serves operators and auditors.

pub mod pki;
pub mod refusals;
pub mod verify;

pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod store;
pub mod sync;
