//! The hub's storage seam. Everything the hub keeps goes through
//! [`HubStorage`]; [`redb::RedbStore`] is the embedded implementation, and a
//! deployment that outgrows one machine implements the same trait over a
//! distributed database.
//!
//! Writes arrive in batches from the single writer ([`crate::ingest`]): one
//! call to [`HubStorage::commit`] is one durable transaction.
//!
//! [`postgres::PgStore`] keeps the same records in PostgreSQL, where
//! several hub processes share one database: a node's chain has one writer
//! at a time ([`HubStorage::lease_node`]), and changes one process makes to
//! the shared documents reach the others ([`HubStorage::watch_changes`]).

pub mod check;
pub mod cli;
#[cfg(test)]
mod contract;
pub mod postgres;
pub mod recovering;
pub mod redb;

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::sync::{NewKey, Progress, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::Refusal;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt record in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// Another hub process changed what this write builds on (the hub's
    /// access log moved on, a newer policy version was stored): reload
    /// from the store and try again.
    #[error("changed by another hub process: {0}")]
    Conflict(String),
}

/// A hub process's exclusive right to place a node's entries: held while
/// the node is connected to it, released when dropped. With a shared
/// database the lease is a lock in the database, which also ends when the
/// holding process dies or loses its connection: then [`NodeLease::lost`]
/// fires and the process must drop the node's connection (the node
/// reconnects, to it or another).
pub struct NodeLease {
    lost: tokio_util::sync::CancellationToken,
    _release: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLease")
            .field("lost", &self.lost.is_cancelled())
            .finish()
    }
}

impl NodeLease {
    /// A lease in a store only one process opens (redb holds its file
    /// locked): never lost.
    pub fn local() -> Self {
        NodeLease {
            lost: tokio_util::sync::CancellationToken::new(),
            _release: None,
        }
    }

    /// A lease that is released when `release` is dropped and is lost
    /// when `lost` is cancelled.
    pub fn new(lost: tokio_util::sync::CancellationToken, release: Box<dyn Send + Sync>) -> Self {
        NodeLease {
            lost,
            _release: Some(release),
        }
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

/// What the hub knows of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Short numeric id used in keys.
    pub id: u32,
    pub next_seq: u64,
    pub head: Hash32,
    pub last_contact: UnixMillis,
    /// Log size the node reported at its last hello.
    pub reported_size: u64,
    pub serial: String,
    pub refusals: u64,
    pub duplicates: u64,
    pub images: u64,
}

impl NodeRecord {
    pub fn progress(&self) -> Progress {
        Progress {
            next_seq: self.next_seq,
            head: self.head,
        }
    }

    /// Entries the node has that the hub does not (as of its last hello or
    /// what was uploaded since).
    pub fn backlog(&self) -> u64 {
        self.reported_size.saturating_sub(self.next_seq)
    }
}

/// A refusal as logged: who, from where, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    pub at: UnixMillis,
    /// The node's name, when its certificate could be read.
    pub device: Option<String>,
    pub peer: String,
    pub code: String,
    pub seq: Option<u64>,
    pub detail: String,
}

/// Refusals of one unauthenticated source (an address that never proved an
/// enrolled identity), aggregated: one row stands for `count` refusals
/// since the source's previous row. Kept apart from nodes' refusals, so a
/// flood of bad handshakes never pushes a node's refusal out of sight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRefusalRecord {
    pub at: UnixMillis,
    /// The source's IP address, or `*` for sources beyond the hub's cap.
    pub source: String,
    /// The kind of the latest refusal (a refusal code or a limit).
    pub code: String,
    /// Refusals of this source since its previous row, this one included.
    pub count: u64,
    /// The latest refusal's reason.
    pub detail: String,
}

/// A certificate a node has held, as the hub keeps it (every one, by node
/// and serial: a renewal never replaces the history of the one before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    /// Serial number as lower-case hex without separators.
    pub serial: String,
    pub der: Vec<u8>,
    /// When the node first connected with it.
    pub first_seen: UnixMillis,
    /// The first sequence number signed with this certificate's key, once
    /// the node has proved it extends the same log; `None` while pending
    /// (the certificate then vouches for nothing).
    pub effective_from: Option<u64>,
}

/// The bulk lists a node holds: (source, generation).
pub type NodeLists = Vec<(String, u64)>;

/// A node's certificates in the order they took effect, pending ones last
/// by when they were first seen ([`HubStorage::certificates`]' order).
pub(crate) fn in_effect_order(certs: &mut [NodeCert]) {
    certs.sort_by_key(|c| (c.effective_from.is_none(), c.effective_from, c.first_seen));
}

/// One write, batched with others into a transaction.
#[derive(Debug)]
pub enum WriteOp {
    /// Place verified entries on the device's chain.
    Ingest {
        device: DeviceId,
        entries: Vec<Verified>,
        /// The node's checkpoint at the end of `entries`, checked against
        /// them; kept if it extends the stored one, refused if it conflicts.
        checkpoint: Option<SignedCheckpoint>,
        /// The node's pending certificate signed entries of this batch: it
        /// takes effect at the first of them appended.
        new_key: Option<NewKey>,
        at: UnixMillis,
    },
    /// A node said hello, authenticated by `cert_der` (kept as pending if
    /// new: it replaces nothing).
    Contact {
        device: DeviceId,
        serial: String,
        cert_der: Vec<u8>,
        reported_size: u64,
        at: UnixMillis,
    },
    /// Store an image named by entry `seq` of `device`.
    Image {
        device: DeviceId,
        seq: u64,
        hash: Hash32,
        bytes: Vec<u8>,
    },
    /// Log a refusal.
    Refusal(RefusalRecord),
    /// The node signed that it lost entries `first..=last` of its own log
    /// (`head`: the hash of `last`): if the stored chain stands at `first`,
    /// it moves past them; the entries after link to `head`
    /// ([`alpr_shared::log::loss`]). Answered as an ingest.
    Skip {
        device: DeviceId,
        first: u64,
        last: u64,
        head: Hash32,
        at: UnixMillis,
    },
    /// Record a revocation (the earliest effective time recorded wins).
    Revoke(alpr_shared::cert::Revocation),
    /// Store a new version of the hub's signed policy (encoded
    /// [`alpr_shared::control::SignedPolicy`]); every version is kept. It
    /// must be newer than the latest stored, or the commit fails.
    /// `seed`: the hash of the `[policy]` configuration it was made from,
    /// when it was (the hub makes a new version when that file changes).
    Policy {
        version: u64,
        encoded: Vec<u8>,
        seed: Option<Hash32>,
    },
    /// The policy version a node holds or enforces, as it last said.
    NodePolicy { device: DeviceId, version: u64 },
    /// The bulk lists a node holds, (source, generation), as it last said.
    NodeHotlists {
        device: DeviceId,
        held: Vec<(String, u64)>,
    },
    /// Append entries to the hub's own access log ([`crate::access`]), in
    /// order: each must be the log's next entry, or the commit fails.
    HubAccess(Vec<alpr_shared::log::SignedEntry>),
    /// Past matches found at the hub ([`crate::alerts::back_match`]):
    /// appended to `hub-alerts-v1`, numbered from 1.
    HubAlerts(Vec<HubAlert>),
    /// A disposition stage recorded at the hub ([`crate::api::alerts`])
    /// for the alert `alert` (`node#seq` or `hub#N`): appended to
    /// `hub-dispositions-v1` after that alert's others.
    HubDisposition {
        alert: String,
        disposition: HubDisposition,
    },
    /// Retention at the hub ([`crate::retention`]): delete the content and
    /// salt of `device`'s reads in `ranges` (each entry rewritten without
    /// its body), their search-index rows, and the images no read still
    /// holding content names; append `record` — the hub-signed
    /// [`alpr_shared::log::EntryKind::NodePurge`] naming exactly these
    /// ranges — to the hub's own log, in the same transaction. Reads
    /// already purged are skipped. Answered with [`WriteResult::Purged`].
    Purge {
        device: DeviceId,
        ranges: Vec<alpr_shared::log::SeqRange>,
        record: Box<alpr_shared::log::SignedEntry>,
    },
    /// Drop from `plate-order-v1` every plate no read in `plate-time-v1`
    /// names any more (after purges), so no purged plate stays listed.
    /// Answered with [`WriteResult::Purged`] (`plates` set).
    PrunePlates,
    /// Create or replace a user account ([`crate::users`]).
    User(crate::users::UserRecord),
    /// Keep a signing key of a user ([`crate::users::UserKey`]): every key
    /// a user has had is kept, by its public key; one kept already is
    /// left as it is.
    UserKey {
        username: String,
        key: crate::users::UserKey,
    },
    /// Replace the saved legal holds document ([`crate::holds`]; a saved
    /// [`alpr_shared::control::holds_doc::HoldsDoc`]).
    Holds(Vec<u8>),
    /// Replace the saved local hotlist entries document
    /// ([`crate::hotlist::local`]; a saved
    /// [`alpr_shared::hotlist::local::LocalEntriesDoc`]).
    LocalEntries(Vec<u8>),
    /// Keep a session under the SHA-256 of its token, or end it (`None`).
    Session {
        hash: [u8; 32],
        session: Option<crate::users::SessionRecord>,
    },
    /// Log an unauthenticated source's aggregated refusals, and prune
    /// that table: rows before `keep_after` go, and the oldest beyond
    /// `max_rows`.
    SourceRefusal {
        record: SourceRefusalRecord,
        keep_after: UnixMillis,
        max_rows: u64,
    },
    /// A failed login ([`crate::users`]' throttle), counted against each
    /// of `keys` (a username, a source address) at `at`; then failures
    /// before `keep_after` go, and the oldest beyond `max_rows`.
    LoginFailure {
        keys: Vec<String>,
        at: UnixMillis,
        keep_after: UnixMillis,
        max_rows: u64,
    },
    /// Lock `key` until `until` (a later lock already kept stays) and
    /// forget its failures; then locks that ended by `at` go, and the
    /// soonest to end beyond `max_rows`.
    LoginLock {
        key: String,
        until: UnixMillis,
        at: UnixMillis,
        max_rows: u64,
    },
    /// Forget `key`'s failures (a login succeeded).
    LoginCleared { key: String },
    /// Generation `number` of the bulk list `source` was signed by this
    /// hub once, and it no longer knows it (a node showed its signed
    /// header after the hub was restored from a backup): the list's next
    /// number goes past it ([`HubStorage::generation_floor`]). The larger
    /// of this and the number kept stays.
    GenerationFloor { source: String, number: u64 },
}

/// The result of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Ingested(Result<Ingested, Refusal>),
    /// Whether the image was stored (false: no such entry names it).
    Image(bool),
    /// What a [`WriteOp::Purge`] or [`WriteOp::PrunePlates`] deleted.
    Purged(Purged),
    Done,
}

/// What one purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub reads: u64,
    pub images: u64,
    pub plates: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub progress: Progress,
    pub appended: usize,
    pub duplicates: usize,
}

/// The hub's storage.
pub trait HubStorage: Send + Sync + 'static {
    /// Apply all ops in one durable transaction; results in order.
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError>;
    /// Take the right to place `device`'s entries, for as long as the
    /// lease is held; `None` while another hub process holds it.
    fn lease_node(&self, device: &DeviceId) -> Result<Option<NodeLease>, StoreError> {
        let _ = device;
        Ok(Some(NodeLease::local()))
    }
    /// A counter that moves whenever another process may have changed the
    /// shared documents (policy, holds, local entries, hotlist
    /// generations, users); `None` where no other process writes (redb).
    fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// A node's record, if it ever connected.
    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError>;
    /// All nodes, by name.
    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError>;
    /// The latest checkpoint the node signed and the hub checked.
    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError>;
    /// The certificate (DER) in force for the node's latest entries (or,
    /// before any took effect, the one most recently seen).
    fn certificate(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        let certs = self.certificates(device)?;
        let latest = certs
            .iter()
            .rfind(|c| c.effective_from.is_some())
            .or_else(|| certs.iter().max_by_key(|c| c.first_seen));
        Ok(latest.map(|c| c.der.clone()))
    }
    /// Every certificate the node has held, oldest first. (No default:
    /// a wrapper that forgot to forward it would serve a wrong history.)
    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError>;
    /// Revocations recorded at the hub, with the time each took effect.
    fn revocations(&self) -> Result<Vec<alpr_shared::cert::Revocation>, StoreError>;
    /// Canonical bytes of a device's entries from `first`, at most `limit`.
    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The most recent refusals, newest last.
    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError>;
    /// The most recent refusals of unauthenticated sources, newest last.
    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError>;
    /// (device, seq) of reads of `plate` captured in [from, to].
    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError>;
    /// Distinct plates of stored reads in the order they were first seen,
    /// from ordinal `first` (ordinals are 0, 1, 2, … with no gaps), at most
    /// `limit`: a search index loads them once, then only what is new.
    fn plates_from(&self, first: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError>;
    /// How many stored reads carry `plate` (0 if none).
    fn plate_count(&self, plate: &str) -> Result<u64, StoreError>;
    /// Reads of any of `plates` captured in [from, to], at most `limit`,
    /// plate by plate, each plate's in time order (one range scan each).
    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<IndexedRead>, StoreError>;
    /// Reads captured in [from, to] (of `node` only, if given) whose
    /// coordinates lie in the index cells covering `area`, at most `limit`;
    /// and how many reads of that window (and node) carry no coordinates
    /// (with `list_unplaced`, which: at most `limit`).
    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        limit: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError>;
    /// Canonical bytes of the given entries (`None`: not stored), in order,
    /// read in one transaction.
    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Canonical bytes of the entries of reads found through an index
    /// (`None`: not stored), in order. The capture time lets a store whose
    /// entries are partitioned by it look in one partition.
    fn entries_of_reads(&self, reads: &[IndexedRead]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let at: Vec<(DeviceId, u64)> = reads.iter().map(|r| (r.device.clone(), r.seq)).collect();
        self.entries_at(&at)
    }
    /// Every certificate of each of `devices` ([`HubStorage::certificates`]),
    /// in order, in one question where the store can.
    fn certificates_of(&self, devices: &[DeviceId]) -> Result<Vec<Vec<NodeCert>>, StoreError> {
        devices.iter().map(|d| self.certificates(d)).collect()
    }
    /// Whether each image is held ([`HubStorage::has_image`]), in order.
    fn images_held(&self, hashes: &[Hash32]) -> Result<Vec<bool>, StoreError> {
        hashes.iter().map(|h| self.has_image(h)).collect()
    }
    /// An image's bytes, if held.
    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Canonical bytes of the hub's own access log from `first`, at most
    /// `limit` ([`crate::access`]).
    fn hub_access_entries(&self, first: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The hub's access log: its size and the hash of its last entry.
    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError>;
    /// The latest signed policy (encoded [`alpr_shared::control::SignedPolicy`]).
    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The hash of the `[policy]` configuration the latest version made
    /// from the configuration was made from.
    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError>;
    /// The policy version each node last said it holds or enforces.
    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError>;
    /// The bulk lists each node last said it holds.
    fn node_hotlists(&self) -> Result<Vec<(DeviceId, NodeLists)>, StoreError>;
    /// A user account by username ([`crate::users`]).
    fn user(&self, username: &str) -> Result<Option<crate::users::UserRecord>, StoreError>;
    /// The saved legal holds document ([`crate::holds`]), if any.
    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The saved local hotlist entries document
    /// ([`crate::hotlist::local`]), if any.
    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every user account, by username.
    fn users(&self) -> Result<Vec<crate::users::UserRecord>, StoreError>;
    /// Every signing key of every user ([`WriteOp::UserKey`]), as
    /// (username, key), by username.
    fn user_keys(&self) -> Result<Vec<(String, crate::users::UserKey)>, StoreError>;
    /// The session kept under the SHA-256 of its token.
    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::users::SessionRecord>, StoreError>;
    /// Failed logins counted against `key` at or after `since`
    /// ([`WriteOp::LoginFailure`]).
    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError>;
    /// When `key`'s lock ends, if one is kept (it may have ended).
    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError>;
    /// Reads stored per hour of capture (hour = captured_at / 3 600 000),
    /// for hours `first..=last` that have any: (hour, reads). Counted at
    /// ingest; a purge does not lower them.
    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Access entries of nodes (`EntryKind::Access` in their logs) whose
    /// time is in [from, to], as (node, seq) in time order, at most `limit`
    /// (index `node-access-v1`, written at ingest).
    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError>;
    /// Keep generation `number` of the bulk list `source` ([`crate::hotlist`]):
    /// its signed bytes and its import record, in one durable transaction;
    /// then drop that source's generation bytes older than the last `keep`
    /// (import records stay: they are the list's history).
    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError>;
    /// The signed bytes of generation `number` of `source`, if still kept.
    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every import record of `source`, by generation number, and whether
    /// that generation's bytes are still kept.
    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError>;
    /// The highest generation number of `source` learned from a node
    /// ([`WriteOp::GenerationFloor`]); 0 if none.
    fn generation_floor(&self, source: &str) -> Result<u64, StoreError>;
    /// Whether an image is held.
    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError>;
    /// Alerts raised in nodes' logs (of `node` only, if given), by node
    /// then sequence, at most `limit` (index `alerts-v1`, written at
    /// ingest with each disposition stage).
    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<AlertIndexRow>, StoreError>;
    /// Past matches the hub found, newest first, at most `limit`: (number,
    /// alert).
    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, HubAlert)>, StoreError>;
    /// Disposition stages recorded at the hub, in the order recorded, as
    /// (alert id, stage): of the alert `alert` (`node#seq` or `hub#N`)
    /// only, if given; else of every alert.
    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError>;
    /// One alert of a node's log, if indexed.
    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError>;
    /// Images named by the device's reads `from..to` (content held) that the
    /// hub lacks, in log order, at most `limit`; and where the search
    /// stopped (`to`, or the entry after the last one looked at when the
    /// list filled up). An empty image names nothing to store.
    fn missing_images(
        &self,
        device: &DeviceId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<MissingImages, StoreError> {
        const PAGE: usize = 1024;
        let none = alpr_shared::crypto::sha256(&[]);
        let mut out = MissingImages {
            images: Vec::new(),
            scanned_to: to,
        };
        let mut next = from;
        while next < to {
            let page = self.entries(device, next, PAGE)?;
            let full = page.len() == PAGE;
            let entries = page
                .iter()
                .map(|b| {
                    alpr_shared::log::SignedEntry::decode(b).map_err(|e| StoreError::Corrupt {
                        table: "entries",
                        detail: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The page's images asked about at once, not one by one.
            let named: Vec<Hash32> = entries
                .iter()
                .filter_map(|e| e.read())
                .flat_map(|r| [r.crop_hash, r.overview_hash])
                .collect();
            let held: std::collections::HashSet<Hash32> = named
                .iter()
                .zip(self.images_held(&named)?)
                .filter_map(|(h, held)| held.then_some(*h))
                .collect();
            for e in &entries {
                let seq = e.seq();
                if seq >= to {
                    return Ok(out);
                }
                next = seq + 1;
                let Some(r) = e.read() else { continue };
                if out.images.len() + 2 > limit {
                    out.scanned_to = seq;
                    return Ok(out);
                }
                let mut hashes = vec![r.crop_hash];
                if r.overview_hash != r.crop_hash {
                    hashes.push(r.overview_hash);
                }
                for h in hashes {
                    if h != none && !held.contains(&h) {
                        out.images.push((seq, h));
                    }
                }
            }
            if entries.is_empty() || !full {
                break;
            }
        }
        Ok(out)
    }
}

/// A [`WriteOp::Purge`]'s record must be a node purge naming exactly the
/// node and ranges purged (either backend refuses the commit otherwise).
pub(crate) fn check_purge_record(
    device: &DeviceId,
    ranges: &[alpr_shared::log::SeqRange],
    record: &alpr_shared::log::SignedEntry,
) -> Result<(), StoreError> {
    let alpr_shared::log::EntryKind::NodePurge {
        node,
        ranges: recorded,
        ..
    } = &record.header.kind
    else {
        return Err(StoreError::Db(
            "a purge must carry a node purge record".into(),
        ));
    };
    if node != device || recorded.as_slice() != ranges {
        return Err(StoreError::Db(
            "the purge record does not name the purged ranges".into(),
        ));
    }
    Ok(())
}

/// A past match the hub found in the reads it holds (a new entry matched
/// a read stored before it). Not in any node's log: the hub's access log
/// holds the system's access that found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubAlert {
    /// The node whose read matched.
    pub node: DeviceId,
    pub at: UnixMillis,
    /// `record.read_seq` is the read's seq in `node`'s log.
    pub record: alpr_shared::log::AlertRecord,
}

/// A disposition stage a dispatcher or supervisor recorded at the hub. It
/// is signed through the hub's access log: the access record
/// (`alert-disposition`) naming the alert and the stage was made durable
/// before it was stored, at `access_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubDisposition {
    pub at: UnixMillis,
    pub stage: alpr_shared::log::alert::Stage,
    pub user: String,
    pub agency: String,
    pub note: String,
    /// The access record's sequence number in the hub's access log.
    pub access_seq: u64,
}

/// An alert as the hub indexes it; its record and dispositions are
/// entries of the node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertIndexRow {
    pub node: DeviceId,
    /// The alert entry's sequence number in the node's log.
    pub seq: u64,
    pub progress: alpr_shared::log::alert::Progress,
    pub covert: bool,
    /// The node's disposition entries, in order.
    pub dispositions: Vec<u64>,
}

/// A read found through an index: which entry, and when it was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedRead {
    pub device: DeviceId,
    pub seq: u64,
    pub captured_at: UnixMillis,
}

/// A read found through the place index, with the coordinates it carries
/// (measured or configured; degrees × 10⁷).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedRead {
    pub read: IndexedRead,
    pub lat_e7: i32,
    pub lon_e7: i32,
}

/// A rectangle of latitude and longitude (degrees × 10⁷, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoBox {
    pub lat_min_e7: i32,
    pub lat_max_e7: i32,
    pub lon_min_e7: i32,
    pub lon_max_e7: i32,
}

/// What [`HubStorage::reads_in_box`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedReads {
    /// Reads whose coordinates fall in the box's index cells (a superset
    /// of the box: the caller filters by exact distance).
    pub placed: Vec<PlacedRead>,
    /// Reads in the time window that carry no coordinates (a site or an
    /// unknown position): they cannot be placed in any canvass.
    pub unplaced: u64,
    /// Those reads, when asked for (at most the limit).
    pub unplaced_reads: Vec<IndexedRead>,
    /// False when `limit` stopped the scan: more reads lie in the cells
    /// (or, when listed, more unplaced reads).
    pub complete: bool,
}

/// Images the hub lacks for a device's reads ([`HubStorage::missing_images`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingImages {
    /// (entry seq, image hash), in log order.
    pub images: Vec<(u64, Hash32)>,
    /// The search stopped before this sequence number.
    pub scanned_to: u64,
}
