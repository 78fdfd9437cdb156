//! [`HubStorage`] that survives its disk: after a failed commit (redb
//! refuses every operation after an I/O error until the database is
//! reopened) it closes the database and opens it again, checked, on the
//! next call, at most once a second, until the disk accepts writes again.
//! Meanwhile every call fails fast with the reason, the writer acknowledges
//! nothing, and [`Recovering::failing`] says why for `hub nodes`, `hub
//! health` and the metrics. A panic inside a storage call becomes an error
//! naming the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};

use super::redb::RedbStore;
use super::{
    AccessLogStore, AccountStore, AlertStore, ChainStore, ControlStore, DbKind, GeoBox,
    HotlistStore, HubStorage, ImageStore, IndexedRead, MissingImages, NodeCert, NodeRecord,
    PlacedReads, RefusalRecord, SearchStore, SourceRefusalRecord, StoreError, WriteOp, WriteResult,
};

/// Shortest time between two attempts to reopen.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Recovering {
    path: PathBuf,
    /// redb's page cache, at most.
    cache_bytes: usize,
    inner: RwLock<Option<Arc<RedbStore>>>,
    /// Why the store does not work now; `None` when it does.
    failing: Mutex<Option<String>>,
    last_attempt: Mutex<Option<Instant>>,
}

impl Recovering {
    /// Open the store at `path` (checked; see [`RedbStore::open`]) with
    /// at most `cache_bytes` of page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        Ok(Recovering {
            path: path.to_owned(),
            cache_bytes,
            inner: RwLock::new(Some(Arc::new(RedbStore::open_with_cache(
                path,
                cache_bytes,
            )?))),
            failing: Mutex::new(None),
            last_attempt: Mutex::new(None),
        })
    }

    /// Why the store cannot be used now; `None` when healthy.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().ok().and_then(|g| g.clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn set_failing(&self, v: Option<String>) {
        if let Ok(mut g) = self.failing.lock() {
            *g = v;
        }
    }

    fn current(&self) -> Result<Arc<RedbStore>, StoreError> {
        if let Some(s) = self.inner.read().ok().and_then(|g| g.clone()) {
            return Ok(s);
        }
        let unavailable = || {
            StoreError::Unavailable(format!(
                "{} is unavailable: {}",
                self.path.display(),
                self.failing().unwrap_or_else(|| "reopening".into())
            ))
        };
        {
            let mut last = self.last_attempt.lock().map_err(|_| unavailable())?;
            if last.is_some_and(|t| t.elapsed() < RETRY) {
                return Err(unavailable());
            }
            *last = Some(Instant::now());
        }
        let mut slot = self.inner.write().map_err(|_| unavailable())?;
        if let Some(s) = slot.clone() {
            return Ok(s);
        }
        match alpr_shared::health::catch_panic(|| {
            RedbStore::open_with_cache(&self.path, self.cache_bytes)
        }) {
            Ok(Ok(s)) => {
                let s = Arc::new(s);
                *slot = Some(s.clone());
                self.set_failing(None);
                tracing::info!(path = %self.path.display(), "the hub database is open again; commits resume");
                Ok(s)
            }
            Ok(Err(e)) => {
                self.set_failing(Some(e.to_string()));
                Err(e)
            }
            Err(panic) => {
                let e = StoreError::Panicked(format!(
                    "{}: panic while reopening: {panic}",
                    self.path.display()
                ));
                self.set_failing(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// The database failed under `store`: close it so the next call opens
    /// it again (the file closes when the last caller lets go of it).
    fn fail(&self, store: &Arc<RedbStore>, e: &StoreError) {
        if self.failing().is_none() {
            tracing::error!(path = %self.path.display(), error = %e, "the hub database failed; nothing of it was acknowledged; reopening it until the disk accepts writes");
        }
        self.set_failing(Some(e.to_string()));
        if let Ok(mut slot) = self.inner.write() {
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, store)) {
                *slot = None;
            }
        }
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.call_as(false, f)
    }

    /// `write`: any database failure of a commit reopens the database; a
    /// read's only if the database reports an I/O failure or panicked.
    fn call_as<T>(
        &self,
        write: bool,
        f: impl FnOnce(&RedbStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let store = self.current()?;
        let r = alpr_shared::health::catch_panic(|| f(&store)).unwrap_or_else(|panic| {
            Err(StoreError::Panicked(format!(
                "{}: panic inside the database: {panic}",
                self.path.display()
            )))
        });
        if let Err(e) = &r {
            let reopen = match e {
                StoreError::Db { kind, .. } => write || *kind == DbKind::Io,
                StoreError::Panicked(_) => true,
                _ => false,
            };
            if reopen {
                self.fail(&store, e);
            }
        }
        r
    }
}

impl HubStorage for Recovering {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        self.call_as(true, |s| s.commit(ops))
    }
}

impl ChainStore for Recovering {
    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError> {
        self.call(|s| s.node(device))
    }
    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError> {
        self.call(|s| s.nodes())
    }
    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.call(|s| s.checkpoint(device))
    }
    fn certificate(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.certificate(device))
    }
    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError> {
        self.call(|s| s.certificates(device))
    }
    fn revocations(&self) -> Result<Vec<alpr_shared::cert::Revocation>, StoreError> {
        self.call(|s| s.revocations())
    }
    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.call(|s| s.entries(device, first, limit))
    }
    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.call(|s| s.entries_at(at))
    }
    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        self.call(|s| s.refusals(limit))
    }
    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        self.call(|s| s.source_refusals(limit))
    }
}

impl AccessLogStore for Recovering {
    fn hub_access_entries(&self, first: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.call(|s| s.hub_access_entries(first, limit))
    }
    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError> {
        self.call(|s| s.hub_access_head())
    }
    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.call(|s| s.node_accesses(from, to, limit))
    }
}

impl AccountStore for Recovering {
    fn user(&self, username: &str) -> Result<Option<crate::store::UserRecord>, StoreError> {
        self.call(|s| s.user(username))
    }
    fn users(&self) -> Result<Vec<crate::store::UserRecord>, StoreError> {
        self.call(|s| s.users())
    }
    fn user_keys(&self) -> Result<Vec<(String, crate::store::UserKey)>, StoreError> {
        self.call(|s| s.user_keys())
    }
    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::store::SessionRecord>, StoreError> {
        self.call(|s| s.session(hash))
    }
    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError> {
        self.call(|s| s.login_failures(key, since))
    }
    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError> {
        self.call(|s| s.login_lock(key))
    }
}

impl ControlStore for Recovering {
    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.policy())
    }
    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        self.call(|s| s.policy_seed())
    }
    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.call(|s| s.node_policies())
    }
    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.holds_doc())
    }
    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.local_entries_doc())
    }
}

impl HotlistStore for Recovering {
    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError> {
        self.call_as(true, |s| {
            s.store_generation(source, number, bytes, record, keep)
        })
    }
    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.generation_bytes(source, number))
    }
    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError> {
        self.call(|s| s.generation_records(source))
    }
    fn generation_floor(&self, source: &str) -> Result<u64, StoreError> {
        self.call(|s| s.generation_floor(source))
    }
    fn node_hotlists(&self) -> Result<Vec<(DeviceId, super::NodeLists)>, StoreError> {
        self.call(|s| s.node_hotlists())
    }
}

impl AlertStore for Recovering {
    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<super::AlertIndexRow>, StoreError> {
        self.call(|s| s.alerts(node, limit))
    }
    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<super::AlertIndexRow>, StoreError> {
        self.call(|s| s.alert(node, seq))
    }
    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, super::HubAlert)>, StoreError> {
        self.call(|s| s.hub_alerts(limit))
    }
    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, super::HubDisposition)>, StoreError> {
        self.call(|s| s.hub_dispositions(alert))
    }
}

impl SearchStore for Recovering {
    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.call(|s| s.reads_of_plate(plate, from, to))
    }
    fn plates_from(&self, first: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.call(|s| s.plates_from(first, limit))
    }
    fn plate_count(&self, plate: &str) -> Result<u64, StoreError> {
        self.call(|s| s.plate_count(plate))
    }
    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<IndexedRead>, StoreError> {
        self.call(|s| s.reads_of_plates(plates, from, to, limit))
    }
    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        limit: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError> {
        self.call(|s| s.reads_in_box(area, from, to, node, limit, list_unplaced))
    }
    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.call(|s| s.reads_per_hour(first, last))
    }
}

impl ImageStore for Recovering {
    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.image(hash))
    }
    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        self.call(|s| s.has_image(hash))
    }
    fn missing_images(
        &self,
        device: &DeviceId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<MissingImages, StoreError> {
        self.call(|s| s.missing_images(device, from, to, limit))
    }
}
