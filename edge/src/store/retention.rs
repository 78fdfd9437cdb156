//! Deleting: retention purges the content of reads the hub holds, their
//! plate-index rows and the images no kept read shares, and records it in
//! the log with a signed purge entry, in one transaction. What to purge and
//! when (only below the hub's receipt, never under a hold) is decided in
//! `crate::retention`; this only carries it out.

use alpr_shared::log::{SeqRange, SignedEntry};
use alpr_shared::types::{Hash32, TimeSource, UnixMillis};
use redb::ReadableTable;

use super::tables::{plate_key, Batch};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

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

/// How far either side of a purged range a read may share an image with
/// one in it (reads of one frame are sealed consecutively).
const IMAGE_NEIGHBOURS: u64 = 32;

/// Delete the content, salt, plate rows and images of the reads in
/// `ranges` and append a signed purge entry naming them.
struct Purge {
    ranges: Vec<SeqRange>,
    reason: String,
}

impl StoreHandle {
    /// Purge the content of the reads in `ranges` (at most
    /// [`alpr_shared::log::MAX_PURGE_RANGES`], all below [`Self::acked`]:
    /// the caller checks) and record it with a signed purge entry in this
    /// node's log, in one transaction. The entry syncs to the hub like any
    /// other; the hub's copy keeps the content until its own retention.
    pub async fn purge(&self, ranges: Vec<SeqRange>, reason: &str) -> Result<Purged, StoreError> {
        self.ask(Purge {
            ranges,
            reason: reason.to_owned(),
        })
        .await
    }
}

impl Write for Purge {
    type Out = Purged;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Purged> {
        let (ranges, reason) = (&self.ranges, &self.reason);
        let corrupt = |e: alpr_shared::log::DecodeError| StoreError::Corrupt(e.to_string());
        let (size, head) = (b.log.len(), b.log.head());
        let record = match b.log.append_purge(
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
                let Some(bytes) =
                    b.t.reads
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
                b.t.plates
                    .remove(plate_key(&read.plate, e.header.captured_at, seq).as_slice())
                    .map_err(db_err)?;
                named.insert(read.crop_hash);
                named.insert(read.overview_hash);
                e.purge_content();
                b.t.reads
                    .insert(&key, e.encode().as_slice())
                    .map_err(db_err)?;
                done.reads += 1;
            }
        }
        if done.reads == 0 {
            // Nothing to record: the signed entry is not kept.
            b.log.rewind(size, head);
            return Ok(Err(StoreError::Db(
                "no read in these ranges holds content".into(),
            )));
        }
        for r in ranges {
            let before = r.first.saturating_sub(IMAGE_NEIGHBOURS)..r.first;
            let after = r.last.saturating_add(1)..r.last.saturating_add(1 + IMAGE_NEIGHBOURS);
            for seq in before.chain(after) {
                if let Some(v) = b.t.reads.get(&seq.to_be_bytes()).map_err(db_err)? {
                    if let Some(read) = SignedEntry::decode(v.value()).map_err(corrupt)?.read() {
                        named.remove(&read.crop_hash);
                        named.remove(&read.overview_hash);
                    }
                }
            }
        }
        // An image still queued for upload is one the hub lacks: keep it.
        let mut queued = std::collections::HashSet::new();
        for row in b.t.queue.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&k.value()[8..]);
            queued.insert(Hash32(h));
        }
        for h in named {
            if queued.contains(&h) {
                done.images_kept += 1;
            } else if b.t.images.remove(&h.0).map_err(db_err)?.is_some() {
                done.images += 1;
            }
        }
        b.t.put_entry(&record)?;
        Ok(Ok(done))
    }
}
