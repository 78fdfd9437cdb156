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

    /// A read: it reopens the database only on an I/O failure or a panic.
    fn read<T>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.call_as(false, f)
    }

    /// A commit: any database failure reopens the database.
    fn write<T>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.call_as(true, f)
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

/// Each store concern, forwarded method by method to the open database:
/// `read fn name(args) -> T;` (or `write fn`, a commit) forwards `name`
/// through [`Recovering::read`] (or [`Recovering::write`]) and returns
/// `Result<T, StoreError>`. A trait's default methods (`certificates_of`,
/// `entries_of_reads`, `images_held`) are left to the trait, over these.
macro_rules! forward {
    ($($concern:ident { $($mode:ident fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* })*) => {
        $(impl $concern for Recovering {
            $(fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                self.$mode(|s| s.$name($($arg),*))
            })*
        })*
    };
}

impl HubStorage for Recovering {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        self.write(|s| s.commit(ops))
    }
}

forward! {
    ChainStore {
        read fn node(device: &DeviceId) -> Option<NodeRecord>;
        read fn nodes() -> Vec<(DeviceId, NodeRecord)>;
        read fn checkpoint(device: &DeviceId) -> Option<SignedCheckpoint>;
        read fn certificate(device: &DeviceId) -> Option<Vec<u8>>;
        read fn certificates(device: &DeviceId) -> Vec<NodeCert>;
        read fn revocations() -> Vec<alpr_shared::cert::Revocation>;
        read fn entries(device: &DeviceId, first: u64, limit: usize) -> Vec<Vec<u8>>;
        read fn entries_at(at: &[(DeviceId, u64)]) -> Vec<Option<Vec<u8>>>;
        read fn refusals(limit: usize) -> Vec<RefusalRecord>;
        read fn source_refusals(limit: usize) -> Vec<SourceRefusalRecord>;
    }
    AccessLogStore {
        read fn hub_access_entries(first: u64, limit: usize) -> Vec<Vec<u8>>;
        read fn hub_access_head() -> (u64, Hash32);
        read fn node_accesses(from: UnixMillis, to: UnixMillis, limit: usize) -> Vec<(DeviceId, u64)>;
    }
    AccountStore {
        read fn user(username: &str) -> Option<crate::store::UserRecord>;
        read fn users() -> Vec<crate::store::UserRecord>;
        read fn user_keys() -> Vec<(String, crate::store::UserKey)>;
        read fn session(hash: &[u8; 32]) -> Option<crate::store::SessionRecord>;
        read fn login_failures(key: &str, since: UnixMillis) -> u64;
        read fn login_lock(key: &str) -> Option<UnixMillis>;
    }
    ControlStore {
        read fn policy() -> Option<Vec<u8>>;
        read fn policy_seed() -> Option<Hash32>;
        read fn node_policies() -> Vec<(DeviceId, u64)>;
        read fn holds_doc() -> Option<Vec<u8>>;
        read fn local_entries_doc() -> Option<Vec<u8>>;
    }
    HotlistStore {
        write fn store_generation(source: &str, number: u64, bytes: &[u8], record: &[u8], keep: u64) -> ();
        read fn generation_bytes(source: &str, number: u64) -> Option<Vec<u8>>;
        read fn generation_records(source: &str) -> Vec<(u64, Vec<u8>, bool)>;
        read fn generation_floor(source: &str) -> u64;
        read fn node_hotlists() -> Vec<(DeviceId, super::NodeLists)>;
    }
    AlertStore {
        read fn alerts(node: Option<&DeviceId>, limit: usize) -> Vec<super::AlertIndexRow>;
        read fn alert(node: &DeviceId, seq: u64) -> Option<super::AlertIndexRow>;
        read fn hub_alerts(limit: usize) -> Vec<(u64, super::HubAlert)>;
        read fn hub_dispositions(alert: Option<&str>) -> Vec<(String, super::HubDisposition)>;
    }
    SearchStore {
        read fn reads_of_plate(plate: &str, from: UnixMillis, to: UnixMillis) -> Vec<(DeviceId, u64)>;
        read fn plates_from(first: u64, limit: usize) -> Vec<(u64, String)>;
        read fn plate_count(plate: &str) -> u64;
        read fn reads_of_plates(plates: &[String], from: UnixMillis, to: UnixMillis, limit: usize) -> Vec<IndexedRead>;
        read fn reads_in_box(area: &GeoBox, from: UnixMillis, to: UnixMillis, node: Option<&DeviceId>, limit: usize, list_unplaced: bool) -> PlacedReads;
        read fn reads_per_hour(first: u64, last: u64) -> Vec<(u64, u64)>;
    }
    ImageStore {
        read fn image(hash: &Hash32) -> Option<Vec<u8>>;
        read fn has_image(hash: &Hash32) -> bool;
        read fn missing_images(device: &DeviceId, from: u64, to: u64, limit: usize) -> MissingImages;
    }
}
