//! The edge's store: the node's signed read log, its images and the hub's
//! latest receipt, in one redb file.
//!
//! One writer thread owns the signing key and the database's write side: it
//! batches appends (bounded by count) into one durable transaction, signs
//! each read into the next log entry as it writes it, and answers only after
//! the commit — so a read that [`StoreHandle::append_read`] returned survives
//! `kill -9`. Readers (sync, status) use read transactions concurrently.
//!
//! Nothing here deletes an entry or an image; whatever comes to delete them
//! may delete only below the hub's acknowledged sequence ([`StoreHandle::acked`]),
//! which is the hub's latest receipt as checked by the sync core (it goes
//! backwards when the hub was restored from a backup).
//!
//! An entry this store can no longer read back is recorded as lost
//! ([`StoreHandle::record_loss`]): a signed loss entry is appended and the
//! upload sends it in the lost entries' place (`losses-v1`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use alpr_shared::control::holds::Hold;
use alpr_shared::control::holds_doc::HoldsDoc;
use alpr_shared::control::SignedPolicy;
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::alert::Progress;
use alpr_shared::log::{AccessRecord, LogWriter, SeqRange, SignedEntry};
use alpr_shared::sync::LogSource;
use alpr_shared::types::{DeviceId, Hash32, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::SignedReceipt;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{mpsc, oneshot, watch};

/// seq (BE) → canonical entry bytes.
const READS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("reads-v1");
/// plate ‖ 0 ‖ captured_at (BE) ‖ seq (BE) → ().
const PLATE_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("plate-time-v1");
/// SHA-256 → image bytes (content-addressed: one copy however many reads name it).
const IMAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("images-v1");
/// seq (BE) ‖ hash → (): images not yet held by the hub.
const IMAGE_QUEUE: TableDefinition<&[u8; 40], ()> = TableDefinition::new("image-queue-v1");
/// first lost seq (BE) → loss entry seq (BE) ‖ last lost seq (BE): entries
/// of this log unreadable in this store, and the signed record of it.
const LOSSES: TableDefinition<&[u8; 8], &[u8; 16]> = TableDefinition::new("losses-v1");
/// "receipt" → the hub's latest receipt; "device" → the log's device name;
/// [`CURSOR_KEY`] → the capture source's position ([`CaptureCursor`]).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-v1");
/// The policy this node enforces: "current" → encoded
/// [`SignedPolicy`] (verified before it was stored), "refreshed-at" → when
/// the hub last confirmed it (ms, BE).
const POLICY: TableDefinition<&str, &[u8]> = TableDefinition::new("policy-v1");
/// Legal holds: "doc" → the saved [`HoldsDoc`] (the hub compacts it),
/// "refreshed-at" → when the hub's document was last merged (ms, BE).
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("holds-v1");
/// Local hotlist entries: "doc" → the saved
/// [`alpr_shared::hotlist::local::LocalEntriesDoc`].
const HOTLIST_LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("hotlist-local-v1");

/// Alerts this node raised: alert entry seq (BE) → disposition progress
/// ([`alpr_shared::log::alert::Progress::encode`], 3 bytes) ‖ covert (1)
/// ‖ the disposition entries' seqs (BE, 8 each, at most 3).
const ALERTS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("alerts-v1");

/// META key of the capture cursor.
const CURSOR_KEY: &str = "capture-cursor";

/// Where the capture source stands, committed in the same transaction as
/// the reads its frames produced, so a kill can neither lose a read nor make
/// the node read a frame again after its read is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaptureCursor {
    /// A restarted node reads the source again from this frame (0-based).
    pub resume_at: u64,
    /// Every read that frames below this one completed is stored: a pass
    /// that completes again while frames below it are re-read is not
    /// stored twice. Equal to `resume_at` when frames are read one by one.
    pub emitted_through: u64,
}

impl CaptureCursor {
    /// `done` frames finished, nothing pending.
    pub fn at(done: u64) -> Self {
        CaptureCursor {
            resume_at: done,
            emitted_through: done,
        }
    }

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.resume_at.to_be_bytes());
        b[8..].copy_from_slice(&self.emitted_through.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("capture cursor".into());
        let resume = b.get(..8).and_then(|x| <[u8; 8]>::try_from(x).ok());
        let through = b.get(8..16).and_then(|x| <[u8; 8]>::try_from(x).ok());
        match (resume, through, b.len()) {
            (Some(r), Some(t), 16) => Ok(CaptureCursor {
                resume_at: u64::from_be_bytes(r),
                emitted_through: u64::from_be_bytes(t),
            }),
            _ => Err(bad()),
        }
    }
}

/// One read to store, with its images.
#[derive(Debug, Clone)]
pub struct NewRead {
    pub content: ReadContent,
    pub captured_at: UnixMillis,
    pub time_source: TimeSource,
    pub crop: Vec<u8>,
    pub overview: Vec<u8>,
}

/// Each read's result, in order (a read refused as invalid does not stop
/// the others, nor the cursor).
pub type CaptureResult = Vec<Result<Appended, StoreError>>;

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

/// A change to the node's local hotlist entries, made in the store's
/// writer so changes never race.
#[derive(Debug)]
pub enum LocalEntriesChange {
    /// Merge a saved document (the hub's).
    Merge { doc: Vec<u8> },
    /// Add an entry here.
    Add {
        id: String,
        fields: alpr_shared::hotlist::local::EntryFields,
        author: String,
        agency: String,
        rules: alpr_shared::control::policy::HotlistPolicy,
        signer: Signer,
    },
    /// Change fields of an entry.
    Edit {
        id: String,
        fields: alpr_shared::hotlist::local::EntryFields,
        by: String,
        rules: alpr_shared::control::policy::HotlistPolicy,
        signer: Signer,
    },
    /// Remove an entry for good.
    Remove {
        id: String,
        removal: alpr_shared::hotlist::Removal,
        signer: Signer,
    },
}

/// The officer who signs a change made on the node (their session's key;
/// the hub takes no unsigned change).
pub type Signer = Option<std::sync::Arc<alpr_shared::control::officer::OfficerSigner>>;

/// A change to the node's legal holds, made in the store's writer so
/// changes never race.
#[derive(Debug)]
pub enum HoldsChange {
    /// Merge a saved document; `from_hub`: it is the hub's, so the holds
    /// count as refreshed now.
    Merge { doc: Vec<u8>, from_hub: bool },
    /// Place a hold here, signed by the officer placing it.
    Add {
        hold: Box<alpr_shared::control::holds::Hold>,
        signer: Signer,
    },
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A read as the store accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Hash32,
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

enum Cmd {
    Append {
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
        crop: Vec<u8>,
        overview: Vec<u8>,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    Acked {
        receipt: SignedReceipt,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ImageDone {
        seq: u64,
        hash: Hash32,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Requeue {
        from: u64,
        to: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    RecordLoss {
        seq: u64,
        reply: oneshot::Sender<Result<Option<(u64, u64)>, StoreError>>,
    },
    /// Store a policy (verified by the sync core) and when it was
    /// refreshed, or (without a policy) only the refresh time.
    Policy {
        encoded: Option<Vec<u8>>,
        refreshed_at: UnixMillis,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Change the local hotlist entries; answers the saved document if
    /// it changed.
    LocalEntries {
        change: LocalEntriesChange,
        reply: oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>,
    },
    /// Change the legal holds; answers the saved document if it changed.
    Holds {
        change: HoldsChange,
        reply: oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>,
    },
    /// Append an access record to the node's own log.
    Access {
        record: AccessRecord,
        reply: oneshot::Sender<Result<SignedEntry, StoreError>>,
    },
    /// Retention: delete the content, salt, plate rows and images of the
    /// reads in `ranges` and append a signed purge entry naming them.
    Purge {
        ranges: Vec<SeqRange>,
        reason: String,
        reply: oneshot::Sender<Result<Purged, StoreError>>,
    },
    /// Alerts raised by reads of this log, signed into it and listed in
    /// the alerts table, in one transaction.
    Alerts {
        records: Vec<alpr_shared::log::AlertRecord>,
        reply: oneshot::Sender<Result<Vec<u64>, StoreError>>,
    },
    /// One stage of an alert's disposition, if the stage rules allow it.
    Dispose {
        record: alpr_shared::log::DispositionRecord,
        reply: oneshot::Sender<Result<(u64, Progress), StoreError>>,
    },
    /// The reads of one step of the capture source and its new position,
    /// in one transaction.
    Capture {
        reads: Vec<NewRead>,
        cursor: Option<CaptureCursor>,
        reply: oneshot::Sender<Result<CaptureResult, StoreError>>,
    },
}

/// Handle to the store: cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    db: Arc<DbSlot>,
    tx: mpsc::Sender<Cmd>,
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

/// The open database, replaced when the writer reopens it after a failed
/// commit (redb refuses every operation after an I/O error until then).
#[derive(Debug)]
struct DbSlot {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .map_err(|_| StoreError::Reopening)?
            .clone()
            .ok_or(StoreError::Reopening)
    }

    /// Close the database (waiting for readers to let go) and open it
    /// again, checked.
    fn reopen(&self) -> Result<(), StoreError> {
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
struct StoreHealth {
    /// The last failure while the writer retries; `None` when healthy.
    failing: Mutex<Option<String>>,
    /// Why the writer stopped for good.
    stopped: Mutex<Option<String>>,
    /// Shutdown: a writer waiting to retry gives up.
    closing: AtomicBool,
    commits: AtomicU64,
    commit_micros: AtomicU64,
}

impl StoreHealth {
    fn set(slot: &Mutex<Option<String>>, v: Option<String>) {
        if let Ok(mut g) = slot.lock() {
            *g = v;
        }
    }

    fn get(slot: &Mutex<Option<String>>) -> Option<String> {
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

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Most commands one transaction takes.
const MAX_BATCH: usize = 512;
/// Commands waiting, at most.
const QUEUE: usize = 1024;

fn image_key(seq: u64, hash: &Hash32) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&hash.0);
    k
}

fn plate_key(plate: &str, at: UnixMillis, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(plate.len() + 17);
    k.extend_from_slice(plate.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
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
        let (next_seq, head) = {
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
            let reads = tx.open_table(READS).map_err(db_err)?;
            tx.open_table(PLATE_TIME).map_err(db_err)?;
            tx.open_table(IMAGES).map_err(db_err)?;
            tx.open_table(IMAGE_QUEUE).map_err(db_err)?;
            tx.open_table(LOSSES).map_err(db_err)?;
            tx.open_table(POLICY).map_err(db_err)?;
            tx.open_table(HOLDS).map_err(db_err)?;
            tx.open_table(ALERTS).map_err(db_err)?;
            tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
            let last = reads.last().map_err(db_err)?;
            match last {
                Some((_, v)) => {
                    let e = SignedEntry::decode(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    (e.seq() + 1, e.hash())
                }
                None => (0, Hash32::ZERO),
            }
        };
        tx.commit().map_err(db_err)?;
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

    /// Seal a recognised read into the signed log with its images, durably.
    /// The images' hashes are computed here and written into the read, so
    /// the signed entry always names the bytes stored. An empty image is
    /// not stored (its hash is that of no bytes).
    pub async fn append_read(
        &self,
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
        crop_jpeg: Vec<u8>,
        overview_jpeg: Vec<u8>,
    ) -> Result<Appended, StoreError> {
        let (cmd, rx) = append_cmd(content, captured_at, time_source, crop_jpeg, overview_jpeg)?;
        self.tx.send(cmd).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Self::append_read`], for a caller on a plain thread (not inside
    /// an async runtime).
    pub fn append_read_blocking(
        &self,
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
        crop_jpeg: Vec<u8>,
        overview_jpeg: Vec<u8>,
    ) -> Result<Appended, StoreError> {
        let (cmd, rx) = append_cmd(content, captured_at, time_source, crop_jpeg, overview_jpeg)?;
        self.tx
            .blocking_send(cmd)
            .map_err(|_| StoreError::Stopped)?;
        rx.blocking_recv().map_err(|_| StoreError::Stopped)?
    }

    /// Store the reads of one step of the capture source together with the
    /// source's new position (none for a live camera), atomically and
    /// durably (for a caller on a plain thread).
    pub fn commit_capture_blocking(
        &self,
        reads: Vec<NewRead>,
        cursor: Option<CaptureCursor>,
    ) -> Result<CaptureResult, StoreError> {
        for r in &reads {
            for img in [&r.crop, &r.overview] {
                if img.len() > alpr_shared::wire::MAX_IMAGE_BYTES {
                    return Err(StoreError::ImageTooLarge(img.len()));
                }
            }
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Capture {
                reads,
                cursor,
                reply,
            })
            .map_err(|_| StoreError::Stopped)?;
        rx.blocking_recv().map_err(|_| StoreError::Stopped)?
    }

    /// The capture source's committed position, if any was ever stored.
    pub fn capture_cursor(&self) -> Result<Option<CaptureCursor>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(META).map_err(db_err)?;
        t.get(CURSOR_KEY)
            .map_err(db_err)?
            .map(|v| CaptureCursor::decode(v.value()))
            .transpose()
    }

    /// Record the hub's latest receipt, as checked by the sync core against
    /// this log. It may go backwards: a hub restored from a backup holds
    /// less than it acknowledged before, and what it holds now is what
    /// retention may rely on.
    pub async fn set_acked(&self, receipt: SignedReceipt) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Acked { receipt, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Put the images of entries `from..to` back on the upload queue (those
    /// still in the store): the hub lost them. Returns how many went back.
    pub async fn requeue_images(&self, from: u64, to: u64) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Requeue { from, to, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Store a policy the sync core verified (a newer version than held),
    /// refreshed now; durable when this returns.
    pub async fn store_policy(
        &self,
        p: &SignedPolicy,
        refreshed_at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.policy_cmd(Some(p.encode()), refreshed_at).await
    }

    /// The hub confirmed the policy held.
    pub async fn policy_refreshed(&self, at: UnixMillis) -> Result<(), StoreError> {
        self.policy_cmd(None, at).await
    }

    async fn policy_cmd(
        &self,
        encoded: Option<Vec<u8>>,
        refreshed_at: UnixMillis,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Policy {
                encoded,
                refreshed_at,
                reply,
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Change the legal holds (merge a document, or place a hold); durable
    /// when this returns. The saved document if it changed.
    pub async fn change_holds(&self, change: HoldsChange) -> Result<Option<Vec<u8>>, StoreError> {
        let placed = matches!(change, HoldsChange::Add { .. });
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Holds { change, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        let r = rx.await.map_err(|_| StoreError::Stopped)?;
        if placed && r.is_ok() {
            self.holds_placed.send_modify(|n| *n += 1);
        }
        r
    }

    /// Change the local hotlist entries (merge the hub's document, or add,
    /// edit, remove an entry); durable when this returns. The saved
    /// document if it changed.
    pub async fn change_local_entries(
        &self,
        change: LocalEntriesChange,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::LocalEntries { change, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        let r = rx.await.map_err(|_| StoreError::Stopped)?;
        if matches!(r, Ok(Some(_))) {
            self.local_changed.send_modify(|n| *n += 1);
        }
        r
    }

    /// Changes with each durable change of the local hotlist entries.
    pub fn watch_local_entries(&self) -> watch::Receiver<u64> {
        self.local_changed.subscribe()
    }

    /// The saved local hotlist entries document, if any.
    pub fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
        Ok(t.get("doc").map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Every local hotlist entry this node knows (removed and expired ones
    /// until the hub's compaction drops them), sorted by id; the matcher
    /// takes those `active(now)`.
    pub fn local_entries(&self) -> Result<Vec<alpr_shared::hotlist::LocalEntry>, StoreError> {
        Ok(match self.local_entries_doc()? {
            Some(bytes) => alpr_shared::hotlist::local::LocalEntriesDoc::load(&bytes)?.entries(),
            None => Vec::new(),
        })
    }

    /// Changes with each hold placed on this node.
    pub fn watch_holds_placed(&self) -> watch::Receiver<u64> {
        self.holds_placed.subscribe()
    }

    /// The saved legal holds document, if any.
    pub fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOLDS).map_err(db_err)?;
        Ok(t.get("doc").map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Every legal hold this node knows (released ones too, sorted by id),
    /// and when it last merged the hub's holds. Retention purges nothing
    /// an active one covers (`alpr_shared::control::holds::held`).
    pub fn holds(&self) -> Result<(Vec<Hold>, Option<UnixMillis>), StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOLDS).map_err(db_err)?;
        let holds = match t.get("doc").map_err(db_err)? {
            Some(v) => HoldsDoc::load(v.value())?.holds(),
            None => Vec::new(),
        };
        let at = t
            .get("refreshed-at")
            .map_err(db_err)?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(|b| UnixMillis(u64::from_be_bytes(b)));
        Ok((holds, at))
    }

    /// The policy held (it was verified against the hub's key before it
    /// was stored) and when the hub last confirmed it.
    pub fn policy(&self) -> Result<Option<(SignedPolicy, Option<UnixMillis>)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY).map_err(db_err)?;
        let Some(bytes) = t.get("current").map_err(db_err)? else {
            return Ok(None);
        };
        let p = SignedPolicy::decode(bytes.value())
            .map_err(|e| StoreError::Corrupt(format!("stored policy: {e}")))?;
        let at = t
            .get("refreshed-at")
            .map_err(db_err)?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(|b| UnixMillis(u64::from_be_bytes(b)));
        Ok(Some((p, at)))
    }

    /// Seal `record` into this node's own log and commit it; only then may
    /// the caller return the data the access asked for.
    pub async fn append_access(&self, record: AccessRecord) -> Result<SignedEntry, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Access { record, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Purge the content of the reads in `ranges` (at most
    /// [`alpr_shared::log::MAX_PURGE_RANGES`], all below [`Self::acked`]:
    /// the caller checks) and record it with a signed purge entry in this
    /// node's log, in one transaction. The entry syncs to the hub like any
    /// other; the hub's copy keeps the content until its own retention.
    pub async fn purge(&self, ranges: Vec<SeqRange>, reason: &str) -> Result<Purged, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Purge {
                ranges,
                reason: reason.to_owned(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Entry `seq` of this log cannot be read back from the store: sign and
    /// store a loss record for it and the unreadable entries right after
    /// it. Returns the lost range, `None` if a record already covers it.
    pub async fn record_loss(&self, seq: u64) -> Result<Option<(u64, u64)>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::RecordLoss { seq, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Self::raw_entries`], ending before the first entry a loss
    /// record covers (its record goes in its place).
    fn upload_entries(
        &self,
        first: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let losses = tx.open_table(LOSSES).map_err(db_err)?;
        let stop = losses
            .range::<&[u8; 8]>(&first.to_be_bytes()..)
            .map_err(db_err)?
            .next()
            .transpose()
            .map_err(db_err)?
            .map(|(k, _)| u64::from_be_bytes(*k.value()));
        entries_from_tx(&tx, first, max_count, max_bytes, stop)
    }

    /// The loss record covering `seq`: (its first lost seq, its bytes).
    fn loss_covering(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let losses = tx.open_table(LOSSES).map_err(db_err)?;
        let Some(row) = losses
            .range::<&[u8; 8]>(..=&seq.to_be_bytes())
            .map_err(db_err)?
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = row.map_err(db_err)?;
        let (first, (at, last)) = (u64::from_be_bytes(*k.value()), split_loss(v.value()));
        if seq > last {
            return Ok(None);
        }
        let reads = tx.open_table(READS).map_err(db_err)?;
        Ok(reads
            .get(&at.to_be_bytes())
            .map_err(db_err)?
            .map(|b| (first, b.value().to_vec())))
    }

    /// The hub holds this image: it leaves the upload queue (the image
    /// itself stays until retention).
    pub async fn image_done(&self, seq: u64, hash: Hash32) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::ImageDone { seq, hash, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
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

    /// The hub's latest receipt, as stored.
    pub fn receipt(&self) -> Result<Option<SignedReceipt>, StoreError> {
        load_receipt(&*self.db.get()?)
    }

    /// Entries from `first`, at most `limit`, decoded.
    pub fn entries_from(&self, first: u64, limit: usize) -> Result<Vec<SignedEntry>, StoreError> {
        self.raw_entries(first, limit, usize::MAX)?
            .iter()
            .map(|b| SignedEntry::decode(b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    fn raw_entries(
        &self,
        first: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        entries_from_tx(&tx, first, max_count, max_bytes, None)
    }

    /// Sign `records` (alerts raised by reads of this log) into the log and
    /// list them as awaiting disposition; durable when this returns. The
    /// alert entries' sequence numbers.
    pub async fn append_alerts(
        &self,
        records: Vec<alpr_shared::log::AlertRecord>,
    ) -> Result<Vec<u64>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Alerts { records, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Self::append_alerts`], for a caller on a plain thread.
    pub fn append_alerts_blocking(
        &self,
        records: Vec<alpr_shared::log::AlertRecord>,
    ) -> Result<Vec<u64>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Alerts { records, reply })
            .map_err(|_| StoreError::Stopped)?;
        rx.blocking_recv().map_err(|_| StoreError::Stopped)?
    }

    /// Record one stage of an alert's disposition, if the stage rules
    /// ([`Progress`]) allow it now; durable when this returns. The
    /// disposition entry's sequence number and the alert's progress.
    pub async fn dispose_alert(
        &self,
        record: alpr_shared::log::DispositionRecord,
    ) -> Result<(u64, Progress), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Dispose { record, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// The alerts this node raised, newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (k, v) = row.map_err(db_err)?;
            let row = parse_alert_row(u64::from_be_bytes(*k.value()), v.value())
                .ok_or_else(|| StoreError::Corrupt("alerts table row".into()))?;
            out.push(row);
        }
        Ok(out)
    }

    /// One alert's row, if this node raised it.
    pub fn alert_row(&self, seq: u64) -> Result<Option<AlertRow>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let Some(v) = t.get(&seq.to_be_bytes()).map_err(db_err)? else {
            return Ok(None);
        };
        parse_alert_row(seq, v.value())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt("alerts table row".into()))
    }

    /// Reads whose plate is in [`from_plate`, `to_plate`) (byte order),
    /// captured in [`from`, `to`]: (plate, seq). For past matches of a
    /// pattern, the caller filters by its prefix range.
    pub fn plates_in_range(
        &self,
        from_plate: &str,
        to_plate: Option<&str>,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let mut out = Vec::new();
        let lo = from_plate.as_bytes().to_vec();
        for row in t.range::<&[u8]>(lo.as_slice()..).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let Some(zero) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let plate = String::from_utf8_lossy(&k[..zero]).into_owned();
            if to_plate.is_some_and(|t| plate.as_str() >= t) {
                break;
            }
            let (Some(at), Some(seq)) = (
                k.get(zero + 1..zero + 9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok()),
                k.get(zero + 9..zero + 17)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ) else {
                continue;
            };
            let at = u64::from_be_bytes(at);
            if at < from.0 || at > to.0 {
                continue;
            }
            out.push((plate, u64::from_be_bytes(seq)));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Sequence numbers of reads of `plate` captured in [from, to].
    pub fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let lo = plate_key(plate, from, 0);
        let hi = plate_key(plate, to, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?
        {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            if let Some(s) = k.get(k.len().saturating_sub(8)..) {
                if let Ok(b) = <[u8; 8]>::try_from(s) {
                    out.push(u64::from_be_bytes(b));
                }
            }
        }
        Ok(out)
    }

    pub fn image_bytes(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn queued_images(&self, below: u64, limit: usize) -> Result<Vec<(u64, Hash32)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGE_QUEUE).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.take(limit) {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let mut s = [0u8; 8];
            s.copy_from_slice(&k[..8]);
            let seq = u64::from_be_bytes(s);
            if seq >= below {
                break;
            }
            let mut h = [0u8; 32];
            h.copy_from_slice(&k[8..]);
            out.push((seq, Hash32(h)));
        }
        Ok(out)
    }
}

impl LogSource for StoreHandle {
    fn log_len(&self) -> u64 {
        self.status().len
    }

    fn entries(&self, first: u64, max_count: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        self.upload_entries(first, max_count, max_bytes)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading entries to upload");
                Vec::new()
            })
    }

    fn pending_images(&self, below: u64, limit: usize) -> Vec<(u64, Hash32)> {
        self.queued_images(below, limit).unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the image queue");
            Vec::new()
        })
    }

    fn image(&self, hash: &Hash32) -> Option<Vec<u8>> {
        self.image_bytes(hash).ok().flatten()
    }

    fn loss_at(&self, first: u64) -> Option<Vec<u8>> {
        match self.loss_covering(first) {
            Ok(Some((f, bytes))) if f == first => Some(bytes),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "reading the loss records");
                None
            }
        }
    }

    fn entry_hash(&self, seq: u64) -> Option<Hash32> {
        let own = self
            .raw_entries(seq, 1, usize::MAX)
            .ok()?
            .first()
            .and_then(|b| SignedEntry::decode(b).ok())
            .filter(|e| e.seq() == seq)
            .map(|e| e.hash());
        if own.is_some() {
            return own;
        }
        // A lost entry: its hash is what the loss record states for the
        // last of its range.
        let (_, bytes) = self.loss_covering(seq).ok()??;
        let e = SignedEntry::decode(&bytes).ok()?;
        match alpr_shared::log::loss::statement(&e) {
            Some((_, last, head)) if last == seq => Some(head),
            _ => None,
        }
    }
}

fn split_loss(v: &[u8; 16]) -> (u64, u64) {
    let mut at = [0u8; 8];
    let mut last = [0u8; 8];
    at.copy_from_slice(&v[..8]);
    last.copy_from_slice(&v[8..]);
    (u64::from_be_bytes(at), u64::from_be_bytes(last))
}

/// Canonical bytes of entries from `first`: at most `max_count`, at most
/// `max_bytes` beyond the first, and none at or past `stop`.
fn entries_from_tx(
    tx: &redb::ReadTransaction,
    first: u64,
    max_count: usize,
    max_bytes: usize,
    stop: Option<u64>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let t = tx.open_table(READS).map_err(db_err)?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in t
        .range::<&[u8; 8]>(&first.to_be_bytes()..)
        .map_err(db_err)?
        .take(max_count)
    {
        let (k, v) = row.map_err(db_err)?;
        if stop.is_some_and(|s| u64::from_be_bytes(*k.value()) >= s) {
            break;
        }
        bytes += v.value().len();
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(v.value().to_vec());
    }
    Ok(out)
}

fn load_receipt(db: &Database) -> Result<Option<SignedReceipt>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(META).map_err(db_err)?;
    let Some(v) = t.get("receipt").map_err(db_err)? else {
        return Ok(None);
    };
    SignedReceipt::decode(v.value())
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn read_status(db: &Database, len: u64) -> Result<LogStatus, StoreError> {
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

/// Longest wait between two attempts to reopen a failing database.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Write batches until every handle is dropped. A failed commit (a full
/// disk) acknowledges nothing: the writer reopens the database and retries
/// the same batch until it commits, while callers wait (the bounded queue
/// holds capture back). Returns why it stopped early, if it did: a corrupt
/// database, or shutdown while the disk was still failing.
fn writer_loop(
    slot: &DbSlot,
    mut log: LogWriter,
    mut rx: mpsc::Receiver<Cmd>,
    status: watch::Sender<LogStatus>,
    health: &StoreHealth,
) -> Option<String> {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (len, head) = (log.len(), log.head());
        let mut wait = Duration::from_millis(100);
        let written = loop {
            let started = std::time::Instant::now();
            let attempt = slot
                .get()
                .and_then(|db| write_batch(&db, &mut log, &mut batch));
            match attempt {
                Ok(replies) => {
                    health.commits.fetch_add(1, Ordering::Relaxed);
                    health.commit_micros.fetch_add(
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    break Ok(replies);
                }
                Err(e) => {
                    // Nothing of the batch is on disk: its entries will be
                    // sealed again, in the same places, by the retry.
                    log.rewind(len, head);
                    if StoreHealth::get(&health.failing).is_none() {
                        tracing::error!(error = %e, path = %slot.path.display(), "store commit failed; nothing was acknowledged; retrying until the disk accepts it");
                    }
                    StoreHealth::set(&health.failing, Some(e.to_string()));
                    if health.closing.load(Ordering::Acquire) {
                        break Err(format!("shutting down while the store was failing: {e}"));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                    match slot.reopen().and_then(|()| disk_position(&*slot.get()?)) {
                        Ok((next_seq, h)) => {
                            if next_seq != len || h != head {
                                break Err(format!(
                                    "after reopening, the log holds {next_seq} entries, not {len}"
                                ));
                            }
                        }
                        Err(e @ StoreError::Corrupt(_)) => break Err(e.to_string()),
                        Err(e) => StoreHealth::set(&health.failing, Some(e.to_string())),
                    }
                }
            }
        };
        let replies = match written {
            Ok(r) => r,
            Err(why) => {
                tracing::error!(reason = %why, "the store stops; unacknowledged reads are not stored");
                for cmd in batch {
                    reply(cmd, Done::Failed(StoreError::Db(why.clone())));
                }
                return Some(why);
            }
        };
        if StoreHealth::get(&health.failing).is_some() {
            tracing::info!("the store commits again");
            StoreHealth::set(&health.failing, None);
        }
        let mut st = *status.borrow();
        st.len = log.len();
        for r in &replies {
            match r {
                Done::Appended(_, queued) | Done::Captured(_, queued) => {
                    st.images_pending += queued
                }
                Done::Acked(next, at) => {
                    st.acked = *next;
                    st.acked_at = Some(*at);
                }
                Done::Dequeued => st.images_pending = st.images_pending.saturating_sub(1),
                Done::Requeued(n) => st.images_pending += n,
                Done::Lost(Some((first, last))) => st.lost += last + 1 - first,
                _ => {}
            }
        }
        status.send_replace(st);
        for (cmd, r) in batch.into_iter().zip(replies) {
            reply(cmd, r);
        }
    }
    None
}

/// The log's length and head as the database holds them.
fn disk_position(db: &Database) -> Result<(u64, Hash32), StoreError> {
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

/// What one edge purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub reads: u64,
    pub images: u64,
    /// Images kept because the hub does not hold them yet (still queued).
    pub images_kept: u64,
    /// The purge entry's sequence number.
    pub record: u64,
}

enum Done {
    /// The read, and how many images joined the upload queue.
    Appended(Appended, u64),
    /// A capture step's reads, and how many images joined the queue.
    Captured(CaptureResult, u64),
    Acked(u64, UnixMillis),
    Dequeued,
    Requeued(u64),
    Lost(Option<(u64, u64)>),
    Accessed(Box<SignedEntry>),
    Holds(Option<Vec<u8>>),
    Alerted(Vec<u64>),
    Disposed(u64, Progress),
    LocalEntries(Option<Vec<u8>>),
    Purged(Purged),
    Nothing,
    Failed(StoreError),
}

fn reply(cmd: Cmd, r: Done) {
    match cmd {
        Cmd::Append { reply, .. } => {
            let _ = reply.send(match r {
                Done::Appended(a, _) => Ok(a),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no append result".into())),
            });
        }
        Cmd::RecordLoss { reply, .. } => {
            let _ = reply.send(match r {
                Done::Lost(l) => Ok(l),
                Done::Failed(e) => Err(e),
                _ => Ok(None),
            });
        }
        Cmd::Requeue { reply, .. } => {
            let _ = reply.send(match r {
                Done::Requeued(n) => Ok(n),
                Done::Failed(e) => Err(e),
                _ => Ok(0),
            });
        }
        Cmd::Capture { reply, .. } => {
            let _ = reply.send(match r {
                Done::Captured(v, _) => Ok(v),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no capture result".into())),
            });
        }
        Cmd::Access { reply, .. } => {
            let _ = reply.send(match r {
                Done::Accessed(e) => Ok(*e),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no access result".into())),
            });
        }
        Cmd::Holds { reply, .. } => {
            let _ = reply.send(match r {
                Done::Holds(doc) => Ok(doc),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no holds result".into())),
            });
        }
        Cmd::Alerts { reply, .. } => {
            let _ = reply.send(match r {
                Done::Alerted(v) => Ok(v),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no alert result".into())),
            });
        }
        Cmd::Dispose { reply, .. } => {
            let _ = reply.send(match r {
                Done::Disposed(seq, p) => Ok((seq, p)),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no disposition result".into())),
            });
        }
        Cmd::LocalEntries { reply, .. } => {
            let _ = reply.send(match r {
                Done::LocalEntries(doc) => Ok(doc),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no local entries result".into())),
            });
        }
        Cmd::Purge { reply, .. } => {
            let _ = reply.send(match r {
                Done::Purged(p) => Ok(p),
                Done::Failed(e) => Err(e),
                _ => Err(StoreError::Db("no purge result".into())),
            });
        }
        Cmd::Acked { reply, .. } | Cmd::ImageDone { reply, .. } | Cmd::Policy { reply, .. } => {
            let _ = reply.send(match r {
                Done::Failed(e) => Err(e),
                _ => Ok(()),
            });
        }
    }
}

fn write_batch(
    db: &Database,
    log: &mut LogWriter,
    batch: &mut [Cmd],
) -> Result<Vec<Done>, StoreError> {
    let mut tx = db.begin_write().map_err(db_err)?;
    tx.set_durability(Durability::Immediate).map_err(db_err)?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut reads = tx.open_table(READS).map_err(db_err)?;
        let mut plates = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let mut images = tx.open_table(IMAGES).map_err(db_err)?;
        let mut queue = tx.open_table(IMAGE_QUEUE).map_err(db_err)?;
        let mut meta = tx.open_table(META).map_err(db_err)?;
        let mut losses = tx.open_table(LOSSES).map_err(db_err)?;
        let mut policy = tx.open_table(POLICY).map_err(db_err)?;
        let mut holds = tx.open_table(HOLDS).map_err(db_err)?;
        let mut alerts = tx.open_table(ALERTS).map_err(db_err)?;
        let mut hotlist_local = tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
        for cmd in batch.iter_mut() {
            match cmd {
                Cmd::Alerts { records, .. } => {
                    let mut seqs = Vec::with_capacity(records.len());
                    let mut failed = None;
                    for r in records.iter() {
                        let covert = r.covert;
                        match log.append_alert(r.clone(), UnixMillis::now(), TimeSource::LocalClock)
                        {
                            Ok(e) => {
                                reads
                                    .insert(&e.seq().to_be_bytes(), e.encode().as_slice())
                                    .map_err(db_err)?;
                                let row = AlertRow {
                                    seq: e.seq(),
                                    progress: Progress::default(),
                                    covert,
                                    dispositions: Vec::new(),
                                };
                                alerts
                                    .insert(&e.seq().to_be_bytes(), alert_row(&row).as_slice())
                                    .map_err(db_err)?;
                                seqs.push(e.seq());
                            }
                            Err(e) => failed = Some(e),
                        }
                    }
                    out.push(match failed {
                        Some(e) if seqs.is_empty() => Done::Failed(e.into()),
                        _ => Done::Alerted(seqs),
                    });
                }
                Cmd::Dispose { record, .. } => {
                    let row = alerts
                        .get(&record.alert_seq.to_be_bytes())
                        .map_err(db_err)?
                        .map(|v| v.value().to_vec());
                    let Some(mut row) = row
                        .as_deref()
                        .and_then(|v| parse_alert_row(record.alert_seq, v))
                    else {
                        out.push(Done::Failed(StoreError::Alert(format!(
                            "no alert {} on this node",
                            record.alert_seq
                        ))));
                        continue;
                    };
                    if let Err(e) = row.progress.apply(record.stage) {
                        out.push(Done::Failed(StoreError::Alert(e.to_string())));
                        continue;
                    }
                    match log.append_disposition(
                        record.clone(),
                        UnixMillis::now(),
                        TimeSource::LocalClock,
                    ) {
                        Ok(e) => {
                            reads
                                .insert(&e.seq().to_be_bytes(), e.encode().as_slice())
                                .map_err(db_err)?;
                            row.dispositions.push(e.seq());
                            alerts
                                .insert(&record.alert_seq.to_be_bytes(), alert_row(&row).as_slice())
                                .map_err(db_err)?;
                            out.push(Done::Disposed(e.seq(), row.progress));
                        }
                        Err(e) => out.push(Done::Failed(e.into())),
                    }
                }
                Cmd::LocalEntries { change, .. } => {
                    let stored = hotlist_local
                        .get("doc")
                        .map_err(db_err)?
                        .map(|v| v.value().to_vec());
                    let result = (|| -> Result<Option<Vec<u8>>, StoreError> {
                        use alpr_shared::hotlist::local::{LocalEntriesDoc, MAX_LOCAL_DOC_BYTES};
                        let mut doc = match &stored {
                            Some(b) => LocalEntriesDoc::load(b)?,
                            None => LocalEntriesDoc::new(),
                        };
                        let now = UnixMillis::now();
                        let changed = match change {
                            LocalEntriesChange::Merge { doc: other } => {
                                doc.merge_bytes(other, now)?
                            }
                            LocalEntriesChange::Add {
                                id,
                                fields,
                                author,
                                agency,
                                rules,
                                signer,
                            } => {
                                if let Some(s) = signer {
                                    doc.sign_as(s.clone());
                                }
                                doc.add(id, fields.clone(), author, agency, rules, now)?;
                                true
                            }
                            LocalEntriesChange::Edit {
                                id,
                                fields,
                                by,
                                rules,
                                signer,
                            } => {
                                if let Some(s) = signer {
                                    doc.sign_as(s.clone());
                                }
                                doc.edit(id, fields.clone(), by, rules, now)?;
                                true
                            }
                            LocalEntriesChange::Remove {
                                id,
                                removal,
                                signer,
                            } => {
                                if let Some(s) = signer {
                                    doc.sign_as(s.clone());
                                }
                                doc.remove(id, removal.clone())?;
                                true
                            }
                        };
                        if !changed {
                            return Ok(None);
                        }
                        let saved = doc.save();
                        // The hub refuses a document over the limit.
                        if saved.len() > MAX_LOCAL_DOC_BYTES {
                            return Err(alpr_shared::hotlist::local::LocalDocError::TooLarge(
                                saved.len(),
                            )
                            .into());
                        }
                        Ok(Some(saved))
                    })();
                    match result {
                        Ok(saved) => {
                            if let Some(bytes) = &saved {
                                hotlist_local
                                    .insert("doc", bytes.as_slice())
                                    .map_err(db_err)?;
                            }
                            out.push(Done::LocalEntries(saved));
                        }
                        Err(e) => out.push(Done::Failed(e)),
                    }
                }
                Cmd::Holds { change, .. } => {
                    let stored = holds
                        .get("doc")
                        .map_err(db_err)?
                        .map(|v| v.value().to_vec());
                    let result = (|| -> Result<Option<Vec<u8>>, StoreError> {
                        let mut doc = match &stored {
                            Some(b) => HoldsDoc::load(b)?,
                            None => HoldsDoc::new(),
                        };
                        let changed = match change {
                            HoldsChange::Merge { doc: other, .. } => {
                                doc.merge_bytes(other, UnixMillis::now())?
                            }
                            HoldsChange::Add { hold, signer } => {
                                if let Some(s) = signer {
                                    doc.sign_as(s.clone());
                                }
                                doc.add(hold.as_ref().clone())?;
                                true
                            }
                        };
                        Ok(changed.then(|| doc.save()))
                    })();
                    match result {
                        Ok(saved) => {
                            if let Some(bytes) = &saved {
                                holds.insert("doc", bytes.as_slice()).map_err(db_err)?;
                            }
                            if matches!(change, HoldsChange::Merge { from_hub: true, .. }) {
                                holds
                                    .insert(
                                        "refreshed-at",
                                        UnixMillis::now().0.to_be_bytes().as_slice(),
                                    )
                                    .map_err(db_err)?;
                            }
                            out.push(Done::Holds(saved));
                        }
                        Err(e) => out.push(Done::Failed(e)),
                    }
                }
                Cmd::Policy {
                    encoded,
                    refreshed_at,
                    ..
                } => {
                    if let Some(p) = encoded {
                        policy.insert("current", p.as_slice()).map_err(db_err)?;
                    }
                    policy
                        .insert("refreshed-at", refreshed_at.0.to_be_bytes().as_slice())
                        .map_err(db_err)?;
                    out.push(Done::Nothing);
                }
                Cmd::Purge { ranges, reason, .. } => {
                    let mut t = Tables {
                        reads: &mut reads,
                        plates: &mut plates,
                        images: &mut images,
                        queue: &mut queue,
                    };
                    out.push(match purge_reads(&mut t, log, ranges, reason)? {
                        Ok(p) => Done::Purged(p),
                        Err(e) => Done::Failed(e),
                    });
                }
                Cmd::Access { record, .. } => {
                    match log.append_access(
                        record.clone(),
                        UnixMillis::now(),
                        TimeSource::LocalClock,
                    ) {
                        Ok(e) => {
                            reads
                                .insert(&e.seq().to_be_bytes(), e.encode().as_slice())
                                .map_err(db_err)?;
                            out.push(Done::Accessed(Box::new(e)));
                        }
                        Err(e) => out.push(Done::Failed(e.into())),
                    }
                }
                Cmd::Append {
                    content,
                    captured_at,
                    time_source,
                    crop,
                    overview,
                    ..
                } => {
                    let mut t = Tables {
                        reads: &mut reads,
                        plates: &mut plates,
                        images: &mut images,
                        queue: &mut queue,
                    };
                    out.push(
                        match append_one(
                            &mut t,
                            log,
                            content,
                            *captured_at,
                            *time_source,
                            crop,
                            overview,
                        )? {
                            Ok((a, queued)) => Done::Appended(a, queued),
                            Err(e) => Done::Failed(e),
                        },
                    );
                }
                Cmd::Capture {
                    reads: new, cursor, ..
                } => {
                    let mut t = Tables {
                        reads: &mut reads,
                        plates: &mut plates,
                        images: &mut images,
                        queue: &mut queue,
                    };
                    let mut results = Vec::with_capacity(new.len());
                    let mut queued_all = 0;
                    for r in new.iter() {
                        results.push(
                            match append_one(
                                &mut t,
                                log,
                                &r.content,
                                r.captured_at,
                                r.time_source,
                                &r.crop,
                                &r.overview,
                            )? {
                                Ok((a, queued)) => {
                                    queued_all += queued;
                                    Ok(a)
                                }
                                Err(e) => Err(e),
                            },
                        );
                    }
                    if let Some(c) = cursor {
                        meta.insert(CURSOR_KEY, c.encode().as_slice())
                            .map_err(db_err)?;
                    }
                    out.push(Done::Captured(results, queued_all));
                }
                Cmd::Acked { receipt, .. } => {
                    // The sync core orders receipts and checks each against
                    // this log; the latest is what the hub holds now.
                    meta.insert("receipt", receipt.encode().as_slice())
                        .map_err(db_err)?;
                    out.push(Done::Acked(receipt.receipt.next_seq, receipt.receipt.at));
                }
                Cmd::RecordLoss { seq, .. } => {
                    let seq = *seq;
                    let covered = match losses
                        .range::<&[u8; 8]>(..=&seq.to_be_bytes())
                        .map_err(db_err)?
                        .next_back()
                    {
                        Some(row) => {
                            let (_, v) = row.map_err(db_err)?;
                            split_loss(v.value()).1 >= seq
                        }
                        None => false,
                    };
                    if covered || seq >= log.len() {
                        out.push(Done::Lost(None));
                        continue;
                    }
                    // The lost run ends before the next readable entry,
                    // whose `prev` is the hash of the last lost one.
                    let mut last = seq;
                    let mut lost_head = None;
                    for s in seq + 1..log.len() {
                        let readable = reads
                            .get(&s.to_be_bytes())
                            .map_err(db_err)?
                            .and_then(|v| SignedEntry::decode(v.value()).ok())
                            .filter(|e| e.seq() == s);
                        match readable {
                            Some(e) => {
                                lost_head = Some(e.header.prev);
                                break;
                            }
                            None => last = s,
                        }
                    }
                    let lost_head = match lost_head {
                        Some(h) => h,
                        None => log.head(),
                    };
                    let entry = match log.append_loss(
                        seq,
                        last,
                        lost_head,
                        "unreadable in the node's store",
                        UnixMillis::now(),
                        TimeSource::LocalClock,
                    ) {
                        Ok(e) => e,
                        Err(e) => {
                            out.push(Done::Failed(e.into()));
                            continue;
                        }
                    };
                    reads
                        .insert(&entry.seq().to_be_bytes(), entry.encode().as_slice())
                        .map_err(db_err)?;
                    let mut v = [0u8; 16];
                    v[..8].copy_from_slice(&entry.seq().to_be_bytes());
                    v[8..].copy_from_slice(&last.to_be_bytes());
                    losses.insert(&seq.to_be_bytes(), &v).map_err(db_err)?;
                    out.push(Done::Lost(Some((seq, last))));
                }
                Cmd::Requeue { from, to, .. } => {
                    let mut queued = 0;
                    let mut wanted = Vec::new();
                    for row in reads
                        .range::<&[u8; 8]>(&from.to_be_bytes()..&to.to_be_bytes())
                        .map_err(db_err)?
                    {
                        let (_, v) = row.map_err(db_err)?;
                        // An unreadable entry names no image we could find.
                        let Ok(e) = SignedEntry::decode(v.value()) else {
                            continue;
                        };
                        if let Some(r) = e.read() {
                            for h in [r.crop_hash, r.overview_hash] {
                                wanted.push((e.seq(), h));
                            }
                        }
                    }
                    for (seq, h) in wanted {
                        if images.get(&h.0).map_err(db_err)?.is_some()
                            && queue
                                .insert(&image_key(seq, &h), ())
                                .map_err(db_err)?
                                .is_none()
                        {
                            queued += 1;
                        }
                    }
                    out.push(Done::Requeued(queued));
                }
                Cmd::ImageDone { seq, hash, .. } => {
                    let removed = queue
                        .remove(&image_key(*seq, hash))
                        .map_err(db_err)?
                        .is_some();
                    out.push(if removed {
                        Done::Dequeued
                    } else {
                        Done::Nothing
                    });
                }
            }
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// An alerts-table row: progress ‖ covert ‖ disposition seqs.
fn alert_row(r: &AlertRow) -> Vec<u8> {
    let mut v = r.progress.encode().to_vec();
    v.push(u8::from(r.covert));
    for s in &r.dispositions {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v
}

fn parse_alert_row(seq: u64, v: &[u8]) -> Option<AlertRow> {
    let progress = Progress::decode(v.get(..3)?)?;
    let covert = v.get(3).copied()? != 0;
    let rest = v.get(4..)?;
    if rest.len() % 8 != 0 || rest.len() > 24 {
        return None;
    }
    let dispositions = rest
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_be_bytes)
        .collect();
    Some(AlertRow {
        seq,
        progress,
        covert,
        dispositions,
    })
}

/// One alert of this node as the alerts table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// The alert entry's sequence number in this log.
    pub seq: u64,
    pub progress: Progress,
    pub covert: bool,
    /// Its disposition entries in this log, in order.
    pub dispositions: Vec<u64>,
}

/// The tables an append writes.
/// How far either side of a purged range a read may share an image with
/// one in it (reads of one frame are sealed consecutively).
const IMAGE_NEIGHBOURS: u64 = 32;

/// Purge the reads in `ranges` and append the signed purge entry. The
/// outer error fails the transaction; the inner one refuses this purge.
fn purge_reads(
    t: &mut Tables<'_, '_>,
    log: &mut LogWriter,
    ranges: &[SeqRange],
    reason: &str,
) -> Result<Result<Purged, StoreError>, StoreError> {
    let corrupt = |e: alpr_shared::log::DecodeError| StoreError::Corrupt(e.to_string());
    let (size, head) = (log.len(), log.head());
    let record = match log.append_purge(
        ranges.to_vec(),
        reason,
        UnixMillis::now(),
        TimeSource::LocalClock,
    ) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.into())),
    };
    let mut done = Purged {
        record: record.seq(),
        ..Purged::default()
    };
    let mut named = std::collections::HashSet::new();
    for r in ranges {
        for seq in r.first..=r.last {
            let key = seq.to_be_bytes();
            let Some(bytes) = t
                .reads
                .get(&key)
                .map_err(db_err)?
                .map(|v| v.value().to_vec())
            else {
                continue;
            };
            let mut e = SignedEntry::decode(&bytes).map_err(corrupt)?;
            let Some(read) = e.read().cloned() else {
                continue;
            };
            t.plates
                .remove(plate_key(&read.plate, e.header.captured_at, seq).as_slice())
                .map_err(db_err)?;
            named.insert(read.crop_hash);
            named.insert(read.overview_hash);
            e.purge_content();
            t.reads
                .insert(&key, e.encode().as_slice())
                .map_err(db_err)?;
            done.reads += 1;
        }
    }
    if done.reads == 0 {
        // Nothing to record: the signed entry is not kept.
        log.rewind(size, head);
        return Ok(Err(StoreError::Db(
            "no read in these ranges holds content".into(),
        )));
    }
    for r in ranges {
        let before = r.first.saturating_sub(IMAGE_NEIGHBOURS)..r.first;
        let after = r.last.saturating_add(1)..r.last.saturating_add(1 + IMAGE_NEIGHBOURS);
        for seq in before.chain(after) {
            if let Some(v) = t.reads.get(&seq.to_be_bytes()).map_err(db_err)? {
                if let Some(read) = SignedEntry::decode(v.value()).map_err(corrupt)?.read() {
                    named.remove(&read.crop_hash);
                    named.remove(&read.overview_hash);
                }
            }
        }
    }
    // An image still queued for upload is one the hub lacks: keep it.
    let mut queued = std::collections::HashSet::new();
    for row in t.queue.iter().map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        let mut h = [0u8; 32];
        h.copy_from_slice(&k.value()[8..]);
        queued.insert(Hash32(h));
    }
    for h in named {
        if queued.contains(&h) {
            done.images_kept += 1;
        } else if t.images.remove(&h.0).map_err(db_err)?.is_some() {
            done.images += 1;
        }
    }
    t.reads
        .insert(&record.seq().to_be_bytes(), record.encode().as_slice())
        .map_err(db_err)?;
    Ok(Ok(done))
}

struct Tables<'a, 't> {
    reads: &'a mut redb::Table<'t, &'static [u8; 8], &'static [u8]>,
    plates: &'a mut redb::Table<'t, &'static [u8], ()>,
    images: &'a mut redb::Table<'t, &'static [u8; 32], &'static [u8]>,
    queue: &'a mut redb::Table<'t, &'static [u8; 40], ()>,
}

/// Sign one read into the log and write it with its images. The outer error
/// fails the transaction; the inner one refuses this read alone.
fn append_one(
    t: &mut Tables<'_, '_>,
    log: &mut LogWriter,
    content: &ReadContent,
    captured_at: UnixMillis,
    time_source: TimeSource,
    crop: &[u8],
    overview: &[u8],
) -> Result<Result<(Appended, u64), StoreError>, StoreError> {
    let mut content = content.clone();
    content.crop_hash = sha256(crop);
    content.overview_hash = sha256(overview);
    if let Err(e) = content.validate() {
        return Ok(Err(e.into()));
    }
    let plate = content.plate.clone();
    let entry = match log.append_read(content, captured_at, time_source) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.into())),
    };
    let seq = entry.seq();
    t.reads
        .insert(&seq.to_be_bytes(), entry.encode().as_slice())
        .map_err(db_err)?;
    t.plates
        .insert(plate_key(&plate, captured_at, seq).as_slice(), ())
        .map_err(db_err)?;
    let mut queued = 0;
    for img in [crop, overview] {
        if img.is_empty() {
            continue;
        }
        let h = sha256(img);
        if t.images.get(&h.0).map_err(db_err)?.is_none() {
            t.images.insert(&h.0, img).map_err(db_err)?;
        }
        if t.queue
            .insert(&image_key(seq, &h), ())
            .map_err(db_err)?
            .is_none()
        {
            queued += 1;
        }
    }
    Ok(Ok((
        Appended {
            seq,
            hash: entry.hash(),
        },
        queued,
    )))
}

/// Overwrite the stored bytes of entry `seq` of a store no process has
/// open: for tests and repair tools that need a damaged entry.
pub fn write_raw_entry(path: &Path, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
    let db = Database::create(path).map_err(db_err)?;
    let tx = db.begin_write().map_err(db_err)?;
    {
        let mut t = tx.open_table(READS).map_err(db_err)?;
        t.insert(&seq.to_be_bytes(), bytes).map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(())
}

/// Every readable entry of a store's log, in order, for a store no
/// process has open (tests and offline inspection); an entry that cannot
/// be decoded is an error unless a loss record covers it.
pub fn read_log(path: &Path) -> Result<Vec<SignedEntry>, StoreError> {
    let db = Database::create(path).map_err(db_err)?;
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(READS).map_err(db_err)?;
    let mut lost: Vec<(u64, u64)> = Vec::new();
    if let Ok(losses) = tx.open_table(LOSSES) {
        for row in losses.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            lost.push((u64::from_be_bytes(*k.value()), split_loss(v.value()).1));
        }
    }
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let seq = u64::from_be_bytes(*k.value());
        match SignedEntry::decode(v.value()) {
            Ok(e) => out.push(e),
            Err(_) if lost.iter().any(|(f, l)| *f <= seq && seq <= *l) => {}
            Err(e) => return Err(StoreError::Corrupt(e.to_string())),
        }
    }
    Ok(out)
}

/// The writer's command for one read, with the image bounds checked first.
fn append_cmd(
    content: ReadContent,
    captured_at: UnixMillis,
    time_source: TimeSource,
    crop: Vec<u8>,
    overview: Vec<u8>,
) -> Result<(Cmd, oneshot::Receiver<Result<Appended, StoreError>>), StoreError> {
    for img in [&crop, &overview] {
        if img.len() > alpr_shared::wire::MAX_IMAGE_BYTES {
            return Err(StoreError::ImageTooLarge(img.len()));
        }
    }
    let (reply, rx) = oneshot::channel();
    let cmd = Cmd::Append {
        content,
        captured_at,
        time_source,
        crop,
        overview,
        reply,
    };
    Ok((cmd, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::types::Location;

    fn read(plate: &str) -> ReadContent {
        ReadContent {
            location: Location::Site {
                site_id: "s".into(),
            },
            camera: "c".into(),
            plate: plate.into(),
            confidence: 9000,
            char_confidence: vec![9000; plate.len()],
            region: None,
            detector_model: "d".into(),
            ocr_model: "o".into(),
            crop_hash: Hash32::ZERO,
            overview_hash: Hash32::ZERO,
        }
    }

    #[tokio::test]
    async fn reads_survive_reopen_and_the_chain_continues() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("e.redb");
        let device = DeviceId::new("v-1").expect("valid");
        let key = [5u8; 32];
        {
            let (store, join) =
                StoreHandle::open(&path, SecretKey::from_bytes(&key), device.clone())
                    .expect("open");
            for i in 0..10 {
                let a = store
                    .append_read(
                        read("ABC123"),
                        UnixMillis(1000 + i),
                        TimeSource::Gps,
                        b"crop".to_vec(),
                        vec![],
                    )
                    .await
                    .expect("append");
                assert_eq!(a.seq, i);
            }
            assert_eq!(
                store.status().images_pending,
                10,
                "one queue slot per read naming the image"
            );
            assert_eq!(
                store
                    .reads_of_plate("ABC123", UnixMillis(1002), UnixMillis(1004))
                    .expect("index"),
                vec![2, 3, 4]
            );
            drop(store);
            tokio::task::spawn_blocking(move || join.join()).await.ok();
        }
        let (store, _join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&key), device).expect("reopen");
        store
            .append_read(
                read("XYZ9"),
                UnixMillis(2000),
                TimeSource::Gps,
                vec![],
                vec![],
            )
            .await
            .expect("append");
        let log = store.entries_from(0, 100).expect("read");
        assert_eq!(log.len(), 11);
        for w in log.windows(2) {
            assert_eq!(
                w[1].header.prev,
                w[0].hash(),
                "the chain continues across a restart"
            );
        }
        assert_eq!(log[0].read().map(|r| r.crop_hash), Some(sha256(b"crop")));
    }

    #[test]
    fn a_capture_step_commits_its_reads_and_cursor_together() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("e.redb");
        let device = DeviceId::new("v-1").expect("valid");
        let (store, join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&[3; 32]), device.clone())
                .expect("open");
        assert_eq!(store.capture_cursor().expect("cursor"), None);
        let new = |plate: &str| NewRead {
            content: read(plate),
            captured_at: UnixMillis(5),
            time_source: TimeSource::Exif,
            crop: b"c".to_vec(),
            overview: vec![],
        };
        let mut bad = new("OK1");
        bad.content.plate = "lower".into();
        let r = store
            .commit_capture_blocking(
                vec![new("AAA111"), bad, new("BBB222")],
                Some(CaptureCursor {
                    resume_at: 7,
                    emitted_through: 9,
                }),
            )
            .expect("commit");
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[1].is_err() && r[2].is_ok(), "{r:?}");
        // A live camera has no position to keep.
        store
            .commit_capture_blocking(vec![new("CCC333")], None)
            .expect("commit");
        drop(store);
        join.join().expect("writer");
        let (store, _join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&[3; 32]), device).expect("reopen");
        assert_eq!(
            store.capture_cursor().expect("cursor"),
            Some(CaptureCursor {
                resume_at: 7,
                emitted_through: 9
            })
        );
        let plates: Vec<String> = store
            .entries_from(0, 10)
            .expect("log")
            .iter()
            .filter_map(|e| e.read().map(|r| r.plate.clone()))
            .collect();
        assert_eq!(plates, ["AAA111", "BBB222", "CCC333"]);
        assert_eq!(
            store.entries_from(0, 10).expect("log")[0]
                .header
                .time_source,
            TimeSource::Exif
        );
    }

    #[tokio::test]
    async fn another_devices_store_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("e.redb");
        let (s, j) = StoreHandle::open(
            &path,
            SecretKey::from_bytes(&[1; 32]),
            DeviceId::new("a").expect("valid"),
        )
        .expect("open");
        drop(s);
        tokio::task::spawn_blocking(move || j.join()).await.ok();
        let r = StoreHandle::open(
            &path,
            SecretKey::from_bytes(&[1; 32]),
            DeviceId::new("b").expect("valid"),
        );
        assert!(matches!(r, Err(StoreError::WrongDevice { .. })));
    }

    fn hold(id: &str) -> alpr_shared::control::holds::Hold {
        alpr_shared::control::holds::Hold {
            id: id.into(),
            case: "24-001".into(),
            reason: "pursuit".into(),
            placed_by: "ofc.kim".into(),
            agency: "CA0349400".into(),
            placed_at: UnixMillis(1),
            placed_on: "v-1".into(),
            scope: alpr_shared::control::holds::HoldScope {
                nodes: vec!["v-1".into()],
                ..Default::default()
            },
            released: None,
        }
    }

    #[tokio::test]
    async fn holds_are_kept_merged_and_a_bad_document_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("e.redb");
        let device = DeviceId::new("v-1").expect("valid");
        let (store, _join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&[5; 32]), device).expect("open");
        assert_eq!(store.holds().expect("holds"), (Vec::new(), None));
        let saved = store
            .change_holds(HoldsChange::Add {
                hold: Box::new(hold("mine")),
                signer: None,
            })
            .await
            .expect("add")
            .expect("changed");
        assert!(store
            .change_holds(HoldsChange::Add {
                hold: Box::new(hold("mine")),
                signer: None,
            })
            .await
            .is_err());
        // The hub's document: it knew "mine" and placed "theirs".
        let mut hub = HoldsDoc::load(&saved).expect("load");
        hub.add(hold("theirs")).expect("add");
        let changed = store
            .change_holds(HoldsChange::Merge {
                doc: hub.save(),
                from_hub: true,
            })
            .await
            .expect("merge");
        assert!(changed.is_some());
        let (holds, refreshed) = store.holds().expect("holds");
        let ids: Vec<&str> = holds.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, vec!["mine", "theirs"]);
        assert!(refreshed.is_some());
        assert!(store
            .change_holds(HoldsChange::Merge {
                doc: b"junk".to_vec(),
                from_hub: true,
            })
            .await
            .is_err());
        assert_eq!(store.holds().expect("holds").0.len(), 2);
    }

    #[tokio::test]
    async fn local_entries_are_kept_merged_watched_and_a_bad_document_changes_nothing() {
        use alpr_shared::hotlist::local::{EntryFields, LocalEntriesDoc};
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("e.redb");
        let device = DeviceId::new("v-1").expect("valid");
        let (store, _join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&[5; 32]), device).expect("open");
        assert!(store.local_entries().expect("entries").is_empty());
        let mut watch = store.watch_local_entries();
        watch.borrow_and_update();
        let fields = EntryFields {
            plate: Some("7ab*".into()),
            reason: Some("shooting".into()),
            ..EntryFields::default()
        };
        let rules = alpr_shared::control::policy::HotlistPolicy::default();
        let saved = store
            .change_local_entries(LocalEntriesChange::Add {
                id: "mine".into(),
                fields: fields.clone(),
                author: "ofc.kim".into(),
                agency: "CA0349400".into(),
                rules: rules.clone(),
                signer: None,
            })
            .await
            .expect("add")
            .expect("changed");
        assert!(watch.has_changed().expect("open"), "a change is announced");
        // The hub's document: it knew "mine" and added "theirs".
        let mut hub = LocalEntriesDoc::load(&saved).expect("load");
        hub.add("theirs", fields, "op.lee", "CA", &rules, UnixMillis::now())
            .expect("add");
        let changed = store
            .change_local_entries(LocalEntriesChange::Merge { doc: hub.save() })
            .await
            .expect("merge");
        assert!(changed.is_some());
        let ids: Vec<String> = store
            .local_entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec!["mine".to_string(), "theirs".to_string()]);
        assert!(store
            .change_local_entries(LocalEntriesChange::Merge {
                doc: b"junk".to_vec()
            })
            .await
            .is_err());
        assert_eq!(store.local_entries().expect("entries").len(), 2);
    }
}
