//! Legal holds at the hub (policy 426.4): the replicated
//! [`HoldsDoc`] that people edit through the API, that edges edit while
//! offline, and that merges both ways on each node's control lane.
//!
//! The document is kept through [`HubStorage`] (table `holds-v1`) and
//! every change is durable before it is published on [`HoldsService::watch`]
//! (the sync side pushes each published version to connected nodes).
//! Retention asks [`HoldsService::active`] which holds are in force; an
//! evidence export asks [`HoldsService::for_case`].

pub mod cli;

use std::sync::Arc;

use alpr_shared::control::holds::{Hold, HoldScope, Release};
use alpr_shared::control::holds_doc::{HoldsDoc, HoldsDocError};
use alpr_shared::types::UnixMillis;
use tokio::sync::{watch, Mutex};

use crate::store::{HubStorage, StoreError, WriteOp};

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

struct Inner {
    storage: Arc<dyn HubStorage>,
    /// The document; edits hold this lock across their commit, so the
    /// stored document and the published one never fall behind an edit.
    doc: Mutex<HoldsDoc>,
    /// The saved document after each durable change.
    tx: watch::Sender<Arc<Vec<u8>>>,
    /// Copy of the holds as of the last change, for readers that must not
    /// wait on an edit.
    holds: std::sync::RwLock<Arc<Vec<Hold>>>,
}

/// The hub's legal holds. Cheap to clone.
#[derive(Clone)]
pub struct HoldsService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HoldsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HoldsService({} holds)", self.holds().len())
    }
}

impl HoldsService {
    /// Load the stored document, or start an empty one. Blocking (reads
    /// the store).
    pub fn open(storage: Arc<dyn HubStorage>) -> Result<Self, HoldsError> {
        let mut doc = match storage.holds_doc()? {
            Some(bytes) => HoldsDoc::load(&bytes)?,
            None => HoldsDoc::new(),
        };
        let saved = doc.save();
        let holds = doc.holds();
        let (tx, _) = watch::channel(Arc::new(saved));
        Ok(HoldsService {
            inner: Arc::new(Inner {
                storage,
                doc: Mutex::new(doc),
                tx,
                holds: std::sync::RwLock::new(Arc::new(holds)),
            }),
        })
    }

    /// Every hold, released or not, sorted by id.
    pub fn holds(&self) -> Vec<Hold> {
        self.snapshot().as_ref().clone()
    }

    /// The holds in force (not released), sorted by id: what retention
    /// must respect (`alpr_shared::control::holds::held`).
    pub fn active(&self) -> Vec<Hold> {
        self.snapshot()
            .iter()
            .filter(|h| h.active())
            .cloned()
            .collect()
    }

    /// One hold by id.
    pub fn get(&self, id: &str) -> Option<Hold> {
        self.snapshot().iter().find(|h| h.id == id).cloned()
    }

    /// The holds (released or not) placed for `case`.
    pub fn for_case(&self, case: &str) -> Vec<Hold> {
        self.snapshot()
            .iter()
            .filter(|h| h.case == case)
            .cloned()
            .collect()
    }

    /// The saved document after each durable change (the current one
    /// first): what the hub pushes to its nodes.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<u8>>> {
        self.inner.tx.subscribe()
    }

    /// The current saved document.
    pub fn saved(&self) -> Arc<Vec<u8>> {
        self.inner.tx.borrow().clone()
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
        self.edit(move |doc| doc.add(hold).map(|()| true)).await?;
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
        self.edit(move |doc| doc.release(&key, release).map(|()| true))
            .await?;
        self.get(id)
            .ok_or_else(|| HoldsError::Doc(HoldsDocError::NoSuchHold(id.into())))
    }

    /// Merge a node's saved document. Returns whether anything new came
    /// (then it is durable and published). A bad document changes nothing.
    pub async fn merge_from_node(&self, bytes: Vec<u8>) -> Result<bool, HoldsError> {
        self.edit(move |doc| doc.merge_bytes(&bytes)).await
    }

    /// Merge the stored document into this one: another hub process on
    /// the same database may have changed it (the store merges every
    /// write into what it holds, so it holds this process's edits too).
    /// Returns whether anything new came; then it is published, and the
    /// sync side pushes it to this hub's nodes.
    pub async fn reload(&self) -> Result<bool, HoldsError> {
        let storage = self.inner.storage.clone();
        let stored = tokio::task::spawn_blocking(move || storage.holds_doc())
            .await
            .map_err(|e| HoldsError::Join(e.to_string()))??;
        let Some(bytes) = stored else {
            return Ok(false);
        };
        let mut doc = self.inner.doc.lock().await;
        let mut next = HoldsDoc::load(&doc.save())?;
        if !next.merge_bytes(&bytes)? {
            return Ok(false);
        }
        let saved = next.save();
        self.publish(&mut doc, next, saved);
        Ok(true)
    }

    fn snapshot(&self) -> Arc<Vec<Hold>> {
        match self.inner.holds.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Apply `change` to a copy; if it changed anything, store the copy,
    /// then make it current and publish it.
    async fn edit(
        &self,
        change: impl FnOnce(&mut HoldsDoc) -> Result<bool, HoldsDocError>,
    ) -> Result<bool, HoldsError> {
        let mut doc = self.inner.doc.lock().await;
        let mut next = HoldsDoc::load(&doc.save())?;
        if !change(&mut next)? {
            return Ok(false);
        }
        let saved = next.save();
        let storage = self.inner.storage.clone();
        let bytes = saved.clone();
        tokio::task::spawn_blocking(move || storage.commit(vec![WriteOp::Holds(bytes)]))
            .await
            .map_err(|e| HoldsError::Join(e.to_string()))??;
        self.publish(&mut doc, next, saved);
        Ok(true)
    }

    /// Make `next` (durable; `saved` is its saved form) the current
    /// document and publish it.
    fn publish(&self, doc: &mut HoldsDoc, next: HoldsDoc, saved: Vec<u8>) {
        let holds = next.holds();
        *doc = next;
        match self.inner.holds.write() {
            Ok(mut g) => *g = Arc::new(holds),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(holds),
        }
        self.inner.tx.send_replace(Arc::new(saved));
    }
}

/// A fresh random hold id (16 hex characters).
fn new_id() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
