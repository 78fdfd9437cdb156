//! The signed log: sealing reads (one by one, or a capture step with the
//! source's position), the hub's receipts, and reading entries back.

use std::path::Path;

use alpr_shared::crypto::sha256;
use alpr_shared::log::SignedEntry;
use alpr_shared::types::{Hash32, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::SignedReceipt;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::db::load_receipt;
use super::tables::{image_key, plate_key, split_loss, Batch, CURSOR_KEY, LOSSES, META, READS};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

/// A read as the store accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Hash32,
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

impl NewRead {
    /// Refuse an image the hub would refuse, before it reaches the writer.
    fn check_images(&self) -> Result<(), StoreError> {
        for img in [&self.crop, &self.overview] {
            if img.len() > alpr_shared::wire::MAX_IMAGE_BYTES {
                return Err(StoreError::ImageTooLarge(img.len()));
            }
        }
        Ok(())
    }
}

/// Each read's result, in order (a read refused as invalid does not stop
/// the others, nor the cursor).
pub type CaptureResult = Vec<Result<Appended, StoreError>>;

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

/// Seal one read with its images.
struct AppendRead(NewRead);

impl AppendRead {
    fn checked(
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
        crop: Vec<u8>,
        overview: Vec<u8>,
    ) -> Result<Self, StoreError> {
        let read = NewRead {
            content,
            captured_at,
            time_source,
            crop,
            overview,
        };
        read.check_images()?;
        Ok(AppendRead(read))
    }
}

impl Write for AppendRead {
    type Out = Appended;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Appended> {
        append_one(b, &self.0)
    }
}

/// The reads of one step of the capture source and its new position, in
/// one transaction.
struct Capture {
    reads: Vec<NewRead>,
    cursor: Option<CaptureCursor>,
}

impl Write for Capture {
    type Out = CaptureResult;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<CaptureResult> {
        let mut results = Vec::with_capacity(self.reads.len());
        for r in &self.reads {
            results.push(append_one(b, r)?);
        }
        if let Some(c) = self.cursor {
            b.t.meta
                .insert(CURSOR_KEY, c.encode().as_slice())
                .map_err(db_err)?;
        }
        Ok(Ok(results))
    }
}

/// The hub's latest receipt.
struct Acked(SignedReceipt);

impl Write for Acked {
    type Out = ();
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<()> {
        // The sync core orders receipts and checks each against this log;
        // the latest is what the hub holds now.
        let receipt = &self.0;
        b.t.meta
            .insert("receipt", receipt.encode().as_slice())
            .map_err(db_err)?;
        b.status.acked = receipt.receipt.next_seq;
        b.status.acked_at = Some(receipt.receipt.at);
        Ok(Ok(()))
    }
}

/// Sign one read into the log and write it with its images, counting the
/// images that join the upload queue.
fn append_one(b: &mut Batch<'_, '_>, read: &NewRead) -> Written<Appended> {
    let (crop, overview) = (&read.crop, &read.overview);
    let mut content = read.content.clone();
    content.crop_hash = sha256(crop);
    content.overview_hash = sha256(overview);
    if let Err(e) = content.validate() {
        return Ok(Err(e.into()));
    }
    let plate = content.plate.clone();
    let entry = match b
        .log
        .append_read(content, read.captured_at, read.time_source)
    {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.into())),
    };
    let seq = entry.seq();
    b.t.put_entry(&entry)?;
    b.t.plates
        .insert(plate_key(&plate, read.captured_at, seq).as_slice(), ())
        .map_err(db_err)?;
    for img in [crop, overview] {
        if img.is_empty() {
            continue;
        }
        let h = sha256(img);
        if b.t.images.get(&h.0).map_err(db_err)?.is_none() {
            b.t.images.insert(&h.0, img.as_slice()).map_err(db_err)?;
        }
        if b.t
            .queue
            .insert(&image_key(seq, &h), ())
            .map_err(db_err)?
            .is_none()
        {
            b.status.images_pending += 1;
        }
    }
    Ok(Ok(Appended {
        seq,
        hash: entry.hash(),
    }))
}

impl StoreHandle {
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
        let read =
            AppendRead::checked(content, captured_at, time_source, crop_jpeg, overview_jpeg)?;
        self.ask(read).await
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
        let read =
            AppendRead::checked(content, captured_at, time_source, crop_jpeg, overview_jpeg)?;
        self.ask_blocking(read)
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
            r.check_images()?;
        }
        self.ask_blocking(Capture { reads, cursor })
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
        self.ask(Acked(receipt)).await
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

    pub(super) fn raw_entries(
        &self,
        first: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        entries_from_tx(&tx, first, max_count, max_bytes, None)
    }
}

/// Canonical bytes of entries from `first`: at most `max_count`, at most
/// `max_bytes` beyond the first, and none at or past `stop`.
pub(super) fn entries_from_tx(
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
