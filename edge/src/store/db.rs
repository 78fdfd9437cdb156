//! The database file: opening it checked, reopening it after a failure,
//! the writer's health, and what a fresh start reads back from disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use alpr_shared::log::SignedEntry;
use alpr_shared::types::Hash32;
use alpr_shared::wire::SignedReceipt;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::{split_loss, IMAGE_QUEUE, LOSSES, META, READS};
use super::{db_err, LogStatus, StoreError};

/// The open database, replaced when the writer reopens it after a failed
/// commit (redb refuses every operation after an I/O error until then).
#[derive(Debug)]
pub(super) struct DbSlot {
    pub(super) path: PathBuf,
    pub(super) db: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    pub(super) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .map_err(|_| StoreError::Reopening)?
            .clone()
            .ok_or(StoreError::Reopening)
    }

    /// Close the database (waiting for readers to let go) and open it
    /// again, checked.
    pub(super) fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().map_err(|_| StoreError::Reopening)?;
        if let Some(old) = slot.take() {
            // Readers hold a clone only for one read transaction.
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(again) => {
                        old = again;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        *slot = Some(Arc::new(open_checked(&self.path)?));
        Ok(())
    }
}

/// Why the store cannot write now, and when it gives up.
#[derive(Debug, Default)]
pub(super) struct StoreHealth {
    /// The last failure while the writer retries; `None` when healthy.
    pub(super) failing: Mutex<Option<String>>,
    /// Why the writer stopped for good.
    pub(super) stopped: Mutex<Option<String>>,
    /// Shutdown: a writer waiting to retry gives up.
    pub(super) closing: AtomicBool,
    pub(super) commits: AtomicU64,
    pub(super) commit_micros: AtomicU64,
}

impl StoreHealth {
    pub(super) fn set(slot: &Mutex<Option<String>>, v: Option<String>) {
        if let Ok(mut g) = slot.lock() {
            *g = v;
        }
    }

    pub(super) fn get(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().ok().and_then(|g| g.clone())
    }
}

/// Open `path` and check every page before use: a corrupt file is a clear
/// error naming it, never a panic later in a worker. A panic inside redb
/// while checking is reported the same way.
pub fn open_checked(path: &Path) -> Result<Database, StoreError> {
    let named = |e: String| StoreError::Corrupt(format!("{}: {e}", path.display()));
    let opened = alpr_shared::health::catch_panic(|| -> Result<Database, StoreError> {
        let mut db = Database::create(path).map_err(|e| {
            // An I/O failure may pass (a full disk); a file that is not a
            // database, or a corrupt one, does not.
            let transient = matches!(
                &e,
                redb::DatabaseError::Storage(redb::StorageError::Io(io))
                    if io.kind() != std::io::ErrorKind::InvalidData
            ) || matches!(&e, redb::DatabaseError::DatabaseAlreadyOpen);
            if transient {
                StoreError::Db(format!("{}: {e}", path.display()))
            } else {
                named(e.to_string())
            }
        })?;
        alpr_shared::health::check_database(&mut db, path).map_err(named)?;
        Ok(db)
    });
    match opened {
        Ok(r) => r,
        Err(panic) => Err(named(format!(
            "the database is corrupt (redb failed while checking it: {panic})"
        ))),
    }
}

/// The log's length and head as the database holds them.
pub(super) fn disk_position(db: &Database) -> Result<(u64, Hash32), StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let reads = tx.open_table(READS).map_err(db_err)?;
    let last = reads.last().map_err(db_err)?;
    match last {
        Some((_, v)) => {
            let e =
                SignedEntry::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((e.seq() + 1, e.hash()))
        }
        None => Ok((0, Hash32::ZERO)),
    }
}

pub(super) fn load_receipt(db: &Database) -> Result<Option<SignedReceipt>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(META).map_err(db_err)?;
    let Some(v) = t.get("receipt").map_err(db_err)? else {
        return Ok(None);
    };
    SignedReceipt::decode(v.value())
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn read_status(db: &Database, len: u64) -> Result<LogStatus, StoreError> {
    let receipt = load_receipt(db)?;
    let tx = db.begin_read().map_err(db_err)?;
    let q = tx.open_table(IMAGE_QUEUE).map_err(db_err)?;
    let losses = tx.open_table(LOSSES).map_err(db_err)?;
    let mut lost = 0;
    for row in losses.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let (_, last) = split_loss(v.value());
        lost += (last + 1).saturating_sub(u64::from_be_bytes(*k.value()));
    }
    Ok(LogStatus {
        len,
        acked: receipt.as_ref().map_or(0, |r| r.receipt.next_seq),
        acked_at: receipt.map(|r| r.receipt.at),
        images_pending: q.len().map_err(db_err)?,
        lost,
    })
}
