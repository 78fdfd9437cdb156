//! What the store keeps and answers, as the seam names it: node records,
//! certificates, refusals, the write ops a batch carries and their
//! results, index rows; the store's errors; and the few rules both
//! backends apply to them (a certificate's effect, a signed loss, a purge
//! record's shape).

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::sync::{NewKey, Placement, Progress, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::Refusal;
use serde::{Deserialize, Serialize};

/// Why a store call failed. Every kind displays as before (`database:
/// …`, `corrupt record in …`, `changed by another hub process: …`); the
/// variant says what failed, for a caller that must decide (retry, reopen,
/// refuse).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed: which one, how, and its message.
    #[error("database: {detail}")]
    Db {
        backend: Backend,
        kind: DbKind,
        detail: String,
    },
    /// The store cannot be used now: its database is being reopened after
    /// a failure, no connection can be had, or the thread that runs its
    /// calls stopped. A later call may succeed.
    #[error("database: {0}")]
    Unavailable(String),
    /// A write names something the store does not hold (a purge of a
    /// node it never knew).
    #[error("database: {0}")]
    NotFound(String),
    /// A write the store cannot keep as asked: a purge record that does
    /// not name the purged ranges, a number beyond its column's range,
    /// node ids exhausted.
    #[error("database: {0}")]
    Invalid(String),
    /// A call panicked inside the database, or while holding a lock the
    /// store needs (the message says which).
    #[error("database: {0}")]
    Panicked(String),
    #[error("corrupt record in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// Another hub process changed what this write builds on (the hub's
    /// access log moved on, a newer policy version was stored): reload
    /// from the store and try again.
    #[error("changed by another hub process: {0}")]
    Conflict(String),
}

/// The backend a [`StoreError::Db`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redb,
    Postgres,
}

/// What kind of failure a database reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// The disk under it failed (redb then refuses every operation until
    /// the file is reopened: [`super::recovering`]).
    Io,
    /// The database found its file corrupt.
    Corrupted,
    /// Anything else it refused or failed at (a transaction, a table, a
    /// commit, a query, a migration).
    Other,
}

impl StoreError {
    /// A failure `detail` of `backend`'s database, of `kind`.
    pub(crate) fn db(backend: Backend, kind: DbKind, detail: impl std::fmt::Display) -> Self {
        StoreError::Db {
            backend,
            kind,
            detail: detail.to_string(),
        }
    }
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

    /// A batch placed at `p` ([`alpr_shared::sync::place`]) at `at`, with
    /// `appended` of its entries stored: the chain moves where the
    /// placement says, and the batch is answered.
    pub(crate) fn placed(&mut self, p: &Placement, appended: usize, at: UnixMillis) -> Ingested {
        self.next_seq = p.after.next_seq;
        self.head = p.after.head;
        self.duplicates += p.duplicates as u64;
        self.last_contact = self.last_contact.max(at);
        self.reported_size = self.reported_size.max(self.next_seq);
        Ingested {
            progress: p.after,
            appended,
            duplicates: p.duplicates,
        }
    }

    /// The node signed that it lost entries `first..=last` of its log
    /// (`head`: the hash of `last`, [`WriteOp::Skip`]): the chain moves
    /// past them only from where it stands; one already past them is
    /// answered as it is; one short of `first` has a gap and is refused.
    pub(crate) fn skip(
        &mut self,
        first: u64,
        last: u64,
        head: Hash32,
        at: UnixMillis,
    ) -> Result<Ingested, Refusal> {
        if self.next_seq == first {
            self.next_seq = last + 1;
            self.head = head;
            self.last_contact = self.last_contact.max(at);
            self.reported_size = self.reported_size.max(self.next_seq);
        } else if self.next_seq <= last {
            return Err(Refusal {
                code: alpr_shared::wire::RefusalCode::Gap,
                seq: Some(first),
                detail: format!(
                    "loss record starts at {first}; the hub holds up to {}",
                    self.next_seq
                ),
            });
        }
        Ok(Ingested {
            progress: self.progress(),
            appended: 0,
            duplicates: 0,
        })
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
/// by when they were first seen ([`super::ChainStore::certificates`]' order).
pub(crate) fn in_effect_order(certs: &mut [NodeCert]) {
    certs.sort_by_key(|c| (c.effective_from.is_none(), c.effective_from, c.first_seen));
}

/// The record of `new` to write when a batch appends entries it signed,
/// by the rule of [`alpr_shared::sync::new_key_effect`] (keys only move
/// forward), over the certificates a store keeps; `None` if it does not
/// change.
pub(crate) fn new_key_effect(
    certs: &[NodeCert],
    new: &NewKey,
    batch: &[Verified],
    placement: &alpr_shared::sync::Placement,
) -> Result<Option<NodeCert>, Refusal> {
    let held: Vec<alpr_shared::sync::HeldKey<'_>> = certs
        .iter()
        .map(|c| alpr_shared::sync::HeldKey {
            serial: &c.serial,
            effective_from: c.effective_from,
        })
        .collect();
    let Some(from) = alpr_shared::sync::new_key_effect(&held, new, batch, placement)? else {
        return Ok(None);
    };
    Ok(certs
        .iter()
        .find(|c| c.serial == new.serial)
        .map(|c| NodeCert {
            effective_from: Some(from),
            ..c.clone()
        }))
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
    User(crate::store::UserRecord),
    /// Keep a signing key of a user ([`crate::store::UserKey`]): every key
    /// a user has had is kept, by its public key; one kept already is
    /// left as it is.
    UserKey {
        username: String,
        key: crate::store::UserKey,
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
        session: Option<crate::store::SessionRecord>,
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
    /// number goes past it ([`super::HotlistStore::generation_floor`]). The larger
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
        return Err(StoreError::Invalid(
            "a purge must carry a node purge record".into(),
        ));
    };
    if node != device || recorded.as_slice() != ranges {
        return Err(StoreError::Invalid(
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

/// What [`super::SearchStore::reads_in_box`] found.
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

/// Images the hub lacks for a device's reads ([`super::ImageStore::missing_images`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingImages {
    /// (entry seq, image hash), in log order.
    pub images: Vec<(u64, Hash32)>,
    /// The search stopped before this sequence number.
    pub scanned_to: u64,
}
