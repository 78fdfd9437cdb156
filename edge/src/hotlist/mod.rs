//! Hotlists on the node: the bulk lists the hub sends as signed
//! generations ([`generations`]), and the local entries officers add here
//! or the hub sends ([`local`]).

pub mod generations;
pub mod local;
