//! The account records the store keeps (`users-v1`, `user-keys-v1`,
//! `sessions-v1`, postcard): plain data. What they mean — which role may
//! do what, when a user may act — is [`crate::users`]'s.

use alpr_shared::control::officer::OfficerKey;
use alpr_shared::types::UnixMillis;
use serde::{Deserialize, Serialize};

/// What a person does, on a need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Officer,
    Operator,
    Supervisor,
    Administrator,
    Auditor,
}

/// A user account as the hub keeps it (`users-v1`, postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    /// The agency's ORI.
    pub agency: String,
    pub title: String,
    pub role: Role,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub training_completed: UnixMillis,
    pub training_expires: UnixMillis,
    pub disabled: bool,
    pub created: UnixMillis,
    pub updated: UnixMillis,
}

/// A signing key a user has had, and since when it is theirs
/// (`user-keys-v1`, postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKey {
    pub key: OfficerKey,
    pub since: UnixMillis,
}

/// A session as the hub keeps it (`sessions-v1`, by the token's SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub username: String,
    pub created: UnixMillis,
    /// The absolute end.
    pub expires: UnixMillis,
    pub source: String,
}
