//! Shared core of the ALPR system: the types both edge and hub speak, the
//! node identity and signing keys, certificate rules of the deployment PKI,
//! and the signed per-device read log with its offline verifier.
//!
//! Data flows one way through this crate: an edge turns a recognised plate
//! into [`types::ReadContent`], [`log::LogWriter`] seals it into a signed
//! [`log::SignedEntry`] chained to the previous one, the entry travels to the
//! hub in its canonical bytes ([`log::SignedEntry::encode`]), and anyone with
//! the CA certificate checks it with [`log::verify`].

pub mod cert;
pub mod cli;
pub mod control;
pub mod crypto;
pub mod evidence;
pub mod health;
pub mod hotlist;
pub mod log;
pub mod metrics;
pub mod pki;
pub mod private;
pub mod search;
pub mod settings;
pub mod signer;
pub mod sync;
pub mod types;
pub mod wire;
