//! Local hotlist entries at the hub: the replicated
//! [`LocalEntriesDoc`] that operators and officers edit through the API,
//! that edges edit while offline, and that merges both ways on each
//! node's control lane (`Frame::LocalEntries`).
//!
//! The document is kept through [`HubStorage`] (table `hotlist-local-v1`)
//! and every change is durable before it is published on
//! [`LocalEntriesService::watch`] (the sync side pushes each published
//! version to connected nodes; the matcher reads [`LocalEntriesService::entries`]).
//! The hub is the one replica that compacts the document
//! ([`LocalEntriesService::compact`]): removed and expired entries leave it
//! after a grace period so it stays small.

use std::sync::Arc;

use alpr_shared::control::policy::HotlistPolicy;
use alpr_shared::hotlist::local::{new_id, EntryFields, LocalDocError, LocalEntriesDoc};
use alpr_shared::hotlist::{LocalEntry, Removal};
use alpr_shared::types::UnixMillis;
use tokio::sync::{watch, Mutex};

use crate::store::{HubStorage, StoreError, WriteOp};

#[derive(Debug, thiserror::Error)]
pub enum LocalEntriesError {
    #[error(transparent)]
    Doc(#[from] LocalDocError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the local entries commit did not finish: {0}")]
    Join(String),
}

struct Inner {
    storage: Arc<dyn HubStorage>,
    /// The document; edits hold this lock across their commit, so the
    /// stored document and the published one never fall behind an edit.
    doc: Mutex<LocalEntriesDoc>,
    /// The saved document after each durable change.
    tx: watch::Sender<Arc<Vec<u8>>>,
    /// The entries as of the last change, for readers that must not wait.
    entries: watch::Sender<Arc<Vec<LocalEntry>>>,
}

/// The hub's local hotlist entries. Cheap to clone.
#[derive(Clone)]
pub struct LocalEntriesService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalEntriesService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalEntriesService({} entries)", self.entries().len())
    }
}

impl LocalEntriesService {
    /// Load the stored document, or start an empty one. Blocking (reads
    /// the store).
    pub fn open(storage: Arc<dyn HubStorage>) -> Result<Self, LocalEntriesError> {
        let mut doc = match storage.local_entries_doc()? {
            Some(bytes) => LocalEntriesDoc::load(&bytes)?,
            None => LocalEntriesDoc::new(),
        };
        let saved = doc.save();
        let entries = doc.entries();
        let (tx, _) = watch::channel(Arc::new(saved));
        let (entries, _) = watch::channel(Arc::new(entries));
        Ok(LocalEntriesService {
            inner: Arc::new(Inner {
                storage,
                doc: Mutex::new(doc),
                tx,
                entries,
            }),
        })
    }

    /// Every entry the document holds (removed and expired ones until
    /// compaction drops them), sorted by id.
    pub fn entries(&self) -> Arc<Vec<LocalEntry>> {
        self.inner.entries.borrow().clone()
    }

    /// The entries after each durable change (the current ones first).
    pub fn watch_entries(&self) -> watch::Receiver<Arc<Vec<LocalEntry>>> {
        self.inner.entries.subscribe()
    }

    /// One entry by id.
    pub fn get(&self, id: &str) -> Option<LocalEntry> {
        self.entries().iter().find(|e| e.id == id).cloned()
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

    /// Add an entry; returns it once durable.
    pub async fn add(
        &self,
        fields: EntryFields,
        author: &str,
        agency: &str,
        rules: &HotlistPolicy,
    ) -> Result<LocalEntry, LocalEntriesError> {
        let id = new_id("hub");
        let (author, agency, rules) = (author.to_string(), agency.to_string(), rules.clone());
        let key = id.clone();
        self.edit(move |doc| {
            doc.add(&key, fields, &author, &agency, &rules, UnixMillis::now())
                .map(|_| true)
        })
        .await?;
        match self.get(&id) {
            Some(e) => Ok(e),
            None => Err(LocalEntriesError::Doc(LocalDocError::NoSuchEntry(id))),
        }
    }

    /// Change the given fields of entry `id`; returns it once durable.
    pub async fn edit_entry(
        &self,
        id: &str,
        fields: EntryFields,
        by: &str,
        rules: &HotlistPolicy,
    ) -> Result<LocalEntry, LocalEntriesError> {
        let (key, by, rules) = (id.to_string(), by.to_string(), rules.clone());
        self.edit(move |doc| {
            doc.edit(&key, fields, &by, &rules, UnixMillis::now())
                .map(|_| true)
        })
        .await?;
        self.get(id)
            .ok_or_else(|| LocalEntriesError::Doc(LocalDocError::NoSuchEntry(id.into())))
    }

    /// Remove entry `id` for good; returns it once durable.
    pub async fn remove(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<LocalEntry, LocalEntriesError> {
        let removal = Removal {
            by: by.into(),
            at: UnixMillis::now(),
            reason: reason.into(),
        };
        let key = id.to_string();
        self.edit(move |doc| doc.remove(&key, removal).map(|()| true))
            .await?;
        self.get(id)
            .ok_or_else(|| LocalEntriesError::Doc(LocalDocError::NoSuchEntry(id.into())))
    }

    /// Merge a node's saved document. Returns whether anything new came
    /// (then it is durable and published). A bad document changes nothing.
    pub async fn merge_from_node(&self, bytes: Vec<u8>) -> Result<bool, LocalEntriesError> {
        self.edit(move |doc| doc.merge_bytes(&bytes, UnixMillis::now()))
            .await
    }

    /// Merge the stored document into this one: another hub process on
    /// the same database may have changed it (the store merges every
    /// write into what it holds). Returns whether anything new came; then
    /// it is published, and the sync side pushes it to this hub's nodes.
    pub async fn reload(&self) -> Result<bool, LocalEntriesError> {
        let storage = self.inner.storage.clone();
        let stored = tokio::task::spawn_blocking(move || storage.local_entries_doc())
            .await
            .map_err(|e| LocalEntriesError::Join(e.to_string()))??;
        let Some(bytes) = stored else {
            return Ok(false);
        };
        let mut doc = self.inner.doc.lock().await;
        let mut next = LocalEntriesDoc::load(&doc.save())?;
        if !next.merge_bytes(&bytes, UnixMillis::now())? {
            return Ok(false);
        }
        let saved = next.save();
        self.publish(&mut doc, next, saved);
        Ok(true)
    }

    /// Start a new epoch without the entries removed or expired longer
    /// than the grace period, if there are any. Returns whether it did.
    pub async fn compact(&self, now: UnixMillis) -> Result<bool, LocalEntriesError> {
        let mut doc = self.inner.doc.lock().await;
        if !doc.needs_compaction(now) {
            return Ok(false);
        }
        let next = doc.compact(now)?;
        self.commit(&mut doc, next).await?;
        Ok(true)
    }

    /// Apply `change` to a copy; if it changed anything, store the copy,
    /// then make it current and publish it.
    async fn edit(
        &self,
        change: impl FnOnce(&mut LocalEntriesDoc) -> Result<bool, LocalDocError>,
    ) -> Result<bool, LocalEntriesError> {
        let mut doc = self.inner.doc.lock().await;
        let mut next = LocalEntriesDoc::load(&doc.save())?;
        if !change(&mut next)? {
            return Ok(false);
        }
        self.commit(&mut doc, next).await?;
        Ok(true)
    }

    async fn commit(
        &self,
        doc: &mut LocalEntriesDoc,
        mut next: LocalEntriesDoc,
    ) -> Result<(), LocalEntriesError> {
        let saved = next.save();
        // Peers refuse a document over the limit: never make one.
        if saved.len() > alpr_shared::hotlist::local::MAX_LOCAL_DOC_BYTES {
            return Err(LocalDocError::TooLarge(saved.len()).into());
        }
        let storage = self.inner.storage.clone();
        let bytes = saved.clone();
        tokio::task::spawn_blocking(move || storage.commit(vec![WriteOp::LocalEntries(bytes)]))
            .await
            .map_err(|e| LocalEntriesError::Join(e.to_string()))??;
        self.publish(doc, next, saved);
        Ok(())
    }

    /// Make `next` (durable; `saved` is its saved form) the current
    /// document and publish it.
    fn publish(&self, doc: &mut LocalEntriesDoc, next: LocalEntriesDoc, saved: Vec<u8>) {
        let entries = next.entries();
        *doc = next;
        self.inner.entries.send_replace(Arc::new(entries));
        self.inner.tx.send_replace(Arc::new(saved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;

    fn fields(plate: &str) -> EntryFields {
        EntryFields {
            plate: Some(plate.into()),
            reason: Some("shooting, partial plate".into()),
            ..EntryFields::default()
        }
    }

    #[tokio::test]
    async fn entries_are_durable_published_and_a_removal_is_final() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.redb");
        let rules = HotlistPolicy::default();
        let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
        let svc = LocalEntriesService::open(storage).expect("service");
        let mut rx = svc.watch();
        rx.borrow_and_update();
        let e = svc
            .add(fields("7ab*"), "op.kim", "CA0349400", &rules)
            .await
            .expect("add");
        assert_eq!(e.plate, "7AB*");
        assert!(rx.has_changed().expect("watch open"), "published");
        let edited = svc
            .edit_entry(
                &e.id,
                EntryFields {
                    colour: Some("red".into()),
                    ..EntryFields::default()
                },
                "op.kim",
                &rules,
            )
            .await
            .expect("edit");
        assert_eq!(edited.colour, "red");
        svc.remove(&e.id, "op.kim", "vehicle recovered")
            .await
            .expect("remove");
        assert!(svc.remove(&e.id, "op.kim", "again").await.is_err());
        drop(svc);
        let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("reopen"));
        let svc = LocalEntriesService::open(storage).expect("service");
        let back = svc.get(&e.id).expect("kept");
        assert_eq!(back.colour, "red");
        assert!(back.removed.is_some(), "the removal is durable");
        // A week and a day on, compaction drops it (durably, published).
        let live = svc
            .add(fields("8XY*"), "op.kim", "CA0349400", &rules)
            .await
            .expect("add");
        let later = UnixMillis(UnixMillis::now().0 + 8 * 24 * 3600 * 1000);
        let mut rx = svc.watch();
        rx.borrow_and_update();
        assert!(svc.compact(later).await.expect("compact"));
        assert!(rx.has_changed().expect("watch open"), "published");
        assert!(
            !svc.compact(later).await.expect("compact"),
            "nothing left to drop"
        );
        drop(svc);
        let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("reopen"));
        let svc = LocalEntriesService::open(storage).expect("service");
        let ids: Vec<String> = svc.entries().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec![live.id]);
        let doc = LocalEntriesDoc::load(&svc.saved()).expect("load");
        assert_eq!(doc.epoch(), 1);
    }
}
