//! The hub: ingests signed reads from edge nodes over QUIC, verifies and
//! keeps them in redb, signs receipts, and serves operators and auditors
//! (`hub login`, `hub user`, `hub nodes`, `hub audit`, `hub revoke`) over
//! its HTTPS API for people ([`api`]).

pub mod pki;
pub mod refusals;
pub mod retention;
pub mod search;
pub mod serve;
pub mod verify;

pub mod access;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod export;
pub mod health;
pub mod holds;
pub mod hotlist;
pub mod hub;
pub mod ingest;
pub mod keys;
pub mod node_writes;
pub mod policy;
pub mod replicated;
#[doc(hidden)]
pub mod sample;
pub mod store;
pub mod sync;
pub mod users;
