//! The hub's storage seam. Everything the hub keeps goes through
//! [`HubStorage`], split by concern as TiKV's `engine_traits` splits its
//! engine: [`ChainStore`] (nodes, entries, checkpoints, certificates,
//! revocations, refusals), [`AccessLogStore`], [`AccountStore`] (users,
//! sessions, the login throttle), [`ControlStore`] (policy, holds, local
//! entries), [`HotlistStore`] (generations and floors), [`AlertStore`],
//! [`SearchStore`] and [`ImageStore`]; `HubStorage` is all of them plus
//! the batched write. [`redb::RedbStore`] is the embedded implementation,
//! [`postgres::PgStore`] the shared one; each implements each concern in
//! a file of its own (`redb/chains.rs`, `postgres/chains.rs`, ...), and
//! neither imports the other: what both need of a row's shape is in
//! `rows`, the protocol's rules they apply (where entries go, when a
//! renewed certificate takes effect, which images a purge frees, how a
//! signed loss moves a chain) in `alpr_shared` and on [`NodeRecord`].
//!
//! Writes arrive in batches from the single writer ([`crate::ingest`]): one
//! call to [`HubStorage::commit`] is one durable transaction, each
//! [`WriteOp`] applied by its concern's write function.
//!
//! With PostgreSQL several hub processes share one database: a node's
//! chain has one writer at a time ([`HubStorage::lease_node`]), and
//! changes one process makes to the shared documents reach the others
//! ([`HubStorage::watch_changes`]). The contract tests (`contract/`, one
//! module per concern) run on both backends.

mod accounts;
pub mod check;
#[cfg(test)]
mod contract;
pub mod postgres;
mod records;
pub mod recovering;
pub mod redb;
pub(crate) mod rows;
mod seam;

pub use seam::{
    AccessLogStore, AccountStore, AlertStore, ChainStore, ControlStore, HotlistStore, ImageStore,
    SearchStore,
};

pub use accounts::{Role, SessionRecord, UserKey, UserRecord};
pub(crate) use records::{check_purge_record, in_effect_order, new_key_effect};
pub use records::{
    AlertIndexRow, Backend, DbKind, GeoBox, HubAlert, HubDisposition, IndexedRead, Ingested,
    MissingImages, NodeCert, NodeLease, NodeLists, NodeRecord, PlacedRead, PlacedReads, Purged,
    RefusalRecord, SourceRefusalRecord, StoreError, WriteOp, WriteResult,
};

use alpr_shared::types::DeviceId;

/// The hub's storage: every concern, and the write that changes them.
pub trait HubStorage:
    ChainStore
    + AccessLogStore
    + AccountStore
    + ControlStore
    + HotlistStore
    + AlertStore
    + SearchStore
    + ImageStore
    + Send
    + Sync
    + 'static
{
    /// Apply all ops in one durable transaction; results in order.
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError>;
    /// Take the right to place `device`'s entries, for as long as the
    /// lease is held; `None` while another hub process holds it.
    fn lease_node(&self, device: &DeviceId) -> Result<Option<NodeLease>, StoreError> {
        let _ = device;
        Ok(Some(NodeLease::local()))
    }
    /// A counter that moves whenever another process may have changed the
    /// shared documents (policy, holds, local entries, hotlist
    /// generations, users); `None` where no other process writes (redb).
    fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
