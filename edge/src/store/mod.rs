//! The edge's store: the node's signed log, its images, the hub's latest
//! receipt, the control documents it enforces and the alerts it raised, in
//! one redb file.
//!
//! One writer thread owns the signing key and the database's write side
//! (`writer`): every change is a typed request, answered on a oneshot of
//! its own result type. The writer batches requests (bounded by count) into
//! one durable transaction, signs each read into the next log entry as it
//! writes it, and answers only after the commit, so a read that
//! [`StoreHandle::append_read`] returned survives `kill -9`. Readers (sync,
//! search, status) use read transactions concurrently.
//!
//! The store deletes in one place: a retention purge ([`StoreHandle::purge`])
//! removes the content of reads, their plate-index rows and their images
//! (but not an image still queued for the hub), and signs a purge entry
//! saying so. Its caller purges only below the hub's acknowledged sequence
//! ([`StoreHandle::acked`]), the hub's latest receipt as checked by the sync
//! core (it goes backwards when the hub was restored from a backup), and
//! nothing a legal hold covers. Entries themselves are never deleted.
//!
//! An entry this store can no longer read back is recorded as lost
//! ([`StoreHandle::record_loss`]): a signed loss entry is appended and the
//! upload sends it in the lost entries' place (`losses-v1`).
//!
//! By what it keeps: `log` (reads, capture steps, receipts), `losses` (loss
//! records and the upload's view of the log), `images`, `plates` (the plate
//! index), `control` (policy, holds, local hotlist entries), `alerts`
//! (alerts, dispositions, access records), `retention` (purges); `tables`
//! is the on-disk format, `db` the file itself.

mod alerts;
mod control;
mod db;
mod images;
mod log;
mod losses;
mod plates;
mod retention;
mod tables;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use alpr_shared::crypto::SecretKey;
use alpr_shared::log::LogWriter;
use alpr_shared::types::{DeviceId, UnixMillis};
use redb::ReadableTable;
use tokio::sync::{mpsc, watch};

pub use alerts::AlertRow;
pub use control::{HoldsChange, LocalEntriesChange, Signer};
pub use db::open_checked;
pub use log::{read_log, write_raw_entry, Appended, CaptureCursor, CaptureResult, NewRead};
pub use retention::Purged;

use db::{disk_position, read_status, DbSlot, StoreHealth};
use tables::{Tables, META};
use writer::{request, writer_loop, Request, Write, QUEUE};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("this store belongs to device {stored}, not {configured}")]
    WrongDevice { stored: String, configured: String },
    #[error("invalid read: {0}")]
    Invalid(#[from] alpr_shared::types::InvalidValue),
    #[error("image of {0} bytes is over the limit")]
    ImageTooLarge(usize),
    #[error("the store has stopped")]
    Stopped,
    #[error("the database is being reopened after a failure")]
    Reopening,
    #[error("legal holds: {0}")]
    Holds(#[from] alpr_shared::control::holds_doc::HoldsDocError),
    #[error("{0}")]
    Alert(String),
    #[error("local hotlist entries: {0}")]
    LocalEntries(#[from] alpr_shared::hotlist::local::LocalDocError),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// What the store holds, for sync and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStatus {
    /// Entries in the log.
    pub len: u64,
    /// The hub holds 0..acked (from its latest signed receipt).
    pub acked: u64,
    /// When that receipt was signed.
    pub acked_at: Option<UnixMillis>,
    pub images_pending: u64,
    /// Entries of this log found unreadable in this store and recorded as
    /// lost (by a signed loss entry): the node's own fault.
    pub lost: u64,
}

impl LogStatus {
    pub fn backlog(&self) -> u64 {
        self.len.saturating_sub(self.acked)
    }
}

/// Handle to the store: cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    db: Arc<DbSlot>,
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<LogStatus>,
    device: DeviceId,
    health: Arc<StoreHealth>,
    /// The key this node's log is signed with.
    public: alpr_shared::crypto::PublicKey,
    /// Bumped after each hold placed here (the sync driver sends the
    /// document to the hub).
    holds_placed: Arc<watch::Sender<u64>>,
    /// Bumped after each durable change of the local hotlist entries
    /// (added here or merged from the hub): the matcher rebuilds, the sync
    /// driver sends the document to the hub.
    local_changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Open (or create) the store at `path` for `device`, whose key signs
    /// the log. Returns the handle and the writer thread (which ends, after
    /// its last commit, when every handle is dropped).
    pub fn open(
        path: &Path,
        key: SecretKey,
        device: DeviceId,
    ) -> Result<(StoreHandle, JoinHandle<()>), StoreError> {
        let db = open_checked(path)?;
        let tx = db.begin_write().map_err(db_err)?;
        Tables::open(&tx)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let stored = meta
                .get("device")
                .map_err(db_err)?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            match stored {
                Some(s) if s != device.as_str() => {
                    return Err(StoreError::WrongDevice {
                        stored: s,
                        configured: device.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert("device", device.as_str().as_bytes())
                        .map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)?;
        let (next_seq, head) = disk_position(&db)?;
        let public = key.public();
        let writer = LogWriter::resume(key, device.clone(), next_seq, head);
        let initial = read_status(&db, next_seq)?;
        let db = Arc::new(DbSlot {
            path: path.to_owned(),
            db: RwLock::new(Some(Arc::new(db))),
        });
        let health = Arc::new(StoreHealth::default());
        let (status_tx, status) = watch::channel(initial);
        let (tx, rx) = mpsc::channel(QUEUE);
        let (thread_db, thread_health) = (db.clone(), health.clone());
        let join = std::thread::Builder::new()
            .name("edge-store".into())
            .spawn(move || {
                let why = match alpr_shared::health::catch_panic(|| {
                    writer_loop(&thread_db, writer, rx, status_tx, &thread_health)
                }) {
                    Ok(why) => why,
                    Err(panic) => Some(format!("the store writer panicked: {panic}")),
                };
                StoreHealth::set(&thread_health.stopped, why);
            })
            .map_err(db_err)?;
        Ok((
            StoreHandle {
                db,
                tx,
                status,
                device,
                health,
                public,
                holds_placed: Arc::new(watch::channel(0).0),
                local_changed: Arc::new(watch::channel(0).0),
            },
            join,
        ))
    }

    /// Send `op` to the writer and wait for its answer: the change is
    /// durable when this returns `Ok`.
    async fn ask<W: Write>(&self, op: W) -> Result<W::Out, StoreError> {
        let (req, rx) = request(op);
        self.tx.send(req).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Self::ask`], for a caller on a plain thread (not inside an
    /// async runtime).
    fn ask_blocking<W: Write>(&self, op: W) -> Result<W::Out, StoreError> {
        let (req, rx) = request(op);
        self.tx
            .blocking_send(req)
            .map_err(|_| StoreError::Stopped)?;
        rx.blocking_recv().map_err(|_| StoreError::Stopped)?
    }

    /// The key this node's log is signed with.
    pub fn public_key(&self) -> alpr_shared::crypto::PublicKey {
        self.public
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Why the store cannot commit right now (it retries, and callers
    /// wait); `None` when it is healthy.
    pub fn failing(&self) -> Option<String> {
        StoreHealth::get(&self.health.failing)
    }

    /// Resolves when the writer has stopped, with why (`None`: every handle
    /// was dropped, the normal end).
    pub async fn stopped(&self) -> Option<String> {
        let mut w = self.status.clone();
        while w.changed().await.is_ok() {}
        StoreHealth::get(&self.health.stopped)
    }

    /// Why the writer stopped, if it has.
    pub fn stop_reason(&self) -> Option<String> {
        StoreHealth::get(&self.health.stopped)
    }

    /// Shutdown has begun: a writer waiting for the disk stops waiting and
    /// fails what it holds (unacknowledged, so nothing is lost).
    pub fn close(&self) {
        self.health.closing.store(true, Ordering::Release);
    }

    /// Durable commits so far, and the seconds they took.
    pub fn commit_stats(&self) -> (u64, f64) {
        (
            self.health.commits.load(Ordering::Relaxed),
            self.health.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    pub fn status(&self) -> LogStatus {
        *self.status.borrow()
    }

    /// Changes whenever the log grows or the hub acknowledges.
    pub fn watch(&self) -> watch::Receiver<LogStatus> {
        self.status.clone()
    }

    /// The hub holds entries below this; only these may ever be deleted.
    pub fn acked(&self) -> u64 {
        self.status().acked
    }
}

#[cfg(test)]
mod tests;
