//! Entries this store can no longer read back, and the log as the upload
//! reads it: a signed loss entry records a lost run (`losses-v1`) and the
//! upload sends that record in the lost entries' place.

use alpr_shared::log::SignedEntry;
use alpr_shared::sync::LogSource;
use alpr_shared::types::{Hash32, TimeSource, UnixMillis};
use redb::{ReadableDatabase, ReadableTable};

use super::log::entries_from_tx;
use super::tables::{loss_value, split_loss, Batch, LOSSES, READS};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

/// Record entry `seq` and the unreadable ones right after it as lost.
struct RecordLoss(u64);

impl Write for RecordLoss {
    /// The lost range, `None` if a record already covers it.
    type Out = Option<(u64, u64)>;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Option<(u64, u64)>> {
        let seq = self.0;
        let covered = match b
            .t
            .losses
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
        if covered || seq >= b.log.len() {
            return Ok(Ok(None));
        }
        // The lost run ends before the next readable entry, whose `prev`
        // is the hash of the last lost one.
        let mut last = seq;
        let mut lost_head = None;
        for s in seq + 1..b.log.len() {
            let readable =
                b.t.reads
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
            None => b.log.head(),
        };
        let entry = match b.log.append_loss(
            seq,
            last,
            lost_head,
            "unreadable in the node's store",
            UnixMillis::now(),
            TimeSource::LocalClock,
        ) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.into())),
        };
        b.t.put_entry(&entry)?;
        b.t.losses
            .insert(&seq.to_be_bytes(), &loss_value(entry.seq(), last))
            .map_err(db_err)?;
        b.status.lost += last + 1 - seq;
        Ok(Ok(Some((seq, last))))
    }
}

impl StoreHandle {
    /// Entry `seq` of this log cannot be read back from the store: sign and
    /// store a loss record for it and the unreadable entries right after
    /// it. Returns the lost range, `None` if a record already covers it.
    pub async fn record_loss(&self, seq: u64) -> Result<Option<(u64, u64)>, StoreError> {
        self.ask(RecordLoss(seq)).await
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
