//! Local hotlist entries at the hub: the replicated
//! [`LocalEntriesDoc`] that operators and officers edit through the API,
//! that edges edit while offline, and that merges both ways on each
//! node's control lane (`Frame::LocalEntries`).
//!
//! The document is kept through [`HubStorage`] (table `hotlist-local-v1`)
//! by [`crate::replicated::Kept`]: every change is durable before it is
//! published on [`LocalEntriesService::watch`] (the sync side pushes each
//! published version to connected nodes; the matcher reads
//! [`LocalEntriesService::entries`]).
//! The hub is the one replica that compacts the document
//! ([`LocalEntriesService::compact`]): removed and expired entries leave it
//! after a grace period so it stays small.

use std::sync::Arc;

use alpr_shared::control::node_change::{NodeChange, Verdict};
use alpr_shared::control::policy::HotlistPolicy;
use alpr_shared::hotlist::local::{new_id, EntryFields, LocalDocError, LocalEntriesDoc};
use alpr_shared::hotlist::{LocalEntry, Removal};
use alpr_shared::types::UnixMillis;
use tokio::sync::watch;

use crate::replicated::{Kept, KeptError, Stored};
use crate::store::{HubStorage, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LocalEntriesError {
    #[error(transparent)]
    Doc(#[from] LocalDocError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the local entries commit did not finish: {0}")]
    Join(String),
}

/// The hub's local hotlist entries. Cheap to clone.
#[derive(Clone)]
pub struct LocalEntriesService {
    kept: Arc<Kept<LocalEntriesDoc, Vec<LocalEntry>>>,
}

impl std::fmt::Debug for LocalEntriesService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalEntriesService({} entries)", self.entries().len())
    }
}

impl From<KeptError<LocalDocError>> for LocalEntriesError {
    fn from(e: KeptError<LocalDocError>) -> Self {
        match e {
            KeptError::Doc(e) => LocalEntriesError::Doc(e),
            KeptError::Store(e) => LocalEntriesError::Store(e),
            KeptError::Join(e) => LocalEntriesError::Join(e),
        }
    }
}

impl LocalEntriesService {
    /// Load the stored document, or start an empty one. Blocking (reads
    /// the store).
    pub fn open(storage: Arc<dyn HubStorage>) -> Result<Self, LocalEntriesError> {
        let kept = Kept::open(
            storage,
            Stored::LocalEntries,
            LocalEntriesDoc::new,
            LocalEntriesDoc::entries,
        )?;
        Ok(LocalEntriesService {
            kept: Arc::new(kept),
        })
    }

    /// Every entry the document holds (removed and expired ones until
    /// compaction drops them), sorted by id.
    pub fn entries(&self) -> Arc<Vec<LocalEntry>> {
        self.kept.view()
    }

    /// The entries after each durable change (the current ones first).
    pub fn watch_entries(&self) -> watch::Receiver<Arc<Vec<LocalEntry>>> {
        self.kept.watch_view()
    }

    /// One entry by id.
    pub fn get(&self, id: &str) -> Option<LocalEntry> {
        self.entries().iter().find(|e| e.id == id).cloned()
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
        self.kept
            .edit(move |doc| {
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
        self.kept
            .edit(move |doc| {
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
        self.kept
            .edit(move |doc| doc.remove(&key, removal).map(|()| true))
            .await?;
        self.get(id)
            .ok_or_else(|| LocalEntriesError::Doc(LocalDocError::NoSuchEntry(id.into())))
    }

    /// Take in the changes a node's copy `theirs` has that ours lacks,
    /// each as `judge` decides ([`alpr_shared::control::node_change`]):
    /// the accepted ones are written as this hub's own (durable and
    /// published together), the others change nothing. The node's
    /// document is never merged wholesale. Returns every change with its
    /// verdict (an accepted change that could not be written is refused).
    pub async fn take_from_node(
        &self,
        theirs: LocalEntriesDoc,
        judge: impl Fn(&NodeChange) -> Verdict,
    ) -> Result<Vec<(NodeChange, Verdict)>, LocalEntriesError> {
        Ok(self.kept.take_from_node(theirs, judge).await?)
    }

    /// Merge what another hub process on the same database stored.
    /// Returns whether anything new came; then it is published, and the
    /// sync side pushes it to this hub's nodes.
    pub async fn reload(&self) -> Result<bool, LocalEntriesError> {
        Ok(self.kept.reload(UnixMillis::now()).await?)
    }

    /// Start a new epoch without the entries removed or expired longer
    /// than the grace period, if there are any. Returns whether it did.
    pub async fn compact(&self, now: UnixMillis) -> Result<bool, LocalEntriesError> {
        Ok(self.kept.compact(now).await?)
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
