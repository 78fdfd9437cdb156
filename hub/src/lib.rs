//! The hub: ingests signed reads from edge nodes over QUIC, keeps them in
//! redb, pushes control state, and serves operators and auditors.

pub mod pki;
pub mod verify;
