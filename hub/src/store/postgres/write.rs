//! [`crate::store::HubStorage::commit`] on PostgreSQL: every op of a call
//! in one transaction.
