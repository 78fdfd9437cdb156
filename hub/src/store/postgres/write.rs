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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alpr_shared::log::alert::Progress;
use alpr_shared::log::SignedCheckpoint;
use alpr_shared::sync::{decide, ChainError, ChainState, NewKey, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::Refusal;

use super::partition::{at_col, Month, Partitions};
use super::sql::{col, execute, id_col, node_row, query, uncol, NODE_COLUMNS, UNPLACED};
use super::{pg_err, read, PgStore};
use crate::store::rows::{coordinates, geo_cell, HOUR_MS};
use crate::store::{
    new_key_effect, HubStorage, Ingested, NodeLease, NodeRecord, StoreError, WriteOp, WriteResult,
};

impl HubStorage for PgStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let partitions = self.partitions.clone();
        self.run(move |c| async move { commit(c, &partitions, ops).await })
    }

    fn lease_node(&self, device: &DeviceId) -> Result<Option<NodeLease>, StoreError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the database runtime stopped".into()))?;
        self.leases.lease(rt, device)
    }

    fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.watch())
    }
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
pub(super) struct Pending {
    pub(super) node_id: Vec<i32>,
    pub(super) seq: Vec<i64>,
    pub(super) captured_at: Vec<i64>,
    pub(super) bytes: Vec<Vec<u8>>,
    /// (node id, seq) → (hash, index in the columns above).
    pub(super) by_key: HashMap<(u32, u64), (Hash32, usize)>,
    pub(super) reads: ReadRows,
    pub(super) access: (Vec<i64>, Vec<i32>, Vec<i64>),
    /// Alert rows made or changed, by (node id, alert seq).
    pub(super) alerts: BTreeMap<(u32, u64), AlertRow>,
}

#[derive(Default)]
pub(super) struct ReadRows {
    pub(super) node_id: Vec<i32>,
    pub(super) seq: Vec<i64>,
    pub(super) captured_at: Vec<i64>,
    pub(super) plate: Vec<String>,
    pub(super) cell: Vec<i32>,
    pub(super) lat_e7: Vec<Option<i32>>,
    pub(super) lon_e7: Vec<Option<i32>>,
}

/// An alert as indexed: its stage, whether covert, the node's
/// disposition entries.
#[derive(Debug, Clone)]
pub(super) struct AlertRow {
    pub(super) progress: Progress,
    pub(super) covert: bool,
    pub(super) dispositions: Vec<u64>,
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

pub(super) struct Commit<'a> {
    pub(super) tx: deadpool_postgres::Transaction<'a>,
    /// The locked rows of the nodes the ops name, as they will be written.
    pub(super) nodes: HashMap<String, NodeRecord>,
    pub(super) pending: Pending,
    /// Reads of this commit per hour of capture.
    pub(super) hours: BTreeMap<u64, u64>,
    /// Plates of this commit's reads.
    pub(super) plates: BTreeSet<String>,
    /// The hub's access log (size, head), once read under its lock.
    pub(super) access_head: Option<(u64, Hash32)>,
    /// A shared document changed: the change counter moves and the other
    /// hub processes are told.
    pub(super) changed: bool,
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

    pub(super) fn node(&mut self, device: &DeviceId) -> Result<&mut NodeRecord, StoreError> {
        self.nodes
            .get_mut(device.as_str())
            .ok_or_else(|| StoreError::Invalid(format!("the record of {device} vanished")))
    }

    /// One op, by the concern it belongs to.
    async fn apply(&mut self, op: WriteOp) -> Result<WriteResult, StoreError> {
        match op {
            WriteOp::Ingest {
                device,
                entries,
                checkpoint,
                new_key,
                at,
            } => Ok(WriteResult::Ingested(
                self.ingest(&device, &entries, checkpoint, new_key.as_ref(), at)
                    .await?,
            )),
            WriteOp::Contact {
                device,
                serial,
                cert_der,
                reported_size,
                at,
            } => {
                self.contact(&device, serial, cert_der, reported_size, at)
                    .await
            }
            WriteOp::Image {
                device,
                seq,
                hash,
                bytes,
            } => self.image(&device, seq, hash, bytes).await,
            WriteOp::Skip {
                device,
                first,
                last,
                head,
                at,
            } => self.skip(&device, first, last, head, at),
            WriteOp::Revoke(r) => self.revoke(r).await,
            WriteOp::Refusal(r) => self.refusal(&r).await.map(|()| WriteResult::Done),
            WriteOp::SourceRefusal {
                record,
                keep_after,
                max_rows,
            } => self
                .source_refusal(&record, keep_after, max_rows)
                .await
                .map(|()| WriteResult::Done),
            WriteOp::LoginFailure {
                keys,
                at,
                keep_after,
                max_rows,
            } => super::logins::failure(&self.tx, &keys, at, keep_after, max_rows)
                .await
                .map(|()| WriteResult::Done),
            WriteOp::LoginLock {
                key,
                until,
                at,
                max_rows,
            } => super::logins::lock(&self.tx, &key, until, at, max_rows)
                .await
                .map(|()| WriteResult::Done),
            WriteOp::LoginCleared { key } => super::logins::clear(&self.tx, &key)
                .await
                .map(|()| WriteResult::Done),
            WriteOp::GenerationFloor { source, number } => {
                self.generation_floor(source, number).await
            }
            WriteOp::Policy {
                version,
                encoded,
                seed,
            } => self.policy(version, encoded, seed).await,
            WriteOp::NodePolicy { device, version } => self.node_policy(device, version).await,
            WriteOp::NodeHotlists { device, held } => self.node_hotlists(device, held).await,
            WriteOp::Holds(doc) => self.holds(doc).await,
            WriteOp::LocalEntries(doc) => self.local_entries(doc).await,
            WriteOp::User(u) => self.user(u).await,
            WriteOp::UserKey { username, key } => self.user_key(username, key).await,
            WriteOp::Session { hash, session } => self.session(hash, session).await,
            WriteOp::Purge {
                device,
                ranges,
                record,
            } => self.purge(device, ranges, record).await,
            WriteOp::PrunePlates => self.prune_plates().await,
            WriteOp::HubAlerts(found) => self.hub_alerts(&found).await.map(|()| WriteResult::Done),
            WriteOp::HubDisposition { alert, disposition } => {
                self.hub_disposition(alert, disposition).await
            }
            WriteOp::HubAccess(batch) => {
                for e in &batch {
                    self.append_access(e, "entry").await?;
                }
                Ok(WriteResult::Done)
            }
        }
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
        Ok(Ok(self.node(device)?.placed(&p, appended, at)))
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
    pub(super) async fn stored_entry(
        &self,
        id: u32,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
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
                        .map_err(|_| StoreError::Invalid("a geo cell out of range".into()))?;
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

    /// Write the gathered rows, one statement per table.
    pub(super) async fn flush(&mut self) -> Result<(), StoreError> {
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
            super::changes::announce(&self.tx).await?;
        }
        self.tx.commit().await.map_err(pg_err)
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
