//! Audits (policy 426.5(c), §1798.90.52): the `hub audit …` commands and
//! the log bundle the hub builds for them.
//!
//! - `hub audit verify` ([`verify_cli`]) gets every node log the running hub
//!   holds and its own log as one bundle the hub built from its store and
//!   signed ([`bundle`]), and verifies it as it arrives with the offline
//!   verifier of `hub verify`, from the CA certificate alone;
//! - `hub audit access` and `hub audit training` ask the hub for who
//!   accessed what, when and why (the API's audit reports);
//! - `hub audit exports`, `retention` and `holds` are the exports, purges
//!   and legal holds as the access log and the store record them.

pub mod bundle;
