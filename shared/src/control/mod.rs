//! Control state the hub sends down to its nodes. Today: the signed,
//! versioned policy document ([`policy`]) — retention, the officers who may
//! log in on edges, the agencies that may receive exports, revoked nodes,
//! the purposes a search may name, and how long an edge may run on a policy
//! it could not refresh. One writer (the hub) signs each version; an edge
//! applies only a newer one.

pub mod holds;
pub mod holds_doc;
pub mod node_change;
pub mod officer;
pub mod policy;
pub mod replica;

pub use policy::{
    Agency, AgencyKind, EdgeOfficer, HotlistPolicy, Policy, PolicyError, Purpose, SignedPolicy,
    LEGAL_MIN_HUB_RETENTION_DAYS, MAX_POLICY_BYTES, POLICY_FORMAT,
};
