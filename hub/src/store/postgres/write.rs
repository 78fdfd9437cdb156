//! [`crate::store::HubStorage::commit`] on PostgreSQL: every op of a call
//! in one transaction.
//!
//! Several hub processes commit at once, so what a write builds on is
//! locked in the database, always in one order (no two commits can wait
//! on each other): first the rows of the nodes the ops name (by name),
//! then the `meta` rows the ops need (`access-head` for the hub's access
//! log, `changes` for the shared documents and the hub's own numbered
//! records), then, at the end, the hours and the plate counter. A node's
//! chain is placed against its locked row, so two writers can never fork
//! or duplicate it, whatever the leases say.
//!
//! Rows of the nodes' logs and their search rows are gathered while the
//! ops are applied and written at the end, one statement per table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use alpr_shared::control::replica::ReplicatedDoc;
use alpr_shared::log::alert::Progress;
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use alpr_shared::sync::{decide, ChainError, ChainState, NewKey, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::{Refusal, RefusalCode};

use super::partition::{at_col, Month, Partitions};
use super::sql::{col, execute, id_col, node_row, query, uncol, NODE_COLUMNS};
use super::{pg_err, read};
use crate::store::redb::{
    coordinates, decode_row, encode, geo_cell, images_of, new_key_effect, HOUR_MS, IMAGE_NEIGHBOURS,
};
use crate::store::{
    HubAlert, Ingested, NodeRecord, Purged, RefusalRecord, SourceRefusalRecord, StoreError,
    WriteOp, WriteResult,
};

/// The `cell` of reads without coordinates.
pub(super) const UNPLACED: i32 = -1;

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Apply `ops` in one transaction on `conn`; results in order.
pub(super) async fn commit(
    mut conn: deadpool_postgres::Object,
    partitions: &Partitions,
    ops: Vec<WriteOp>,
) -> Result<Vec<WriteResult>, StoreError> {
    // Partitions are made outside the transaction (DDL takes locks a
    // commit should not hold), for every month an entry might go to.
    let months: BTreeSet<Month> = ops
        .iter()
        .flat_map(|op| match op {
            WriteOp::Ingest { entries, .. } => entries.as_slice(),
            _ => &[],
        })
        .filter_map(|v| Month::of(v.entry.header.captured_at))
        .collect();
    partitions.ensure(&conn, months).await?;

    let tx = conn.transaction().await.map_err(pg_err)?;
    let mut c = Commit {
        tx,
        nodes: HashMap::new(),
        pending: Pending::default(),
        hours: BTreeMap::new(),
        plates: BTreeSet::new(),
        access_head: None,
        changed: false,
    };
    c.lock(&ops).await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(c.apply(op).await?);
    }
    c.finish().await?;
    Ok(results)
}

/// Rows of nodes' logs gathered by a commit, written in bulk.
#[derive(Default)]
struct Pending {
    node_id: Vec<i32>,
    seq: Vec<i64>,
    captured_at: Vec<i64>,
    bytes: Vec<Vec<u8>>,
    /// (node id, seq) → (hash, index in the columns above).
    by_key: HashMap<(u32, u64), (Hash32, usize)>,
    reads: ReadRows,
    access: (Vec<i64>, Vec<i32>, Vec<i64>),
    /// Alert rows made or changed, by (node id, alert seq).
    alerts: BTreeMap<(u32, u64), AlertRow>,
}

#[derive(Default)]
struct ReadRows {
    node_id: Vec<i32>,
    seq: Vec<i64>,
    captured_at: Vec<i64>,
    plate: Vec<String>,
    cell: Vec<i32>,
    lat_e7: Vec<Option<i32>>,
    lon_e7: Vec<Option<i32>>,
}

/// An alert as indexed: its stage, whether covert, the node's
/// disposition entries.
#[derive(Debug, Clone)]
struct AlertRow {
    progress: Progress,
    covert: bool,
    dispositions: Vec<u64>,
}

impl AlertRow {
    fn dispositions_col(&self) -> Vec<u8> {
        self.dispositions
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect()
    }
}

/// What [`decide`] asks of the stored chain, fetched before it runs (it is
/// synchronous): a question not answered yet stops it, is fetched, and it
/// runs again.
#[derive(Default)]
struct Fetched {
    hashes: HashMap<u64, Option<Hash32>>,
    checkpoint: Option<Option<SignedCheckpoint>>,
}

enum Need {
    Entry(u64),
    Checkpoint,
}

impl ChainState for Fetched {
    type Error = Need;

    fn stored_hash(&mut self, seq: u64) -> Result<Option<Hash32>, Need> {
        self.hashes.get(&seq).copied().ok_or(Need::Entry(seq))
    }

    fn checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, Need> {
        self.checkpoint.clone().ok_or(Need::Checkpoint)
    }
}

struct Commit<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    /// The locked rows of the nodes the ops name, as they will be written.
    nodes: HashMap<String, NodeRecord>,
    pending: Pending,
    /// Reads of this commit per hour of capture.
    hours: BTreeMap<u64, u64>,
    /// Plates of this commit's reads.
    plates: BTreeSet<String>,
    /// The hub's access log (size, head), once read under its lock.
    access_head: Option<(u64, Hash32)>,
    /// A shared document changed: the change counter moves and the other
    /// hub processes are told.
    changed: bool,
}

impl Commit<'_> {
    /// Take, in order, every lock the ops build on but the last ones.
    async fn lock(&mut self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut create = BTreeSet::new();
        let mut existing = BTreeSet::new();
        let (mut access, mut changes) = (false, false);
        for op in ops {
            match op {
                WriteOp::Ingest { device, .. }
                | WriteOp::Contact { device, .. }
                | WriteOp::Image { device, .. }
                | WriteOp::Skip { device, .. } => {
                    create.insert(device.as_str().to_owned());
                }
                WriteOp::Refusal(r) => {
                    if let Some(Ok(d)) = r.device.as_deref().map(DeviceId::new) {
                        create.insert(d.as_str().to_owned());
                    }
                }
                WriteOp::Purge { device, .. } => {
                    access = true;
                    existing.insert(device.as_str().to_owned());
                }
                WriteOp::HubAccess(_) => access = true,
                WriteOp::Revoke(_)
                | WriteOp::Policy { .. }
                | WriteOp::Holds(_)
                | WriteOp::LocalEntries(_)
                | WriteOp::User(_)
                | WriteOp::UserKey { .. }
                | WriteOp::HubAlerts(_)
                | WriteOp::HubDisposition { .. }
                | WriteOp::SourceRefusal { .. } => changes = true,
                WriteOp::NodePolicy { .. }
                | WriteOp::NodeHotlists { .. }
                | WriteOp::Session { .. }
                | WriteOp::LoginFailure { .. }
                | WriteOp::LoginLock { .. }
                | WriteOp::LoginCleared { .. }
                | WriteOp::GenerationFloor { .. }
                | WriteOp::PrunePlates => {}
            }
        }
        let all: Vec<String> = create.union(&existing).cloned().collect();
        if !all.is_empty() {
            self.lock_nodes(&all).await?;
            let missing: Vec<String> = create
                .iter()
                .filter(|n| !self.nodes.contains_key(*n))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let zero = Hash32::ZERO.0.to_vec();
                execute!(
                    self.tx,
                    "INSERT INTO nodes (name, id, head) \
                     SELECT n, nextval('node_ids'), $2 FROM unnest($1::text[]) AS n ORDER BY n \
                     ON CONFLICT (name) DO NOTHING",
                    &missing,
                    &zero
                )
                .await?;
                self.lock_nodes(&missing).await?;
            }
        }
        for (key, needed) in [("access-head", access), ("changes", changes)] {
            if needed {
                query!(
                    self.tx,
                    "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                    &key
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn lock_nodes(&mut self, names: &[String]) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE name = ANY($1) ORDER BY name FOR UPDATE"
        );
        for row in query!(self.tx, &sql, &names).await? {
            let (name, rec) = node_row(&row)?;
            self.nodes.insert(name, rec);
        }
        Ok(())
    }

    fn node(&mut self, device: &DeviceId) -> Result<&mut NodeRecord, StoreError> {
        self.nodes
            .get_mut(device.as_str())
            .ok_or_else(|| db_err(format!("the record of {device} vanished")))
    }

    async fn apply(&mut self, op: WriteOp) -> Result<WriteResult, StoreError> {
        Ok(match op {
            WriteOp::Ingest {
                device,
                entries,
                checkpoint,
                new_key,
                at,
            } => WriteResult::Ingested(
                self.ingest(&device, &entries, checkpoint, new_key.as_ref(), at)
                    .await?,
            ),
            WriteOp::Contact {
                device,
                serial,
                cert_der,
                reported_size,
                at,
            } => {
                let id = id_col(self.node(&device)?.id)?;
                // A certificate not seen before is kept as pending: it
                // vouches for nothing until the node's first entry it
                // signs lands on the stored chain.
                execute!(
                    self.tx,
                    "INSERT INTO node_certs (node_id, serial, der, first_seen) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (node_id, serial) DO NOTHING",
                    &id,
                    &serial,
                    &cert_der,
                    &at_col(at)
                )
                .await?;
                let rec = self.node(&device)?;
                rec.serial = serial;
                rec.reported_size = reported_size;
                rec.last_contact = rec.last_contact.max(at);
                WriteResult::Done
            }
            WriteOp::Image {
                device,
                seq,
                hash,
                bytes,
            } => {
                let id = self.node(&device)?.id;
                let named = self
                    .stored_entry(id, seq)
                    .await?
                    .and_then(|b| SignedEntry::decode(&b).ok())
                    .and_then(|e| {
                        e.read()
                            .map(|r| r.crop_hash == hash || r.overview_hash == hash)
                    })
                    .unwrap_or(false);
                if named {
                    let stored = execute!(
                        self.tx,
                        "INSERT INTO images (hash, bytes) VALUES ($1, $2) \
                         ON CONFLICT (hash) DO NOTHING",
                        &hash.0.as_slice(),
                        &bytes
                    )
                    .await?;
                    self.node(&device)?.images += stored;
                }
                WriteResult::Image(named)
            }
            WriteOp::Skip {
                device,
                first,
                last,
                head,
                at,
            } => WriteResult::Ingested(skip(self.node(&device)?, first, last, head, at)),
            WriteOp::Revoke(r) => {
                let stored = query!(
                    self.tx,
                    "SELECT bytes FROM revocations WHERE serial = $1",
                    &r.serial
                )
                .await?;
                // The earliest effective time recorded wins: a revocation
                // is never pushed later by a repeat.
                let keep = match stored.first() {
                    Some(row) => {
                        let old: alpr_shared::cert::Revocation =
                            decode_row(row.get(0), "revocations")?;
                        old.effective_at > r.effective_at
                    }
                    None => true,
                };
                if keep {
                    execute!(
                        self.tx,
                        "INSERT INTO revocations (serial, bytes) VALUES ($1, $2) \
                         ON CONFLICT (serial) DO UPDATE SET bytes = excluded.bytes",
                        &r.serial,
                        &encode(&r)
                    )
                    .await?;
                    self.changed = true;
                }
                WriteResult::Done
            }
            WriteOp::Refusal(r) => {
                self.refusal(&r).await?;
                WriteResult::Done
            }
            WriteOp::SourceRefusal {
                record,
                keep_after,
                max_rows,
            } => {
                self.source_refusal(&record, keep_after, max_rows).await?;
                WriteResult::Done
            }
            WriteOp::LoginFailure {
                keys,
                at,
                keep_after,
                max_rows,
            } => {
                super::logins::failure(&self.tx, &keys, at, keep_after, max_rows).await?;
                WriteResult::Done
            }
            WriteOp::LoginLock {
                key,
                until,
                at,
                max_rows,
            } => {
                super::logins::lock(&self.tx, &key, until, at, max_rows).await?;
                WriteResult::Done
            }
            WriteOp::LoginCleared { key } => {
                super::logins::clear(&self.tx, &key).await?;
                WriteResult::Done
            }
            WriteOp::GenerationFloor { source, number } => {
                execute!(
                    self.tx,
                    "INSERT INTO hotlist_floor (source, number) VALUES ($1, $2) \
                     ON CONFLICT (source) DO UPDATE \
                     SET number = greatest(hotlist_floor.number, excluded.number)",
                    &source,
                    &super::sql::bound(number)
                )
                .await?;
                WriteResult::Done
            }
            WriteOp::Policy {
                version,
                encoded,
                seed,
            } => {
                let latest: Option<i64> = query!(self.tx, "SELECT max(version) FROM policy")
                    .await?
                    .first()
                    .and_then(|r| r.get(0));
                let v = col(version, "policy version")?;
                if let Some(latest) = latest.filter(|l| *l >= v) {
                    return Err(StoreError::Conflict(format!(
                        "policy version {version} is not newer than the stored {latest}"
                    )));
                }
                execute!(
                    self.tx,
                    "INSERT INTO policy (version, encoded) VALUES ($1, $2)",
                    &v,
                    &encoded
                )
                .await?;
                if let Some(seed) = seed {
                    execute!(
                        self.tx,
                        "INSERT INTO policy_seed (id, hash) VALUES (1, $1) \
                         ON CONFLICT (id) DO UPDATE SET hash = excluded.hash",
                        &seed.0.as_slice()
                    )
                    .await?;
                }
                self.changed = true;
                WriteResult::Done
            }
            WriteOp::NodePolicy { device, version } => {
                execute!(
                    self.tx,
                    "INSERT INTO node_policy (name, version) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                    &device.as_str(),
                    // What a node says it holds, kept as said up to the
                    // column's range: never a reason to fail the commit.
                    &super::sql::bound(version)
                )
                .await?;
                WriteResult::Done
            }
            WriteOp::NodeHotlists { device, held } => {
                execute!(
                    self.tx,
                    "INSERT INTO node_hotlists (name, held) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET held = excluded.held",
                    &device.as_str(),
                    &encode(&held)
                )
                .await?;
                WriteResult::Done
            }
            WriteOp::Holds(doc) => {
                self.merge_doc(Doc::Holds, doc).await?;
                WriteResult::Done
            }
            WriteOp::LocalEntries(doc) => {
                self.merge_doc(Doc::LocalEntries, doc).await?;
                WriteResult::Done
            }
            WriteOp::User(u) => {
                execute!(
                    self.tx,
                    "INSERT INTO users (username, bytes) VALUES ($1, $2) \
                     ON CONFLICT (username) DO UPDATE SET bytes = excluded.bytes",
                    &u.username,
                    &encode(&u)
                )
                .await?;
                self.changed = true;
                WriteResult::Done
            }
            WriteOp::UserKey { username, key } => {
                execute!(
                    self.tx,
                    "INSERT INTO user_keys (username, public, bytes) VALUES ($1, $2, $3) \
                     ON CONFLICT (username, public) DO NOTHING",
                    &username,
                    &key.key.public.as_slice(),
                    &encode(&key)
                )
                .await?;
                self.changed = true;
                WriteResult::Done
            }
            WriteOp::Session { hash, session } => {
                match session {
                    Some(s) => {
                        execute!(
                            self.tx,
                            "INSERT INTO sessions (hash, bytes) VALUES ($1, $2) \
                             ON CONFLICT (hash) DO UPDATE SET bytes = excluded.bytes",
                            &hash.as_slice(),
                            &encode(&s)
                        )
                        .await?
                    }
                    None => {
                        execute!(
                            self.tx,
                            "DELETE FROM sessions WHERE hash = $1",
                            &hash.as_slice()
                        )
                        .await?
                    }
                };
                WriteResult::Done
            }
            WriteOp::Purge {
                device,
                ranges,
                record,
            } => {
                super::super::check_purge_record(&device, &ranges, &record)?;
                self.append_access(&record, "purge record").await?;
                let Some(id) = self.nodes.get(device.as_str()).map(|r| r.id) else {
                    return Err(db_err(format!("no node {device} to purge")));
                };
                WriteResult::Purged(self.purge_reads(id, &ranges).await?)
            }
            WriteOp::PrunePlates => {
                self.flush().await?;
                // Ingests that have written reads finish first, and none
                // writes more until this commit ends: a plate read by
                // another hub in the meantime is never pruned.
                self.tx
                    .batch_execute("LOCK TABLE reads IN SHARE MODE")
                    .await
                    .map_err(pg_err)?;
                let gone = execute!(
                    self.tx,
                    "DELETE FROM plates p \
                     WHERE NOT EXISTS (SELECT 1 FROM reads r WHERE r.plate = p.plate)"
                )
                .await?;
                WriteResult::Purged(Purged {
                    plates: gone,
                    ..Purged::default()
                })
            }
            WriteOp::HubAlerts(found) => {
                self.hub_alerts(&found).await?;
                WriteResult::Done
            }
            WriteOp::HubDisposition { alert, disposition } => {
                let next: i64 = query!(
                    self.tx,
                    "SELECT coalesce(max(n) + 1, 0) FROM hub_dispositions WHERE alert = $1",
                    &alert
                )
                .await?
                .first()
                .map_or(0, |r| r.get(0));
                execute!(
                    self.tx,
                    "INSERT INTO hub_dispositions (alert, n, bytes) VALUES ($1, $2, $3)",
                    &alert,
                    &next,
                    &encode(&disposition)
                )
                .await?;
                WriteResult::Done
            }
            WriteOp::HubAccess(batch) => {
                for e in &batch {
                    self.append_access(e, "entry").await?;
                }
                WriteResult::Done
            }
        })
    }

    async fn ingest(
        &mut self,
        device: &DeviceId,
        batch: &[Verified],
        checkpoint: Option<SignedCheckpoint>,
        new_key: Option<&NewKey>,
        at: UnixMillis,
    ) -> Result<Result<Ingested, Refusal>, StoreError> {
        let rec = self.node(device)?.clone();
        let id = rec.id;
        let mut chain = Fetched::default();
        // What `decide` reads: the stored entries the batch overlaps
        // (the last one is the head it already knows), and with a
        // checkpoint, the kept one.
        let mut want: Vec<u64> = batch
            .iter()
            .map(Verified::seq)
            .filter(|s| s.saturating_add(1) < rec.next_seq)
            .collect();
        if checkpoint.is_some() {
            let kept = self.stored_checkpoint(id).await?;
            // The head the kept checkpoint names is checked too.
            if let Some(last) = kept.as_ref().and_then(|k| k.checkpoint.size.checked_sub(1)) {
                if last.saturating_add(1) < rec.next_seq {
                    want.push(last);
                }
            }
            chain.checkpoint = Some(kept);
        }
        let decision = loop {
            self.fetch_hashes(id, &want, &mut chain.hashes).await?;
            match decide(batch, checkpoint.as_ref(), rec.progress(), &mut chain) {
                Ok(d) => break d,
                Err(ChainError::Refused(r)) => return Ok(Err(r)),
                Err(ChainError::Storage(Need::Entry(seq))) => want = vec![seq],
                Err(ChainError::Storage(Need::Checkpoint)) => {
                    chain.checkpoint = Some(self.stored_checkpoint(id).await?);
                    want.clear();
                }
            }
        };
        let effect = match new_key {
            Some(n) => {
                let held = read::node_certs(&self.tx, id).await?;
                match new_key_effect(&held, n, batch, &decision.placement) {
                    Ok(effect) => effect,
                    Err(r) => return Ok(Err(r)),
                }
            }
            None => None,
        };
        let idc = id_col(id)?;
        if let Some(c) = effect {
            let from = c.effective_from.map(|f| col(f, "seq")).transpose()?;
            execute!(
                self.tx,
                "UPDATE node_certs SET effective_from = $3 WHERE node_id = $1 AND serial = $2",
                &idc,
                &c.serial,
                &from
            )
            .await?;
        }
        if let (true, Some(c)) = (decision.keep_checkpoint, &checkpoint) {
            execute!(
                self.tx,
                "INSERT INTO checkpoints (node_id, bytes) VALUES ($1, $2) \
                 ON CONFLICT (node_id) DO UPDATE SET bytes = excluded.bytes",
                &idc,
                &c.encode()
            )
            .await?;
        }
        let p = decision.placement;
        let appended = batch.len() - p.append_from;
        for v in batch.iter().skip(p.append_from) {
            self.add_entry(id, v).await?;
        }
        let rec = self.node(device)?;
        rec.next_seq = p.after.next_seq;
        rec.head = p.after.head;
        rec.duplicates += p.duplicates as u64;
        rec.last_contact = rec.last_contact.max(at);
        rec.reported_size = rec.reported_size.max(rec.next_seq);
        Ok(Ok(Ingested {
            progress: p.after,
            appended,
            duplicates: p.duplicates,
        }))
    }

    /// Fill `into` with the hashes of node `id`'s entries `seqs` (`None`:
    /// not stored), from this commit's rows or the table.
    async fn fetch_hashes(
        &self,
        id: u32,
        seqs: &[u64],
        into: &mut HashMap<u64, Option<Hash32>>,
    ) -> Result<(), StoreError> {
        let mut ask = Vec::new();
        for &s in seqs {
            if into.contains_key(&s) {
                continue;
            }
            match self.pending.by_key.get(&(id, s)) {
                Some((h, _)) => {
                    into.insert(s, Some(*h));
                }
                None => ask.push(col(s, "seq")?),
            }
        }
        if ask.is_empty() {
            return Ok(());
        }
        let rows = query!(
            self.tx,
            "SELECT seq, bytes FROM entries WHERE node_id = $1 AND seq = ANY($2)",
            &id_col(id)?,
            &ask
        )
        .await?;
        for &s in &ask {
            into.insert(uncol(s, "entries")?, None);
        }
        for row in rows {
            let seq = uncol(row.get(0), "entries")?;
            let e = super::sql::entry(row.get(1))?;
            into.insert(seq, Some(e.hash()));
        }
        Ok(())
    }

    async fn stored_checkpoint(&self, id: u32) -> Result<Option<SignedCheckpoint>, StoreError> {
        read::checkpoint_of(&self.tx, id).await
    }

    /// The bytes of node `id`'s entry `seq`, from this commit's rows or
    /// the table.
    async fn stored_entry(&self, id: u32, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some((_, i)) = self.pending.by_key.get(&(id, seq)) {
            return Ok(self.pending.bytes.get(*i).cloned());
        }
        Ok(query!(
            self.tx,
            "SELECT bytes FROM entries WHERE node_id = $1 AND seq = $2",
            &id_col(id)?,
            &col(seq, "seq")?
        )
        .await?
        .first()
        .map(|r| r.get(0)))
    }

    /// Gather an appended entry's rows: the entry, and its rows in the
    /// search, access and alert indexes.
    async fn add_entry(&mut self, id: u32, v: &Verified) -> Result<(), StoreError> {
        let idc = id_col(id)?;
        let seq = v.seq();
        let at = v.entry.header.captured_at;
        let p = &mut self.pending;
        p.by_key.insert((id, seq), (v.hash, p.bytes.len()));
        p.node_id.push(idc);
        p.seq.push(col(seq, "seq")?);
        p.captured_at.push(at_col(at));
        p.bytes.push(v.bytes.clone());
        if v.entry.access().is_some() {
            p.access.0.push(at_col(at));
            p.access.1.push(idc);
            p.access.2.push(col(seq, "seq")?);
        }
        if let Some(read) = v.entry.read() {
            let r = &mut p.reads;
            r.node_id.push(idc);
            r.seq.push(col(seq, "seq")?);
            r.captured_at.push(at_col(at));
            r.plate.push(read.plate.clone());
            match coordinates(&read.location) {
                Some((lat, lon)) => {
                    let cell = i32::try_from(geo_cell(lat, lon))
                        .map_err(|_| db_err("a geo cell out of range"))?;
                    r.cell.push(cell);
                    r.lat_e7.push(Some(lat));
                    r.lon_e7.push(Some(lon));
                }
                None => {
                    r.cell.push(UNPLACED);
                    r.lat_e7.push(None);
                    r.lon_e7.push(None);
                }
            }
            *self.hours.entry(at.0 / HOUR_MS).or_default() += 1;
            if !self.plates.contains(&read.plate) {
                self.plates.insert(read.plate.clone());
            }
        }
        self.index_alert(id, &v.entry).await
    }

    /// Index an alert or a disposition entry of node `id` (anything else
    /// is left alone). A disposition the stage rules refuse (a node's log
    /// is the node's word; the rules were checked there) is kept in the
    /// log and not counted here.
    async fn index_alert(&mut self, id: u32, e: &SignedEntry) -> Result<(), StoreError> {
        if let Some(r) = e.alert() {
            self.pending.alerts.insert(
                (id, e.seq()),
                AlertRow {
                    progress: Progress::default(),
                    covert: r.covert,
                    dispositions: Vec::new(),
                },
            );
        } else if let Some(d) = e.disposition() {
            let key = (id, d.alert_seq);
            if !self.pending.alerts.contains_key(&key) {
                let Some((progress, covert, dispositions)) =
                    read::alert_cols(&self.tx, id, d.alert_seq).await?
                else {
                    return Ok(());
                };
                let Some((progress, dispositions)) = read::decode_alert(&progress, &dispositions)
                else {
                    return Err(StoreError::Corrupt {
                        table: "alerts",
                        detail: format!("row of node {id}#{}", d.alert_seq),
                    });
                };
                self.pending.alerts.insert(
                    key,
                    AlertRow {
                        progress,
                        covert,
                        dispositions,
                    },
                );
            }
            if let Some(row) = self.pending.alerts.get_mut(&key) {
                if row.progress.apply(d.stage).is_ok() {
                    row.dispositions.push(e.seq());
                }
            }
        }
        Ok(())
    }

    /// Write the gathered rows, one statement per table.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let p = std::mem::take(&mut self.pending);
        if !p.bytes.is_empty() {
            execute!(
                self.tx,
                "INSERT INTO entries (node_id, seq, captured_at, bytes) \
                 SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], $4::bytea[])",
                &p.node_id,
                &p.seq,
                &p.captured_at,
                &p.bytes
            )
            .await?;
        }
        let r = &p.reads;
        if !r.seq.is_empty() {
            execute!(
                self.tx,
                "INSERT INTO reads (node_id, seq, captured_at, plate, cell, lat_e7, lon_e7) \
                 SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bigint[], $4::text[], \
                 $5::integer[], $6::integer[], $7::integer[])",
                &r.node_id,
                &r.seq,
                &r.captured_at,
                &r.plate,
                &r.cell,
                &r.lat_e7,
                &r.lon_e7
            )
            .await?;
        }
        if !p.access.0.is_empty() {
            execute!(
                self.tx,
                "INSERT INTO node_access (at, node_id, seq) \
                 SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[]) \
                 ON CONFLICT DO NOTHING",
                &p.access.0,
                &p.access.1,
                &p.access.2
            )
            .await?;
        }
        if !p.alerts.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((id, seq), row) in &p.alerts {
                cols.0.push(id_col(*id)?);
                cols.1.push(col(*seq, "seq")?);
                cols.2.push(row.progress.encode().to_vec());
                cols.3.push(row.covert);
                cols.4.push(row.dispositions_col());
            }
            execute!(
                self.tx,
                "INSERT INTO alerts (node_id, seq, progress, covert, dispositions) \
                 SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[], $4::boolean[], \
                 $5::bytea[]) \
                 ON CONFLICT (node_id, seq) DO UPDATE SET progress = excluded.progress, \
                 covert = excluded.covert, dispositions = excluded.dispositions",
                &cols.0,
                &cols.1,
                &cols.2,
                &cols.3,
                &cols.4
            )
            .await?;
        }
        Ok(())
    }

    /// Write what is left and commit.
    async fn finish(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        if !self.nodes.is_empty() {
            let mut names = Vec::new();
            let mut cols = NodeCols::default();
            for (name, rec) in &self.nodes {
                names.push(name.clone());
                cols.push(rec)?;
            }
            execute!(
                self.tx,
                "UPDATE nodes SET next_seq = u.next_seq, head = u.head, \
                 last_contact = u.last_contact, reported_size = u.reported_size, \
                 serial = u.serial, refusals = u.refusals, duplicates = u.duplicates, \
                 images = u.images \
                 FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[], \
                 $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) \
                 AS u(name, next_seq, head, last_contact, reported_size, serial, refusals, \
                 duplicates, images) \
                 WHERE nodes.name = u.name",
                &names,
                &cols.next_seq,
                &cols.head,
                &cols.last_contact,
                &cols.reported_size,
                &cols.serial,
                &cols.refusals,
                &cols.duplicates,
                &cols.images
            )
            .await?;
        }
        if !self.hours.is_empty() {
            let mut hours = Vec::new();
            let mut counts = Vec::new();
            for (h, n) in &self.hours {
                hours.push(col(*h, "hour")?);
                counts.push(col(*n, "count")?);
            }
            execute!(
                self.tx,
                "INSERT INTO read_hours (hour, n) SELECT * FROM unnest($1::bigint[], $2::bigint[]) \
                 ON CONFLICT (hour) DO UPDATE SET n = read_hours.n + excluded.n",
                &hours,
                &counts
            )
            .await?;
        }
        self.number_plates().await?;
        if self.changed {
            let value: i64 = query!(
                self.tx,
                "UPDATE meta SET value = value + 1 WHERE key = 'changes' RETURNING value"
            )
            .await?
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| db_err("the change counter is missing"))?;
            query!(
                self.tx,
                "SELECT pg_notify('alpr_changes', $1)",
                &value.to_string()
            )
            .await?;
        }
        self.tx.commit().await.map_err(pg_err)
    }

    /// Number the plates first seen in this commit, after every plate
    /// numbered before (the counter stays locked until the commit ends,
    /// so numbers become visible in order).
    async fn number_plates(&mut self) -> Result<(), StoreError> {
        if self.plates.is_empty() {
            return Ok(());
        }
        let plates: Vec<&String> = self.plates.iter().collect();
        let new = self.unknown_plates(&plates).await?;
        if new.is_empty() {
            return Ok(());
        }
        let next: i64 = query!(
            self.tx,
            "SELECT value FROM meta WHERE key = 'next-plate-ordinal' FOR UPDATE"
        )
        .await?
        .first()
        .map(|r| r.get(0))
        .ok_or_else(|| db_err("the plate counter is missing"))?;
        // Another hub may have numbered some while this one waited.
        let refs: Vec<&String> = new.iter().collect();
        let new = self.unknown_plates(&refs).await?;
        if new.is_empty() {
            return Ok(());
        }
        execute!(
            self.tx,
            "INSERT INTO plates (ordinal, plate) \
             SELECT $1 + o - 1, p FROM unnest($2::text[]) WITH ORDINALITY AS u(p, o)",
            &next,
            &new
        )
        .await?;
        let after = next + i64::try_from(new.len()).map_err(db_err)?;
        execute!(
            self.tx,
            "UPDATE meta SET value = $1 WHERE key = 'next-plate-ordinal'",
            &after
        )
        .await?;
        Ok(())
    }

    /// Which of `plates` (sorted) have no number yet, in order.
    async fn unknown_plates(&self, plates: &[&String]) -> Result<Vec<String>, StoreError> {
        let known: HashSet<String> = query!(
            self.tx,
            "SELECT plate FROM plates WHERE plate = ANY($1)",
            &plates
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        Ok(plates
            .iter()
            .filter(|p| !known.contains(p.as_str()))
            .map(|p| (*p).clone())
            .collect())
    }

    async fn refusal(&mut self, r: &RefusalRecord) -> Result<(), StoreError> {
        execute!(
            self.tx,
            "INSERT INTO refusals (at, bytes) VALUES ($1, $2)",
            &at_col(r.at),
            &encode(r)
        )
        .await?;
        if let Some(Ok(device)) = r.device.as_deref().map(DeviceId::new) {
            self.node(&device)?.refusals += 1;
        }
        Ok(())
    }

    /// Log an unauthenticated source's refusals; drop rows before
    /// `keep_after`, then the oldest beyond `max_rows`.
    async fn source_refusal(
        &mut self,
        record: &SourceRefusalRecord,
        keep_after: UnixMillis,
        max_rows: u64,
    ) -> Result<(), StoreError> {
        execute!(
            self.tx,
            "INSERT INTO source_refusals (at, bytes) VALUES ($1, $2)",
            &at_col(record.at),
            &encode(record)
        )
        .await?;
        execute!(
            self.tx,
            "DELETE FROM source_refusals WHERE at < $1",
            &at_col(keep_after)
        )
        .await?;
        execute!(
            self.tx,
            "DELETE FROM source_refusals WHERE id IN (SELECT id FROM source_refusals \
             ORDER BY at, id LIMIT greatest((SELECT count(*) FROM source_refusals) - $1, 0))",
            &super::sql::bound(max_rows)
        )
        .await?;
        Ok(())
    }

    /// Merge `doc` into the stored automerge document, so edits made
    /// through another hub process survive.
    async fn merge_doc(&mut self, which: Doc, doc: Vec<u8>) -> Result<(), StoreError> {
        let table = which.table();
        let stored = query!(
            self.tx,
            &format!("SELECT doc FROM {table} WHERE id = 1 FOR UPDATE")
        )
        .await?;
        let merged = match stored.first() {
            None => doc,
            Some(row) => which.merge(row.get(0), &doc)?,
        };
        execute!(
            self.tx,
            &format!(
                "INSERT INTO {table} (id, doc) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
            ),
            &merged
        )
        .await?;
        self.changed = true;
        Ok(())
    }

    /// Append `e` to the hub's access log; another hub process having
    /// appended first is a conflict (the writer resumes and re-signs).
    async fn append_access(&mut self, e: &SignedEntry, what: &str) -> Result<(), StoreError> {
        let (size, head) = match self.access_head {
            Some(h) => h,
            None => read::access_head(&self.tx).await?,
        };
        if e.seq() != size || e.header.prev != head {
            return Err(StoreError::Conflict(format!(
                "{what} {} does not extend the hub's access log of {size} entries",
                e.seq()
            )));
        }
        execute!(
            self.tx,
            "INSERT INTO hub_access (seq, bytes) VALUES ($1, $2)",
            &col(e.seq(), "seq")?,
            &e.encode()
        )
        .await?;
        self.access_head = Some((size + 1, e.hash()));
        Ok(())
    }

    async fn hub_alerts(&mut self, found: &[HubAlert]) -> Result<(), StoreError> {
        if found.is_empty() {
            return Ok(());
        }
        let last: i64 = query!(self.tx, "SELECT coalesce(max(n), 0) FROM hub_alerts")
            .await?
            .first()
            .map_or(0, |r| r.get(0));
        let numbers: Vec<i64> = (last + 1..).take(found.len()).collect();
        let bytes: Vec<Vec<u8>> = found.iter().map(encode).collect();
        execute!(
            self.tx,
            "INSERT INTO hub_alerts (n, bytes) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &numbers,
            &bytes
        )
        .await?;
        Ok(())
    }

    /// Purge the content of node `id`'s reads in `ranges` (see
    /// [`WriteOp::Purge`]).
    async fn purge_reads(
        &mut self,
        id: u32,
        ranges: &[alpr_shared::log::SeqRange],
    ) -> Result<Purged, StoreError> {
        self.flush().await?;
        let idc = id_col(id)?;
        let mut named = HashSet::new();
        let mut purged: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for r in ranges {
            let rows = query!(
                self.tx,
                "SELECT seq, bytes FROM entries WHERE node_id = $1 AND seq BETWEEN $2 AND $3",
                &idc,
                &super::sql::bound(r.first),
                &super::sql::bound(r.last)
            )
            .await?;
            for row in rows {
                let seq: i64 = row.get(0);
                if purged.contains_key(&seq) {
                    continue;
                }
                let mut e = super::sql::entry(row.get(1))?;
                let Some(read) = e.read().cloned() else {
                    continue;
                };
                named.extend(images_of(&read));
                e.purge_content();
                purged.insert(seq, e.encode());
            }
        }
        let (seqs, bytes): (Vec<i64>, Vec<Vec<u8>>) = purged.into_iter().unzip();
        if !seqs.is_empty() {
            execute!(
                self.tx,
                "UPDATE entries SET bytes = u.bytes \
                 FROM unnest($2::bigint[], $3::bytea[]) AS u(seq, bytes) \
                 WHERE entries.node_id = $1 AND entries.seq = u.seq",
                &idc,
                &seqs,
                &bytes
            )
            .await?;
            execute!(
                self.tx,
                "DELETE FROM reads WHERE node_id = $1 AND seq = ANY($2)",
                &idc,
                &seqs
            )
            .await?;
        }
        // Keep an image a neighbouring read still holding content names.
        for r in ranges {
            let rows = query!(
                self.tx,
                "SELECT bytes FROM entries WHERE node_id = $1 \
                 AND ((seq >= $2 AND seq < $3) OR (seq > $4 AND seq <= $5))",
                &idc,
                &super::sql::bound(r.first.saturating_sub(IMAGE_NEIGHBOURS)),
                &super::sql::bound(r.first),
                &super::sql::bound(r.last),
                &super::sql::bound(r.last.saturating_add(IMAGE_NEIGHBOURS))
            )
            .await?;
            for row in rows {
                if let Some(read) = super::sql::entry(row.get(0))?.read() {
                    for h in images_of(read) {
                        named.remove(&h);
                    }
                }
            }
        }
        let named: Vec<Vec<u8>> = named.into_iter().map(|h| h.0.to_vec()).collect();
        let images = if named.is_empty() {
            0
        } else {
            execute!(self.tx, "DELETE FROM images WHERE hash = ANY($1)", &named).await?
        };
        Ok(Purged {
            reads: seqs.len() as u64,
            images,
            plates: 0,
        })
    }
}

/// The `nodes` columns of a commit's node rows.
#[derive(Default)]
struct NodeCols {
    next_seq: Vec<i64>,
    head: Vec<Vec<u8>>,
    last_contact: Vec<i64>,
    reported_size: Vec<i64>,
    serial: Vec<String>,
    refusals: Vec<i64>,
    duplicates: Vec<i64>,
    images: Vec<i64>,
}

impl NodeCols {
    fn push(&mut self, rec: &NodeRecord) -> Result<(), StoreError> {
        self.next_seq.push(col(rec.next_seq, "seq")?);
        self.head.push(rec.head.0.to_vec());
        self.last_contact.push(at_col(rec.last_contact));
        self.reported_size
            .push(super::sql::bound(rec.reported_size));
        self.serial.push(rec.serial.clone());
        self.refusals.push(super::sql::bound(rec.refusals));
        self.duplicates.push(super::sql::bound(rec.duplicates));
        self.images.push(super::sql::bound(rec.images));
        Ok(())
    }
}

/// A signed loss moves the chain past the lost entries only from where
/// it stands (as the redb store does).
fn skip(
    rec: &mut NodeRecord,
    first: u64,
    last: u64,
    head: Hash32,
    at: UnixMillis,
) -> Result<Ingested, Refusal> {
    if last >= i64::MAX as u64 {
        // Refused alone: a value past the column's range must not fail
        // the commit of other nodes' batches.
        return Err(Refusal {
            code: RefusalCode::Gap,
            seq: Some(first),
            detail: format!("loss record up to {last} is beyond any log the hub keeps"),
        });
    }
    if rec.next_seq == first {
        rec.next_seq = last + 1;
        rec.head = head;
        rec.last_contact = rec.last_contact.max(at);
        rec.reported_size = rec.reported_size.max(rec.next_seq);
    } else if rec.next_seq <= last {
        return Err(Refusal {
            code: RefusalCode::Gap,
            seq: Some(first),
            detail: format!(
                "loss record starts at {first}; the hub holds up to {}",
                rec.next_seq
            ),
        });
    }
    Ok(Ingested {
        progress: rec.progress(),
        appended: 0,
        duplicates: 0,
    })
}

/// The automerge documents a write merges into.
#[derive(Debug, Clone, Copy)]
enum Doc {
    Holds,
    LocalEntries,
}

impl Doc {
    fn table(self) -> &'static str {
        match self {
            Doc::Holds => "holds",
            Doc::LocalEntries => "local_entries",
        }
    }

    /// `new` merged into `stored`, saved.
    fn merge(self, stored: &[u8], new: &[u8]) -> Result<Vec<u8>, StoreError> {
        let table = self.table();
        let bad = |which: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
            table,
            detail: format!("the {which} document: {e}"),
        };
        fn merged<D: ReplicatedDoc>(
            stored: &[u8],
            new: &[u8],
            bad: impl Fn(&str, &dyn std::fmt::Display) -> StoreError,
        ) -> Result<Vec<u8>, StoreError> {
            let mut doc = D::load(stored).map_err(|e| bad("stored", &e))?;
            doc.merge_bytes(new, UnixMillis::now())
                .map_err(|e| bad("new or merged", &e))?;
            Ok(doc.save())
        }
        match self {
            Doc::Holds => merged::<alpr_shared::control::holds_doc::HoldsDoc>(stored, new, bad),
            Doc::LocalEntries => {
                merged::<alpr_shared::hotlist::local::LocalEntriesDoc>(stored, new, bad)
            }
        }
    }
}
