//! [`HubStorage`] on one redb file. Table names carry a version; ordered
//! keys are big-endian so byte order is numeric order.

use std::collections::HashMap;
use std::path::Path;

use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use alpr_shared::sync::{check_checkpoint, place};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::{
    HubStorage, Ingested, NodeRecord, RefusalRecord, SourceRefusalRecord, StoreError, WriteOp,
    WriteResult,
};

/// name → postcard [`NodeRecord`].
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes-v1");
/// node id → name.
const NODE_NAMES: TableDefinition<&[u8; 4], &str> = TableDefinition::new("node-names-v1");
/// node id (BE u32) ‖ seq (BE u64) → canonical entry bytes.
const ENTRIES: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("entries-v1");
/// plate ‖ 0 ‖ captured_at (BE) ‖ node id (BE) ‖ seq (BE) → ().
const PLATE_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("plate-time-v1");
/// SHA-256 → image bytes.
const IMAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("images-v1");
/// at (BE) ‖ counter (BE) → postcard [`RefusalRecord`].
const REFUSALS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("refusals-v1");
/// at (BE) ‖ counter (BE) → postcard [`SourceRefusalRecord`]: refusals of
/// unauthenticated sources, aggregated and pruned by the writer.
const SOURCE_REFUSALS: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("source-refusals-v1");
/// node id (BE u32) → postcard [`SignedCheckpoint`]: the latest checked one.
const CHECKPOINTS: TableDefinition<&[u8; 4], &[u8]> = TableDefinition::new("checkpoints-v1");
/// name → the DER certificate the node last connected with.
const NODE_CERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("node-certs-v1");
/// Counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

fn entry_key(id: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn plate_key(plate: &str, at: UnixMillis, id: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(plate.len() + 21);
    k.extend_from_slice(plate.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_node(bytes: &[u8]) -> Result<NodeRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "nodes-v1",
        detail: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("plain records always serialise")
}

/// The redb-backed hub store.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(db_err)?;
        Self::init(db)
    }

    /// [`RedbStore::open`] with redb's page cache bounded to `cache_bytes`
    /// (redb's default is 1 GiB): the hub's memory stays within its
    /// configured budgets however much is written through it.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(db_err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(NODES).map_err(db_err)?;
            tx.open_table(NODE_NAMES).map_err(db_err)?;
            tx.open_table(ENTRIES).map_err(db_err)?;
            tx.open_table(PLATE_TIME).map_err(db_err)?;
            tx.open_table(IMAGES).map_err(db_err)?;
            tx.open_table(REFUSALS).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            tx.open_table(CHECKPOINTS).map_err(db_err)?;
            tx.open_table(NODE_CERTS).map_err(db_err)?;
            tx.open_table(SOURCE_REFUSALS).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }
}

impl HubStorage for RedbStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut nodes = tx.open_table(NODES).map_err(db_err)?;
            let mut names = tx.open_table(NODE_NAMES).map_err(db_err)?;
            let mut entries = tx.open_table(ENTRIES).map_err(db_err)?;
            let mut plates = tx.open_table(PLATE_TIME).map_err(db_err)?;
            let mut images = tx.open_table(IMAGES).map_err(db_err)?;
            let mut refusals = tx.open_table(REFUSALS).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let mut checkpoints = tx.open_table(CHECKPOINTS).map_err(db_err)?;
            let mut certs = tx.open_table(NODE_CERTS).map_err(db_err)?;
            let mut sources = tx.open_table(SOURCE_REFUSALS).map_err(db_err)?;
            let mut cache: HashMap<DeviceId, NodeRecord> = HashMap::new();
            let mut plate_keys: Vec<Vec<u8>> = Vec::new();

            let record = |device: &DeviceId,
                          cache: &mut HashMap<DeviceId, NodeRecord>,
                          nodes: &redb::Table<&str, &[u8]>,
                          meta: &mut redb::Table<&str, u64>,
                          names: &mut redb::Table<&[u8; 4], &str>|
             -> Result<(), StoreError> {
                if cache.contains_key(device) {
                    return Ok(());
                }
                let rec = match nodes.get(device.as_str()).map_err(db_err)? {
                    Some(v) => decode_node(v.value())?,
                    None => {
                        let id = meta
                            .get("next-node-id")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("next-node-id", id + 1).map_err(db_err)?;
                        let id = u32::try_from(id).map_err(|_| db_err("node ids exhausted"))?;
                        names
                            .insert(&id.to_be_bytes(), device.as_str())
                            .map_err(db_err)?;
                        NodeRecord {
                            id,
                            ..NodeRecord::default()
                        }
                    }
                };
                cache.insert(device.clone(), rec);
                Ok(())
            };

            for op in ops {
                match op {
                    WriteOp::Ingest {
                        device,
                        entries: batch,
                        checkpoint,
                        at,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        let rec = cache
                            .get_mut(&device)
                            .ok_or_else(|| db_err("record vanished"))?;
                        let id = rec.id;
                        let (progress, first) =
                            (rec.progress(), batch.first().map_or(0, |v| v.seq()));
                        let stored_hash = |seq: u64| -> Option<Hash32> {
                            if seq + 1 == progress.next_seq {
                                return Some(progress.head);
                            }
                            entries
                                .get(&entry_key(id, seq))
                                .ok()
                                .flatten()
                                .and_then(|v| SignedEntry::decode(v.value()).ok())
                                .map(|e| e.hash())
                        };
                        let placed = place(&batch, progress, stored_hash).and_then(|p| {
                            let Some(c) = &checkpoint else {
                                return Ok((p, false));
                            };
                            let old = checkpoints
                                .get(&id.to_be_bytes())
                                .map_err(db_err)
                                .ok()
                                .flatten()
                                .and_then(|v| SignedCheckpoint::decode(v.value()).ok());
                            let replace = check_checkpoint(
                                old.as_ref().map(|o| &o.checkpoint),
                                &c.checkpoint,
                                |seq| match seq.checked_sub(first) {
                                    Some(i) if (i as usize) < batch.len() => {
                                        Some(batch[i as usize].hash)
                                    }
                                    _ => stored_hash(seq),
                                },
                            )?;
                            Ok((p, replace))
                        });
                        match placed {
                            Ok((p, replace)) => {
                                if let (true, Some(c)) = (replace, &checkpoint) {
                                    checkpoints
                                        .insert(&id.to_be_bytes(), c.encode().as_slice())
                                        .map_err(db_err)?;
                                }
                                let appended = batch.len() - p.append_from;
                                for v in batch.iter().skip(p.append_from) {
                                    entries
                                        .insert(&entry_key(id, v.seq()), v.bytes.as_slice())
                                        .map_err(db_err)?;
                                    if let Some(read) = v.entry.read() {
                                        plate_keys.push(plate_key(
                                            &read.plate,
                                            v.entry.header.captured_at,
                                            id,
                                            v.seq(),
                                        ));
                                    }
                                }
                                rec.next_seq = p.after.next_seq;
                                rec.head = p.after.head;
                                rec.duplicates += p.duplicates as u64;
                                rec.last_contact = rec.last_contact.max(at);
                                rec.reported_size = rec.reported_size.max(rec.next_seq);
                                results.push(WriteResult::Ingested(Ok(Ingested {
                                    progress: p.after,
                                    appended,
                                    duplicates: p.duplicates,
                                })));
                            }
                            Err(r) => results.push(WriteResult::Ingested(Err(r))),
                        }
                    }
                    WriteOp::Contact {
                        device,
                        serial,
                        cert_der,
                        reported_size,
                        at,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        certs
                            .insert(device.as_str(), cert_der.as_slice())
                            .map_err(db_err)?;
                        if let Some(rec) = cache.get_mut(&device) {
                            rec.serial = serial;
                            rec.reported_size = reported_size;
                            rec.last_contact = rec.last_contact.max(at);
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Image {
                        device,
                        seq,
                        hash,
                        bytes,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        let rec = cache
                            .get_mut(&device)
                            .ok_or_else(|| db_err("record vanished"))?;
                        let named = entries
                            .get(&entry_key(rec.id, seq))
                            .map_err(db_err)?
                            .and_then(|v| SignedEntry::decode(v.value()).ok())
                            .and_then(|e| {
                                e.read()
                                    .map(|r| r.crop_hash == hash || r.overview_hash == hash)
                            })
                            .unwrap_or(false);
                        if named && images.get(&hash.0).map_err(db_err)?.is_none() {
                            images.insert(&hash.0, bytes.as_slice()).map_err(db_err)?;
                            rec.images += 1;
                        }
                        results.push(WriteResult::Image(named));
                    }
                    WriteOp::Refusal(r) => {
                        let n = meta
                            .get("refusal-counter")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("refusal-counter", n + 1).map_err(db_err)?;
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&r.at.0.to_be_bytes());
                        key[8..].copy_from_slice(&n.to_be_bytes());
                        refusals
                            .insert(&key, encode(&r).as_slice())
                            .map_err(db_err)?;
                        if let Some(Ok(device)) = r.device.as_deref().map(DeviceId::new) {
                            record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                            if let Some(rec) = cache.get_mut(&device) {
                                rec.refusals += 1;
                            }
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::SourceRefusal {
                        record,
                        keep_after,
                        max_rows,
                    } => {
                        let n = meta
                            .get("source-refusal-counter")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("source-refusal-counter", n + 1)
                            .map_err(db_err)?;
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&record.at.0.to_be_bytes());
                        key[8..].copy_from_slice(&n.to_be_bytes());
                        sources
                            .insert(&key, encode(&record).as_slice())
                            .map_err(db_err)?;
                        prune_source_refusals(&mut sources, keep_after, max_rows)?;
                        results.push(WriteResult::Done);
                    }
                }
            }
            // The index is written last and in key order: plates arrive in
            // random order, and sorted inserts walk the tree once.
            plate_keys.sort_unstable();
            for k in &plate_keys {
                plates.insert(k.as_slice(), ()).map_err(db_err)?;
            }
            for (device, rec) in cache {
                nodes
                    .insert(device.as_str(), encode(&rec).as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(results)
    }

    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODES).map_err(db_err)?;
        t.get(device.as_str())
            .map_err(db_err)?
            .map(|v| decode_node(v.value()))
            .transpose()
    }

    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let name = DeviceId::new(k.value()).map_err(|e| StoreError::Corrupt {
                table: "nodes-v1",
                detail: e.to_string(),
            })?;
            out.push((name, decode_node(v.value())?));
        }
        Ok(out)
    }

    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(None);
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(CHECKPOINTS).map_err(db_err)?;
        t.get(&rec.id.to_be_bytes())
            .map_err(db_err)?
            .map(|v| {
                SignedCheckpoint::decode(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "checkpoints-v1",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    fn certificate(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_CERTS).map_err(db_err)?;
        Ok(t.get(device.as_str())
            .map_err(db_err)?
            .map(|v| v.value().to_vec()))
    }

    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ENTRIES).map_err(db_err)?;
        let from = entry_key(rec.id, first);
        let to = entry_key(rec.id, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8; 12]>(&from..=&to)
            .map_err(db_err)?
            .take(limit)
        {
            let (_, v) = row.map_err(db_err)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(REFUSALS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (_, v) = row.map_err(db_err)?;
            out.push(
                postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "refusals-v1",
                    detail: e.to_string(),
                })?,
            );
        }
        out.reverse();
        Ok(out)
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SOURCE_REFUSALS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (_, v) = row.map_err(db_err)?;
            out.push(
                postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "source-refusals-v1",
                    detail: e.to_string(),
                })?,
            );
        }
        out.reverse();
        Ok(out)
    }

    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let names = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let lo = plate_key(plate, from, 0, 0);
        let hi = plate_key(plate, to, u32::MAX, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?
        {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let n = k.len();
            let (Some(id), Some(seq)) = (k.get(n - 12..n - 8), k.get(n - 8..)) else {
                continue;
            };
            let id: [u8; 4] = id.try_into().map_err(db_err)?;
            let seq = u64::from_be_bytes(seq.try_into().map_err(db_err)?);
            if let Some(name) = names.get(&id).map_err(db_err)? {
                if let Ok(d) = DeviceId::new(name.value()) {
                    out.push((d, seq));
                }
            }
        }
        Ok(out)
    }

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.is_some())
    }
}

/// Drop unauthenticated sources' rows older than `keep_after`, then the
/// oldest while more than `max_rows` remain (keys start with the time).
fn prune_source_refusals(
    t: &mut redb::Table<&'static [u8; 16], &'static [u8]>,
    keep_after: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    loop {
        let len = t.len().map_err(db_err)?;
        let stale = match t.first().map_err(db_err)? {
            Some((k, _)) => {
                let mut at = [0u8; 8];
                at.copy_from_slice(&k.value()[..8]);
                u64::from_be_bytes(at) < keep_after.0
            }
            None => return Ok(()),
        };
        if !stale && len <= max_rows {
            return Ok(());
        }
        t.pop_first().map_err(db_err)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::SecretKey;
    use alpr_shared::log::LogWriter;
    use alpr_shared::sync::{verify_batch, Validity};
    use alpr_shared::types::TimeSource;
    use alpr_shared::wire::{Entries, RefusalCode};

    fn batch(w: &mut LogWriter, n: u64) -> Entries {
        let first_seq = w.len();
        let log = (0..n)
            .map(|i| {
                w.append_read(
                    crate::bench::sample_read(first_seq + i),
                    UnixMillis(5_000 + first_seq + i),
                    TimeSource::Ntp,
                )
                .expect("valid")
            })
            .collect();
        Entries::from_log(log, Some(w.checkpoint(UnixMillis(9_000)))).expect("consecutive")
    }

    fn ingest(
        store: &RedbStore,
        device: &DeviceId,
        e: Entries,
        key: &alpr_shared::crypto::PublicKey,
    ) -> WriteResult {
        let v = verify_batch(key, device, Validity::ALWAYS, e).expect("verifies");
        store
            .commit(vec![WriteOp::Ingest {
                device: device.clone(),
                entries: v.entries,
                checkpoint: v.checkpoint,
                at: UnixMillis(1),
            }])
            .expect("commit")
            .remove(0)
    }

    fn store_log(store: &RedbStore, device: &DeviceId, n: usize) -> Vec<SignedEntry> {
        store
            .entries(device, 0, n)
            .expect("read")
            .iter()
            .map(|b| SignedEntry::decode(b).expect("canonical"))
            .collect()
    }

    #[test]
    fn unauthenticated_refusals_are_pruned_by_age_and_count_and_spare_nodes() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
        let node = RefusalRecord {
            at: UnixMillis(10),
            device: Some("stolen-1".into()),
            peer: "127.0.0.1:1".into(),
            code: "revoked".into(),
            seq: None,
            detail: "revoked".into(),
        };
        store
            .commit(vec![WriteOp::Refusal(node.clone())])
            .expect("commit");
        let row = |at: u64| WriteOp::SourceRefusal {
            record: SourceRefusalRecord {
                at: UnixMillis(at),
                source: format!("10.0.0.{}", at % 250),
                code: "unknown-node".into(),
                count: 3,
                detail: "TLS handshake failed".into(),
            },
            keep_after: UnixMillis(at.saturating_sub(100)),
            max_rows: 20,
        };
        store
            .commit((1_000..1_100).map(row).collect())
            .expect("commit");
        let kept = store.source_refusals(1_000).expect("read");
        assert_eq!(kept.len(), 20, "at most max_rows are kept");
        assert_eq!(kept.last().map(|r| r.at), Some(UnixMillis(1_099)));
        // Far later: everything older than the retention goes.
        store.commit(vec![row(100_000)]).expect("commit");
        assert_eq!(store.source_refusals(1_000).expect("read").len(), 1);
        assert_eq!(store.refusals(50).expect("read"), vec![node]);
    }

    #[test]
    fn ingest_is_idempotent_and_refuses_forks_and_gaps() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
        let device = DeviceId::new("p-1").expect("valid");
        let key = SecretKey::from_bytes(&[3; 32]);
        let public = key.public();
        let mut w = LogWriter::new(key, device.clone());
        let first = batch(&mut w, 100);
        let r = ingest(&store, &device, first.clone(), &public);
        assert!(
            matches!(r, WriteResult::Ingested(Ok(i)) if i.appended == 100 && i.progress.next_seq == 100)
        );
        // The same batch again: nothing appended, all counted as duplicates.
        let r = ingest(&store, &device, first, &public);
        assert!(
            matches!(r, WriteResult::Ingested(Ok(i)) if i.appended == 0 && i.duplicates == 100)
        );
        // A gap: entries 150.. while 100 is due.
        let _skipped = batch(&mut w, 50);
        let later = batch(&mut w, 10);
        let r = ingest(&store, &device, later, &public);
        assert!(matches!(r, WriteResult::Ingested(Err(ref f)) if f.code == RefusalCode::Gap));
        // A fork: a different history from 0 with the same key.
        let mut fork = LogWriter::new(SecretKey::from_bytes(&[3; 32]), device.clone());
        let other = batch(&mut fork, 5);
        let r = ingest(&store, &device, other, &public);
        assert!(matches!(r, WriteResult::Ingested(Err(ref f)) if f.code == RefusalCode::Fork));
        // The checkpoint of the first batch is kept; one naming another head
        // at an earlier size (a second history) is refused.
        let kept = store.checkpoint(&device).expect("read").expect("kept");
        assert_eq!(kept.checkpoint.size, 100);
        let replay = verify_batch(
            &public,
            &device,
            Validity::ALWAYS,
            Entries::from_log(store_log(&store, &device, 10), None).expect("consecutive"),
        )
        .expect("verifies");
        let two_faced = alpr_shared::wire::sign_checkpoint(
            &SecretKey::from_bytes(&[3; 32]),
            device.clone(),
            100,
            Hash32([7; 32]),
            UnixMillis(2),
        );
        let r = store
            .commit(vec![WriteOp::Ingest {
                device: device.clone(),
                entries: replay.entries,
                checkpoint: Some(two_faced),
                at: UnixMillis(2),
            }])
            .expect("commit")
            .remove(0);
        assert!(matches!(r, WriteResult::Ingested(Err(ref f)) if f.code == RefusalCode::Fork));
        assert_eq!(store.checkpoint(&device).expect("read"), Some(kept));
        let rec = store.node(&device).expect("read").expect("known");
        assert_eq!(rec.next_seq, 100);
        assert_eq!(rec.duplicates, 100);
        assert_eq!(store.entries(&device, 0, 1000).expect("read").len(), 100);
        let hits = store
            .reads_of_plate(
                &crate::bench::sample_read(7).plate,
                UnixMillis(0),
                UnixMillis(u64::MAX),
            )
            .expect("index");
        assert!(hits.contains(&(device, 7)));
    }
}
