//! Nodes and their chains in redb: node records, entries, checkpoints,
//! certificates, revocations and refusals ([`ChainStore`], and the
//! writes that place entries).

use super::*;

pub(super) fn cert_key(id: u32, serial: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + serial.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(serial.as_bytes());
    k
}

fn decode_cert(bytes: &[u8]) -> Result<NodeCert, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "node-certs-v2",
        detail: e.to_string(),
    })
}

/// Every certificate of node `id`, in the order they took effect (pending
/// ones last, by when they were first seen).
pub(super) fn node_certs(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: u32,
) -> Result<Vec<NodeCert>, StoreError> {
    let lo = id.to_be_bytes();
    let mut out = Vec::new();
    for row in t.range::<&[u8]>(lo.as_slice()..).map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        if !k.value().starts_with(&lo) {
            break;
        }
        out.push(decode_cert(v.value())?);
    }
    in_effect_order(&mut out);
    Ok(out)
}

/// A device's chain as the write transaction sees it; a read error or an
/// undecodable record is an error, never "nothing stored".
struct RedbChain<'a, E, C> {
    id: u32,
    entries: &'a E,
    checkpoints: &'a C,
}

impl<E, C> ChainState for RedbChain<'_, E, C>
where
    E: ReadableTable<&'static [u8; 12], &'static [u8]>,
    C: ReadableTable<&'static [u8; 4], &'static [u8]>,
{
    type Error = StoreError;

    fn stored_hash(&mut self, seq: u64) -> Result<Option<Hash32>, StoreError> {
        self.entries
            .get(&entry_key(self.id, seq))
            .map_err(db_err)?
            .map(|v| {
                SignedEntry::decode(v.value())
                    .map(|e| e.hash())
                    .map_err(|e| StoreError::Corrupt {
                        table: "entries-v1",
                        detail: e.to_string(),
                    })
            })
            .transpose()
    }

    fn checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.checkpoints
            .get(&self.id.to_be_bytes())
            .map_err(db_err)?
            .map(|v| decode_checkpoint(v.value()))
            .transpose()
    }
}

impl ChainStore for RedbStore {
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
            .map(|v| decode_checkpoint(v.value()))
            .transpose()
    }

    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_CERTS_V2).map_err(db_err)?;
        node_certs(&t, rec.id)
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(REVOCATIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(
                postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "revocations-v1",
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
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

    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let t = tx.open_table(ENTRIES).map_err(db_err)?;
        let mut ids: HashMap<&DeviceId, Option<u32>> = HashMap::new();
        let mut out = Vec::with_capacity(at.len());
        for (device, seq) in at {
            let id = match ids.get(device) {
                Some(id) => *id,
                None => {
                    let id = nodes
                        .get(device.as_str())
                        .map_err(db_err)?
                        .map(|v| decode_node(v.value()))
                        .transpose()?
                        .map(|r| r.id);
                    ids.insert(device, id);
                    id
                }
            };
            let bytes = match id {
                Some(id) => t
                    .get(&entry_key(id, *seq))
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec()),
                None => None,
            };
            out.push(bytes);
        }
        Ok(out)
    }

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        newest_rows(&self.db, REFUSALS, "refusals-v1", limit)
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        newest_rows(&self.db, SOURCE_REFUSALS, "source-refusals-v1", limit)
    }
}

/// [`WriteOp::Ingest`]: place verified entries on the device's chain.
pub(super) fn ingest(
    b: &mut Batch<'_>,
    device: &DeviceId,
    batch: Vec<Verified>,
    checkpoint: Option<SignedCheckpoint>,
    new_key: Option<NewKey>,
    at: UnixMillis,
) -> Result<WriteResult, StoreError> {
    let (id, progress) = {
        let rec = b.record(device)?;
        (rec.id, rec.progress())
    };
    let mut chain = RedbChain {
        id,
        entries: &b.entries,
        checkpoints: &b.checkpoints,
    };
    let placed = match decide(&batch, checkpoint.as_ref(), progress, &mut chain) {
        Ok(d) => match &new_key {
            Some(n) => {
                let held = node_certs(&b.certs, id)?;
                new_key_effect(&held, n, &batch, &d.placement).map(|effect| (d, effect))
            }
            None => Ok((d, None)),
        },
        Err(ChainError::Refused(r)) => Err(r),
        // Fail closed: the whole commit fails, nothing is acknowledged.
        Err(ChainError::Storage(e)) => return Err(e),
    };
    let (d, effect) = match placed {
        Ok(placed) => placed,
        Err(r) => return Ok(WriteResult::Ingested(Err(r))),
    };
    let (p, replace) = (d.placement, d.keep_checkpoint);
    if let Some(c) = effect {
        b.certs
            .insert(cert_key(id, &c.serial).as_slice(), encode(&c).as_slice())
            .map_err(db_err)?;
    }
    if let (true, Some(c)) = (replace, &checkpoint) {
        b.checkpoints
            .insert(&id.to_be_bytes(), c.encode().as_slice())
            .map_err(db_err)?;
    }
    let appended = batch.len() - p.append_from;
    for v in batch.iter().skip(p.append_from) {
        b.entries
            .insert(&entry_key(id, v.seq()), v.bytes.as_slice())
            .map_err(db_err)?;
        if v.entry.access().is_some() {
            super::access::index_node_access(b, id, v)?;
        }
        super::alerts::index_alert(&mut b.alerts, id, &v.entry)?;
        b.rows.add(id, &v.entry);
    }
    let ingested = b.record(device)?.placed(&p, appended, at);
    Ok(WriteResult::Ingested(Ok(ingested)))
}

/// [`WriteOp::Contact`]: a node said hello.
pub(super) fn contact(
    b: &mut Batch<'_>,
    device: &DeviceId,
    serial: String,
    cert_der: Vec<u8>,
    reported_size: u64,
    at: UnixMillis,
) -> Result<WriteResult, StoreError> {
    let id = b.record(device)?.id;
    // A certificate not seen before is kept as pending: it vouches for
    // nothing until the node's first entry it signs lands on the stored
    // chain.
    let key = cert_key(id, &serial);
    if b.certs.get(key.as_slice()).map_err(db_err)?.is_none() {
        let c = NodeCert {
            serial: serial.clone(),
            der: cert_der,
            first_seen: at,
            effective_from: None,
        };
        b.certs
            .insert(key.as_slice(), encode(&c).as_slice())
            .map_err(db_err)?;
    }
    let rec = b.record(device)?;
    rec.serial = serial;
    rec.reported_size = reported_size;
    rec.last_contact = rec.last_contact.max(at);
    Ok(WriteResult::Done)
}

/// [`WriteOp::Skip`]: the node signed that it lost entries `first..=last`.
pub(super) fn skip(
    b: &mut Batch<'_>,
    device: &DeviceId,
    first: u64,
    last: u64,
    head: Hash32,
    at: UnixMillis,
) -> Result<WriteResult, StoreError> {
    Ok(WriteResult::Ingested(
        b.record(device)?.skip(first, last, head, at),
    ))
}

/// [`WriteOp::Revoke`]: the earliest effective time recorded wins, so a
/// revocation is never pushed later by a repeat.
pub(super) fn revoke(b: &mut Batch<'_>, r: Revocation) -> Result<WriteResult, StoreError> {
    let keep = match b.revocations.get(r.serial.as_str()).map_err(db_err)? {
        Some(v) => {
            let old: Revocation = decode_row(v.value(), "revocations-v1")?;
            old.effective_at > r.effective_at
        }
        None => true,
    };
    if keep {
        b.revocations
            .insert(r.serial.as_str(), encode(&r).as_slice())
            .map_err(db_err)?;
    }
    Ok(WriteResult::Done)
}

/// The next key of a log-like table: (time, the counter `counter` of
/// `meta-v1`, which moves on).
fn time_key(
    meta: &mut redb::Table<'_, &'static str, u64>,
    counter: &'static str,
    at: UnixMillis,
) -> Result<[u8; 16], StoreError> {
    let n = meta.get(counter).map_err(db_err)?.map_or(0, |v| v.value());
    meta.insert(counter, n + 1).map_err(db_err)?;
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&at.0.to_be_bytes());
    key[8..].copy_from_slice(&n.to_be_bytes());
    Ok(key)
}

/// [`WriteOp::Refusal`]: log a refusal, counted on the node's record.
pub(super) fn refusal(b: &mut Batch<'_>, r: RefusalRecord) -> Result<WriteResult, StoreError> {
    let key = time_key(&mut b.meta, "refusal-counter", r.at)?;
    b.refusals
        .insert(&key, encode(&r).as_slice())
        .map_err(db_err)?;
    if let Some(Ok(device)) = r.device.as_deref().map(DeviceId::new) {
        b.record(&device)?.refusals += 1;
    }
    Ok(WriteResult::Done)
}

/// [`WriteOp::SourceRefusal`]: log an unauthenticated source's refusals
/// and prune that table.
pub(super) fn source_refusal(
    b: &mut Batch<'_>,
    record: SourceRefusalRecord,
    keep_after: UnixMillis,
    max_rows: u64,
) -> Result<WriteResult, StoreError> {
    let key = time_key(&mut b.meta, "source-refusal-counter", record.at)?;
    b.sources
        .insert(&key, encode(&record).as_slice())
        .map_err(db_err)?;
    prune_source_refusals(&mut b.sources, keep_after, max_rows)?;
    Ok(WriteResult::Done)
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

/// A row of `checkpoints-v1`.
fn decode_checkpoint(bytes: &[u8]) -> Result<SignedCheckpoint, StoreError> {
    SignedCheckpoint::decode(bytes).map_err(|e| StoreError::Corrupt {
        table: "checkpoints-v1",
        detail: e.to_string(),
    })
}
