//! A replicated document the hub keeps ([`ReplicatedDoc`]: the legal
//! holds, the local hotlist entries), and the rules of keeping one:
//!
//! - every change is made on a copy, stored durably through
//!   [`HubStorage`], then made current and published on
//!   [`Kept::watch`] (the sync side pushes each published version to the
//!   connected nodes) together with a view the readers use
//!   ([`Kept::view`]);
//! - the copies are written under one automerge actor per process, so a
//!   change adds no actor to the document; after a commit that failed
//!   (stored or not, nobody knows) the next change takes a fresh one;
//! - no document over what a peer accepts is ever stored: one that would
//!   be is compacted first, and refused if still too large;
//! - [`Kept::compact`] starts a new epoch when the document says it is
//!   time ([`ReplicatedDoc::needs_compaction`]);
//! - [`Kept::reload`] merges what another hub process stored.

use std::sync::Arc;

use alpr_shared::control::node_change::{NodeChange, Verdict};
use alpr_shared::control::replica::ReplicatedDoc;
use alpr_shared::types::UnixMillis;
use tokio::sync::{watch, Mutex};

use crate::store::{HubStorage, StoreError, WriteOp};

/// Why a change of a kept document did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KeptError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Doc(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the commit did not finish: {0}")]
    Join(String),
}

/// Which of the store's documents.
#[derive(Debug, Clone, Copy)]
pub enum Stored {
    Holds,
    LocalEntries,
}

impl Stored {
    fn read(self, storage: &dyn HubStorage) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Stored::Holds => storage.holds_doc(),
            Stored::LocalEntries => storage.local_entries_doc(),
        }
    }

    fn write(self, bytes: Vec<u8>) -> WriteOp {
        match self {
            Stored::Holds => WriteOp::Holds(bytes),
            Stored::LocalEntries => WriteOp::LocalEntries(bytes),
        }
    }
}

/// One kept document and the view of it readers use (`V`: the holds, the
/// entries). Shared by the clones of its service.
pub struct Kept<D: ReplicatedDoc, V> {
    storage: Arc<dyn HubStorage>,
    stored: Stored,
    view_of: fn(&D) -> V,
    /// The document; changes hold this lock across their commit, so the
    /// stored document and the published one never fall behind a change.
    doc: Mutex<D>,
    /// The saved document after each durable change.
    saved: watch::Sender<Arc<Vec<u8>>>,
    /// The view after each durable change, for readers that must not wait.
    view: watch::Sender<Arc<V>>,
}

impl<D: ReplicatedDoc, V> Kept<D, V> {
    /// Load the stored document, or start an empty one. Blocking (reads
    /// the store).
    pub fn open(
        storage: Arc<dyn HubStorage>,
        stored: Stored,
        empty: fn() -> D,
        view_of: fn(&D) -> V,
    ) -> Result<Self, KeptError<D::Error>> {
        let mut doc = match stored.read(storage.as_ref())? {
            Some(bytes) => D::load(&bytes).map_err(KeptError::Doc)?,
            None => empty(),
        };
        let (saved, _) = watch::channel(Arc::new(doc.save()));
        let (view, _) = watch::channel(Arc::new(view_of(&doc)));
        Ok(Kept {
            storage,
            stored,
            view_of,
            doc: Mutex::new(doc),
            saved,
            view,
        })
    }

    /// The view as of the last durable change.
    pub fn view(&self) -> Arc<V> {
        self.view.borrow().clone()
    }

    /// The view after each durable change (the current one first).
    pub fn watch_view(&self) -> watch::Receiver<Arc<V>> {
        self.view.subscribe()
    }

    /// The saved document after each durable change (the current one
    /// first): what the hub pushes to its nodes.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<u8>>> {
        self.saved.subscribe()
    }

    /// The current saved document.
    pub fn saved(&self) -> Arc<Vec<u8>> {
        self.saved.borrow().clone()
    }

    /// Apply `change` to a copy; if it changed anything (`Ok(true)`),
    /// store the copy, then make it current and publish it.
    pub async fn edit(
        &self,
        change: impl FnOnce(&mut D) -> Result<bool, D::Error>,
    ) -> Result<bool, KeptError<D::Error>> {
        let mut doc = self.doc.lock().await;
        let mut next = self.copy(&mut doc)?;
        if !change(&mut next).map_err(KeptError::Doc)? {
            return Ok(false);
        }
        self.commit(&mut doc, next).await?;
        Ok(true)
    }

    /// Take a node's copy change by change, each as `judge` decides
    /// ([`alpr_shared::control::node_change`]): the accepted ones are
    /// written as this hub's own (durable and published together), the
    /// others change nothing. The node's document is never merged
    /// wholesale. Returns every change with its verdict (an accepted
    /// change that could not be written is refused).
    pub async fn take_from_node(
        &self,
        theirs: D,
        judge: impl Fn(&NodeChange) -> Verdict,
    ) -> Result<Vec<(NodeChange, Verdict)>, KeptError<D::Error>> {
        let mut out = Vec::new();
        self.edit(|doc| {
            let mut changed = false;
            for change in doc.node_changes(&theirs, UnixMillis::now()) {
                let mut verdict = judge(&change);
                if let Ok(signature) = &verdict.outcome {
                    match doc.take_change(&change, signature) {
                        Ok(()) => changed = true,
                        Err(e) => verdict.outcome = Err(format!("not applied: {e}")),
                    }
                }
                out.push((change, verdict));
            }
            Ok(changed)
        })
        .await?;
        Ok(out)
    }

    /// Merge the stored document into this one: another hub process on
    /// the same database may have changed it (the store merges every
    /// write into what it holds, so it holds this process's changes too).
    /// Returns whether anything new came; then it is published, and the
    /// sync side pushes it to this hub's nodes.
    pub async fn reload(&self, now: UnixMillis) -> Result<bool, KeptError<D::Error>> {
        let storage = self.storage.clone();
        let stored = self.stored;
        let bytes = tokio::task::spawn_blocking(move || stored.read(storage.as_ref()))
            .await
            .map_err(|e| KeptError::Join(e.to_string()))??;
        let Some(bytes) = bytes else {
            return Ok(false);
        };
        let mut doc = self.doc.lock().await;
        let mut next = self.copy(&mut doc)?;
        if !next.merge_bytes(&bytes, now).map_err(KeptError::Doc)? {
            return Ok(false);
        }
        let saved = next.save();
        self.publish(&mut doc, next, saved);
        Ok(true)
    }

    /// Start a new epoch without what compaction drops, if it is time.
    /// Returns whether it did.
    pub async fn compact(&self, now: UnixMillis) -> Result<bool, KeptError<D::Error>> {
        let mut doc = self.doc.lock().await;
        if !doc.needs_compaction(now) {
            return Ok(false);
        }
        let mut next = doc.compact(now).map_err(KeptError::Doc)?;
        next.write_as(&doc);
        self.commit(&mut doc, next).await?;
        Ok(true)
    }

    /// A copy of `doc` that writes under its actor.
    fn copy(&self, doc: &mut D) -> Result<D, KeptError<D::Error>> {
        let mut next = D::load(&doc.save()).map_err(KeptError::Doc)?;
        next.write_as(doc);
        Ok(next)
    }

    /// Store `next` (compacted first if it would be too large for a
    /// peer), then make it current and publish it.
    async fn commit(&self, doc: &mut D, mut next: D) -> Result<(), KeptError<D::Error>> {
        let mut saved = next.save();
        if saved.len() > D::MAX_BYTES {
            let mut compacted = next.compact(UnixMillis::now()).map_err(KeptError::Doc)?;
            compacted.write_as(&next);
            next = compacted;
            saved = next.save();
            if saved.len() > D::MAX_BYTES {
                return Err(KeptError::Doc(D::too_large(saved.len())));
            }
        }
        let storage = self.storage.clone();
        let op = self.stored.write(saved.clone());
        let stored = tokio::task::spawn_blocking(move || storage.commit(vec![op]))
            .await
            .map_err(|e| KeptError::Join(e.to_string()));
        match stored {
            Ok(Ok(_)) => {
                self.publish(doc, next, saved);
                Ok(())
            }
            Ok(Err(e)) => {
                doc.new_actor();
                Err(e.into())
            }
            Err(e) => {
                doc.new_actor();
                Err(e)
            }
        }
    }

    /// Make `next` (durable; `saved` is its saved form) the current
    /// document and publish it.
    fn publish(&self, doc: &mut D, next: D, saved: Vec<u8>) {
        let view = (self.view_of)(&next);
        *doc = next;
        self.view.send_replace(Arc::new(view));
        self.saved.send_replace(Arc::new(saved));
    }
}
