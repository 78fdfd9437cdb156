//! The store's on-disk format: every redb table, its key and value layout,
//! and the tables one write transaction holds open.
//!
//! Table names carry a version; ordered keys are big-endian. Changing a
//! layout here is a format step (with a test reading the old one).

use alpr_shared::log::{LogWriter, SignedEntry};
use alpr_shared::types::{Hash32, UnixMillis};
use redb::{Table, TableDefinition, WriteTransaction};

use super::{db_err, LogStatus, StoreError};

/// seq (BE) → canonical entry bytes.
pub(super) const READS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("reads-v1");
/// plate ‖ 0 ‖ captured_at (BE) ‖ seq (BE) → ().
pub(super) const PLATE_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("plate-time-v1");
/// SHA-256 → image bytes (content-addressed: one copy however many reads name it).
pub(super) const IMAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("images-v1");
/// seq (BE) ‖ hash → (): images not yet held by the hub.
pub(super) const IMAGE_QUEUE: TableDefinition<&[u8; 40], ()> =
    TableDefinition::new("image-queue-v1");
/// first lost seq (BE) → loss entry seq (BE) ‖ last lost seq (BE): entries
/// of this log unreadable in this store, and the signed record of it.
pub(super) const LOSSES: TableDefinition<&[u8; 8], &[u8; 16]> = TableDefinition::new("losses-v1");
/// "receipt" → the hub's latest receipt; "device" → the log's device name;
/// [`CURSOR_KEY`] → the capture source's position
/// ([`super::CaptureCursor`]).
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-v1");
/// The policy this node enforces: "current" → encoded
/// [`alpr_shared::control::SignedPolicy`] (verified before it was stored),
/// "refreshed-at" → when the hub last confirmed it (ms, BE).
pub(super) const POLICY: TableDefinition<&str, &[u8]> = TableDefinition::new("policy-v1");
/// Legal holds: "doc" → the saved
/// [`alpr_shared::control::holds_doc::HoldsDoc`] (the hub compacts it),
/// "refreshed-at" → when the hub's document was last merged (ms, BE).
pub(super) const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("holds-v1");
/// Local hotlist entries: "doc" → the saved
/// [`alpr_shared::hotlist::local::LocalEntriesDoc`].
pub(super) const HOTLIST_LOCAL: TableDefinition<&str, &[u8]> =
    TableDefinition::new("hotlist-local-v1");
/// Alerts this node raised: alert entry seq (BE) → disposition progress
/// ([`alpr_shared::log::alert::Progress::encode`], 3 bytes) ‖ covert (1)
/// ‖ the disposition entries' seqs (BE, 8 each, at most 3).
pub(super) const ALERTS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("alerts-v1");

/// META key of the capture cursor.
pub(super) const CURSOR_KEY: &str = "capture-cursor";

/// An image-queue key.
pub(super) fn image_key(seq: u64, hash: &Hash32) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&hash.0);
    k
}

/// A plate-index key.
pub(super) fn plate_key(plate: &str, at: UnixMillis, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(plate.len() + 17);
    k.extend_from_slice(plate.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A losses-table value: (the loss entry's seq, the last lost seq).
pub(super) fn split_loss(v: &[u8; 16]) -> (u64, u64) {
    let mut at = [0u8; 8];
    let mut last = [0u8; 8];
    at.copy_from_slice(&v[..8]);
    last.copy_from_slice(&v[8..]);
    (u64::from_be_bytes(at), u64::from_be_bytes(last))
}

/// A losses-table value from its parts.
pub(super) fn loss_value(entry_seq: u64, last: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&entry_seq.to_be_bytes());
    v[8..].copy_from_slice(&last.to_be_bytes());
    v
}

/// Every table of the store, open in one write transaction (a new store
/// creates them all at once).
pub(super) struct Tables<'t> {
    pub reads: Table<'t, &'static [u8; 8], &'static [u8]>,
    pub plates: Table<'t, &'static [u8], ()>,
    pub images: Table<'t, &'static [u8; 32], &'static [u8]>,
    pub queue: Table<'t, &'static [u8; 40], ()>,
    pub losses: Table<'t, &'static [u8; 8], &'static [u8; 16]>,
    pub meta: Table<'t, &'static str, &'static [u8]>,
    pub policy: Table<'t, &'static str, &'static [u8]>,
    pub holds: Table<'t, &'static str, &'static [u8]>,
    pub hotlist_local: Table<'t, &'static str, &'static [u8]>,
    pub alerts: Table<'t, &'static [u8; 8], &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            reads: tx.open_table(READS).map_err(db_err)?,
            plates: tx.open_table(PLATE_TIME).map_err(db_err)?,
            images: tx.open_table(IMAGES).map_err(db_err)?,
            queue: tx.open_table(IMAGE_QUEUE).map_err(db_err)?,
            losses: tx.open_table(LOSSES).map_err(db_err)?,
            meta: tx.open_table(META).map_err(db_err)?,
            policy: tx.open_table(POLICY).map_err(db_err)?,
            holds: tx.open_table(HOLDS).map_err(db_err)?,
            hotlist_local: tx.open_table(HOTLIST_LOCAL).map_err(db_err)?,
            alerts: tx.open_table(ALERTS).map_err(db_err)?,
        })
    }

    /// Write a signed entry at its sequence number.
    pub(super) fn put_entry(&mut self, e: &SignedEntry) -> Result<(), StoreError> {
        self.reads
            .insert(&e.seq().to_be_bytes(), e.encode().as_slice())
            .map_err(db_err)?;
        Ok(())
    }
}

/// One write transaction of the writer: its open tables, the log it signs
/// entries into, and the status the batch moves (published after commit).
pub(super) struct Batch<'a, 't> {
    pub t: Tables<'t>,
    pub log: &'a mut LogWriter,
    pub status: &'a mut LogStatus,
}
