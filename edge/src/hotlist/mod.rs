//! Hotlists on the node: the local entries officers add here or the hub
//! sends ([`local`]).

pub mod local;
pub mod local_cli;
