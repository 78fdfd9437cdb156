//! Images: content-addressed bytes (`images-v1`) and the queue of those the
//! hub does not hold yet (`image-queue-v1`). An image leaves the queue when
//! the hub holds it, and the store only when retention purges its reads.

use alpr_shared::log::SignedEntry;
use alpr_shared::types::Hash32;
use redb::{ReadableDatabase, ReadableTable};

use super::tables::{image_key, Batch, IMAGES, IMAGE_QUEUE};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

/// The hub holds image `hash` of entry `seq`.
struct ImageDone {
    seq: u64,
    hash: Hash32,
}

impl Write for ImageDone {
    type Out = ();
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<()> {
        let removed =
            b.t.queue
                .remove(&image_key(self.seq, &self.hash))
                .map_err(db_err)?
                .is_some();
        if removed {
            b.status.images_pending = b.status.images_pending.saturating_sub(1);
        }
        Ok(Ok(()))
    }
}

/// Queue again the images of entries `from..to` still in the store.
struct Requeue {
    from: u64,
    to: u64,
}

impl Write for Requeue {
    /// How many went back on the queue.
    type Out = u64;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<u64> {
        let mut queued = 0;
        let mut wanted = Vec::new();
        for row in
            b.t.reads
                .range::<&[u8; 8]>(&self.from.to_be_bytes()..&self.to.to_be_bytes())
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
            if b.t.images.get(&h.0).map_err(db_err)?.is_some()
                && b.t
                    .queue
                    .insert(&image_key(seq, &h), ())
                    .map_err(db_err)?
                    .is_none()
            {
                queued += 1;
            }
        }
        b.status.images_pending += queued;
        Ok(Ok(queued))
    }
}

impl StoreHandle {
    /// The hub holds this image: it leaves the upload queue (the image
    /// itself stays until retention).
    pub async fn image_done(&self, seq: u64, hash: Hash32) -> Result<(), StoreError> {
        self.ask(ImageDone { seq, hash }).await
    }

    /// Put the images of entries `from..to` back on the upload queue (those
    /// still in the store): the hub lost them. Returns how many went back.
    pub async fn requeue_images(&self, from: u64, to: u64) -> Result<u64, StoreError> {
        self.ask(Requeue { from, to }).await
    }

    pub fn image_bytes(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Queued images of entries below `below`, in entry order, at most
    /// `limit`.
    pub(super) fn queued_images(
        &self,
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash32)>, StoreError> {
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
