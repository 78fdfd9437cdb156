//! Shared core of the ALPR system: the types both edge and hub speak, the
//! node identity and signing keys, certificate rules of the deployment PKI,
//! and the signed per-device read log with its offline verifier.

pub mod cert;
pub mod crypto;
pub mod log;
pub mod pki;
pub mod types;
