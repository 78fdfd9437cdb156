//! The edge's commands for people, on top of the house: `edge recognize`
//! runs the recogniser on files; the officer's commands (`edge login`,
//! `edge search`'s session, `edge hold`, `edge alerts`, `edge alert`,
//! `edge hotlist`) talk to the running node through its local socket
//! ([`crate::local`]), never to its store.

pub mod alerts;
pub mod holds;
pub mod hotlist;
pub mod officer;
pub mod recognize;
