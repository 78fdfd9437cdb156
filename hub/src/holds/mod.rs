//! Legal holds at the hub (policy 426.4): the replicated
//! [`HoldsDoc`] that people edit through the API, that edges edit while
//! offline, and that merges both ways on each node's control lane.
//!
//! The document is kept through [`HubStorage`] (table `holds-v1`) by
//! [`crate::replicated::Kept`]: every change is durable before it is
//! published on [`HoldsService::watch`] (the sync side pushes each
//! published version to connected nodes), and the hub compacts it
//! ([`HoldsService::compact`]) so it stays far under what a node accepts.
//! Retention asks [`HoldsService::active`] which holds are in force; an
//! evidence export asks [`HoldsService::for_case`].

use std::sync::Arc;

use alpr_shared::control::holds::{Hold, HoldScope, Release};
use alpr_shared::control::holds_doc::{HoldsDoc, HoldsDocError};
use alpr_shared::control::node_change::{NodeChange, Verdict};
use alpr_shared::types::UnixMillis;
use tokio::sync::watch;

use crate::replicated::{Kept, KeptError, Stored};
use crate::store::{HubStorage, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HoldsError {
    #[error(transparent)]
    Doc(#[from] HoldsDocError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the holds commit did not finish: {0}")]
    Join(String),
}

/// What a person asks to place (the rest is filled in by the service).
#[derive(Debug, Clone)]
pub struct NewHold {
    pub case: String,
    pub reason: String,
    pub placed_by: String,
    pub agency: String,
    pub scope: HoldScope,
}

/// The hub's legal holds. Cheap to clone.
#[derive(Clone)]
pub struct HoldsService {
    kept: Arc<Kept<HoldsDoc, Vec<Hold>>>,
}

impl std::fmt::Debug for HoldsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HoldsService({} holds)", self.holds().len())
    }
}

impl From<KeptError<HoldsDocError>> for HoldsError {
    fn from(e: KeptError<HoldsDocError>) -> Self {
        match e {
            KeptError::Doc(e) => HoldsError::Doc(e),
            KeptError::Store(e) => HoldsError::Store(e),
            KeptError::Join(e) => HoldsError::Join(e),
        }
    }
}

impl HoldsService {
    /// Load the stored document, or start an empty one. Blocking (reads
    /// the store).
    pub fn open(storage: Arc<dyn HubStorage>) -> Result<Self, HoldsError> {
        let kept = Kept::open(storage, Stored::Holds, HoldsDoc::new, HoldsDoc::holds)?;
        Ok(HoldsService {
            kept: Arc::new(kept),
        })
    }

    /// Every hold the document holds whole (released ones until
    /// compaction drops them), sorted by id.
    pub fn holds(&self) -> Vec<Hold> {
        self.kept.view().as_ref().clone()
    }

    /// The holds in force (not released), sorted by id: what retention
    /// must respect (`alpr_shared::control::holds::held`).
    pub fn active(&self) -> Vec<Hold> {
        self.kept
            .view()
            .iter()
            .filter(|h| h.active())
            .cloned()
            .collect()
    }

    /// One hold by id.
    pub fn get(&self, id: &str) -> Option<Hold> {
        self.kept.view().iter().find(|h| h.id == id).cloned()
    }

    /// The holds (released or not) placed for `case`.
    pub fn for_case(&self, case: &str) -> Vec<Hold> {
        self.kept
            .view()
            .iter()
            .filter(|h| h.case == case)
            .cloned()
            .collect()
    }

    /// The saved document after each durable change (the current one
    /// first): what the hub pushes to its nodes.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<u8>>> {
        self.kept.watch()
    }

    /// The current saved document.
    pub fn saved(&self) -> Arc<Vec<u8>> {
        self.kept.saved()
    }

    /// Place a hold; returns it once durable.
    pub async fn add(&self, new: NewHold) -> Result<Hold, HoldsError> {
        let hold = Hold {
            id: new_id(),
            case: new.case,
            reason: new.reason,
            placed_by: new.placed_by,
            agency: new.agency,
            placed_at: UnixMillis::now(),
            placed_on: "hub".into(),
            scope: new.scope,
            released: None,
        };
        let id = hold.id.clone();
        self.kept
            .edit(move |doc| doc.add(hold).map(|()| true))
            .await?;
        match self.get(&id) {
            Some(h) => Ok(h),
            None => Err(HoldsError::Doc(HoldsDocError::NoSuchHold(id))),
        }
    }

    /// Release hold `id` (only it); returns it once durable.
    pub async fn release(&self, id: &str, by: &str, reason: &str) -> Result<Hold, HoldsError> {
        let release = Release {
            by: by.into(),
            at: UnixMillis::now(),
            reason: reason.into(),
        };
        let key = id.to_string();
        self.kept
            .edit(move |doc| doc.release(&key, release).map(|()| true))
            .await?;
        self.get(id)
            .ok_or_else(|| HoldsError::Doc(HoldsDocError::NoSuchHold(id.into())))
    }

    /// Take in the changes a node's copy `theirs` has that ours lacks,
    /// each as `judge` decides ([`alpr_shared::control::node_change`]):
    /// the accepted ones are written as this hub's own (durable and
    /// published together), the others change nothing. The node's
    /// document is never merged wholesale. Returns every change with its
    /// verdict (an accepted change that could not be written is refused).
    pub async fn take_from_node(
        &self,
        theirs: HoldsDoc,
        judge: impl Fn(&NodeChange) -> Verdict,
    ) -> Result<Vec<(NodeChange, Verdict)>, HoldsError> {
        Ok(self.kept.take_from_node(theirs, judge).await?)
    }

    /// Merge what another hub process on the same database stored.
    /// Returns whether anything new came; then it is published, and the
    /// sync side pushes it to this hub's nodes.
    pub async fn reload(&self) -> Result<bool, HoldsError> {
        Ok(self.kept.reload(UnixMillis::now()).await?)
    }

    /// Start a new epoch without the holds released longer than the grace
    /// period, when it is time (`HoldsDoc::needs_compaction`). Returns
    /// whether it did.
    pub async fn compact(&self, now: UnixMillis) -> Result<bool, HoldsError> {
        Ok(self.kept.compact(now).await?)
    }
}

/// A fresh random hold id (16 hex characters).
fn new_id() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
