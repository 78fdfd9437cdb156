//! Hotlists at the hub: bulk lists imported as signed generations, and
//! the local entries people add ([`local`]).

pub mod local;
pub mod local_cli;
