//! The hub's own access log (§1798.90.52): every access a person makes
//! through the hub — login, search, view, export, audit query — is sealed
//! into a log signed with the hub's log key (certified by the CA for that
//! purpose alone), in the same format and chain rules
//! as a node's read log, and committed durably before the access returns
//! any data. Edges keep theirs in their own logs and sync it with their
//! reads; `hub audit verify` and `hub verify` check both with one verifier.
//!
//! [`AccessLog`] is an actor: one thread owns the [`LogWriter`], takes
//! records from a bounded queue, seals everything waiting into one
//! transaction (group commit) and answers each caller once it is durable.
//! If the commit fails, the writer rewinds and every caller of that batch
//! gets the error: the access is refused, nothing is returned.
//!
//! Several hub processes on one database append to one access log, so they
//! share one log key; a hub whose log key did not sign the stored log's
//! last entry refuses to start ([`AccessLog::start`]) rather than extend a
//! chain nobody could verify. A
//! commit whose entries do not extend the stored head fails with
//! [`StoreError::Conflict`] (another process appended first), and the
//! writer resumes from the stored head and seals the batch again, so the
//! processes' accesses interleave in one valid chain.
//!
//! Retention may run in several processes at once: each signs purge
//! records for what it found due. Reads already purged are skipped by the
//! store, so two runs that meet delete nothing twice; the later one's
//! record names reads that were already purged (it deleted none), and
//! `hub audit` shows both records.

use std::sync::Arc;

use alpr_shared::log::{AccessRecord, LogWriter, SeqRange, SignedEntry};
use alpr_shared::signer::{HubKey, LogSigning};
use alpr_shared::types::{DeviceId, TimeSource, UnixMillis};
use tokio::sync::{mpsc, oneshot};

use crate::store::{HubStorage, Purged, StoreError, WriteOp, WriteResult};

/// Records waiting to be sealed, at most; callers beyond it wait.
const QUEUE: usize = 1024;
/// Most records sealed into one transaction.
const MAX_BATCH: usize = 256;
/// Tries of one batch while other hub processes keep moving the log on.
const CONFLICT_TRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the access log could not be written, so the access is refused: {0}")]
    Store(#[from] StoreError),
    #[error("the access record is invalid: {0}")]
    Invalid(#[from] alpr_shared::types::InvalidValue),
    #[error("the access log has stopped")]
    Stopped,
    #[error(
        "the hub's access log ({size} entries) ends in an entry its log key did not sign: hubs \
         on one database share one log key, and a log signed with the hub's TLS key before it \
         had a key per purpose cannot be continued (verify and keep it with the version that \
         wrote it, then start on a new data directory)"
    )]
    ForeignHead { size: u64 },
    #[error("the log key's certificate names {0:?}, not a log name")]
    BadName(String),
}

type Reply<T> = oneshot::Sender<Result<T, AccessError>>;

enum Job {
    Access(AccessRecord, Reply<SignedEntry>),
    /// Retention: sign a [`alpr_shared::log::EntryKind::NodePurge`] and
    /// commit it with the purge it records ([`WriteOp::Purge`]).
    Purge {
        device: DeviceId,
        ranges: Vec<SeqRange>,
        reason: String,
        at: UnixMillis,
        reply: Reply<(SignedEntry, Purged)>,
    },
}

/// A handle to the hub's access log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Job>,
    device: DeviceId,
}

impl AccessLog {
    /// Resume the hub's access log from `storage` and start its writer
    /// thread; entries are signed by the hub's log key under its
    /// certificate's common name. The stored log's last entry must be that
    /// key's. The thread ends when every handle is gone.
    pub fn start(
        storage: Arc<dyn HubStorage>,
        key: HubKey<LogSigning>,
    ) -> Result<Self, AccessError> {
        let name = key.cert().name.clone();
        let device = DeviceId::new(&name).map_err(|_| AccessError::BadName(name))?;
        let (key, _) = key.into_log_key();
        let (size, head) = storage.hub_access_head()?;
        if size > 0 {
            let last = storage.hub_access_entries(size - 1, 1)?;
            let signed = last
                .first()
                .and_then(|b| SignedEntry::decode(b).ok())
                .is_some_and(|e| e.signature_valid(&key.public()));
            if !signed {
                return Err(AccessError::ForeignHead { size });
            }
        }
        let writer = LogWriter::resume(key, device.clone(), size, head);
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(storage, writer, rx))
            .map_err(|e| StoreError::Unavailable(format!("starting the access-log writer: {e}")))?;
        Ok(AccessLog { tx, device })
    }

    /// The name the hub's access entries are signed under.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Seal `record` and commit it durably; only then may the caller
    /// return the data the access asked for.
    pub async fn record(&self, record: AccessRecord) -> Result<SignedEntry, AccessError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Access(record, reply))
            .await
            .map_err(|_| AccessError::Stopped)?;
        answer.await.map_err(|_| AccessError::Stopped)?
    }

    /// Purge the content of `device`'s reads in `ranges` (at most
    /// [`alpr_shared::log::MAX_PURGE_RANGES`]) and record it, in one
    /// durable step, with a purge record in this log signed by the hub,
    /// dated `at`.
    pub async fn purge(
        &self,
        device: DeviceId,
        ranges: Vec<SeqRange>,
        reason: &str,
        at: UnixMillis,
    ) -> Result<(SignedEntry, Purged), AccessError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Purge {
                device,
                ranges,
                reason: reason.to_owned(),
                at,
                reply,
            })
            .await
            .map_err(|_| AccessError::Stopped)?;
        answer.await.map_err(|_| AccessError::Stopped)?
    }
}

fn purge(
    storage: &dyn HubStorage,
    writer: &mut LogWriter,
    device: DeviceId,
    ranges: Vec<SeqRange>,
    reason: &str,
    at: UnixMillis,
) -> Result<(SignedEntry, Purged), AccessError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let (size, head) = (writer.len(), writer.head());
        let record = writer.append_node_purge(
            device.clone(),
            ranges.clone(),
            reason,
            at,
            TimeSource::LocalClock,
        )?;
        let op = WriteOp::Purge {
            device: device.clone(),
            ranges: ranges.clone(),
            record: Box::new(record.clone()),
        };
        match storage.commit(vec![op]) {
            Ok(r) => {
                let done = match r.first() {
                    Some(WriteResult::Purged(p)) => *p,
                    _ => Purged::default(),
                };
                return Ok((record, done));
            }
            Err(StoreError::Conflict(why)) if tries < CONFLICT_TRIES => {
                tracing::debug!(reason = %why, "another hub moved the access log on; sealing the purge again");
                writer.rewind(size, head);
                resume(storage, writer)?;
            }
            Err(err) => {
                tracing::error!(error = %err, "a retention purge could not be written");
                writer.rewind(size, head);
                return Err(AccessError::Store(err));
            }
        }
    }
}

/// Move the writer to the log's head as stored (another hub process
/// appended to it).
fn resume(storage: &dyn HubStorage, writer: &mut LogWriter) -> Result<(), StoreError> {
    let (size, head) = storage.hub_access_head()?;
    writer.rewind(size, head);
    Ok(())
}

/// Seal `records` and commit them in one transaction; on a conflict with
/// another hub process, seal them again after its entries. Each caller is
/// answered.
fn seal(
    storage: &dyn HubStorage,
    writer: &mut LogWriter,
    mut records: Vec<(AccessRecord, Reply<SignedEntry>)>,
) {
    let mut tries = 0;
    while !records.is_empty() {
        tries += 1;
        let now = UnixMillis::now();
        let (size, head) = (writer.len(), writer.head());
        let mut sealed = Vec::with_capacity(records.len());
        let mut waiting = Vec::with_capacity(records.len());
        for (record, reply) in records.drain(..) {
            match writer.append_access(record.clone(), now, TimeSource::LocalClock) {
                Ok(e) => {
                    sealed.push(e);
                    waiting.push((record, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        if sealed.is_empty() {
            return;
        }
        let err = match storage.commit(vec![WriteOp::HubAccess(sealed.clone())]) {
            Ok(_) => {
                for (e, (_, reply)) in sealed.into_iter().zip(waiting) {
                    let _ = reply.send(Ok(e));
                }
                return;
            }
            Err(err) => err,
        };
        writer.rewind(size, head);
        if let (StoreError::Conflict(why), true) = (&err, tries < CONFLICT_TRIES) {
            tracing::debug!(reason = %why, "another hub moved the access log on; sealing the batch again");
            match resume(storage, writer) {
                Ok(()) => {
                    records = waiting;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the access log could not be read; accesses are refused");
                    for (_, reply) in waiting {
                        let _ = reply.send(Err(AccessError::Store(StoreError::Unavailable(
                            e.to_string(),
                        ))));
                    }
                    return;
                }
            }
        }
        tracing::error!(error = %err, "the access log could not be written; accesses are refused");
        for (_, reply) in waiting {
            let _ = reply.send(Err(AccessError::Store(StoreError::Unavailable(
                err.to_string(),
            ))));
        }
        return;
    }
}

fn run(storage: Arc<dyn HubStorage>, mut writer: LogWriter, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Access(record, reply) => records.push((record, reply)),
                Job::Purge {
                    device,
                    ranges,
                    reason,
                    at,
                    reply,
                } => {
                    let r = purge(&*storage, &mut writer, device, ranges, &reason, at);
                    let _ = reply.send(r);
                }
            }
        }
        seal(&*storage, &mut writer, records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::SecretKey;
    use alpr_shared::log::{verify_log, AccessAction, AccessOutcome};
    use alpr_shared::signer::dev::Deployment;

    /// The log key `[seed; 32]`, certified in `d` under the name `hub`.
    fn log_key(d: &Deployment, seed: [u8; 32]) -> HubKey<LogSigning> {
        d.key_for("hub", SecretKey::from_bytes(&seed))
            .expect("a log key")
    }

    fn record(user: &str) -> AccessRecord {
        AccessRecord {
            user: user.into(),
            agency: "CA0000000".into(),
            action: AccessAction::Search,
            purpose: Some("stolen-vehicle".into()),
            case: Some("2026-0001".into()),
            query: "plate=7ABC123 mode=exact".into(),
            results: 2,
            outcome: AccessOutcome::Allowed,
            source: "127.0.0.1".into(),
        }
    }

    #[tokio::test]
    async fn accesses_are_durable_chained_and_resume_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.redb");
        let seed = [7u8; 32];
        let public = SecretKey::from_bytes(&seed).public();
        let device = DeviceId::new("hub").expect("name");
        let d = Deployment::new().expect("deployment");
        {
            let storage: Arc<dyn HubStorage> =
                Arc::new(crate::store::redb::RedbStore::open(&path).expect("open"));
            let log = AccessLog::start(storage, log_key(&d, seed)).expect("start");
            let a = log.record(record("alice")).await.expect("first");
            let b = log.record(record("bob")).await.expect("second");
            assert_eq!((a.seq(), b.seq()), (0, 1));
        }
        // The writer thread lets go of the database once its last handle
        // is gone.
        let mut reopened = None;
        for _ in 0..200 {
            match crate::store::redb::RedbStore::open(&path) {
                Ok(s) => {
                    reopened = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        let storage: Arc<dyn HubStorage> = Arc::new(reopened.expect("reopen"));
        // Another key, though certified for the log, may not continue it.
        assert!(matches!(
            AccessLog::start(storage.clone(), log_key(&d, [8; 32])),
            Err(AccessError::ForeignHead { size: 2 })
        ));
        let log = AccessLog::start(storage.clone(), log_key(&d, seed)).expect("restart");
        let c = log.record(record("carol")).await.expect("third");
        assert_eq!(c.seq(), 2);
        let entries: Vec<SignedEntry> = storage
            .hub_access_entries(0, 10)
            .expect("read")
            .iter()
            .map(|b| SignedEntry::decode(b).expect("decode"))
            .collect();
        let users: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.access().map(|r| r.user.as_str()))
            .collect();
        assert_eq!(users, ["alice", "bob", "carol"]);
        let signer = alpr_shared::cert::DeviceCert {
            name: device.clone(),
            kind: alpr_shared::types::DeviceKind::Pole,
            key: public,
            not_before: UnixMillis(0),
            not_after: UnixMillis(u64::MAX),
            serial: "01".into(),
            der: Vec::new(),
        };
        let report = verify_log(&signer, &entries, &[], Default::default());
        assert!(report.authentic(), "{report:?}");
        assert_eq!(report.accesses, 3);
    }

    #[test]
    fn two_hub_processes_interleave_their_accesses_in_one_valid_chain() {
        let db = crate::store::postgres::cluster::test_database().expect("a database");
        let open = || -> Arc<dyn HubStorage> {
            Arc::new(crate::store::postgres::PgStore::open(&db.config).expect("open"))
        };
        let (store_a, store_b) = (open(), open());
        let seed = [9u8; 32];
        let device = DeviceId::new("hub").expect("name");
        // The hubs share the deployment's log key.
        let d = Deployment::new().expect("deployment");
        let a = AccessLog::start(store_a.clone(), log_key(&d, seed)).expect("a");
        let b = AccessLog::start(store_b, log_key(&d, seed)).expect("b");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            // Turn by turn: each writer finds the other moved the log on.
            for i in 0..5 {
                a.record(record(&format!("a{i}")))
                    .await
                    .expect("a's access");
                b.record(record(&format!("b{i}")))
                    .await
                    .expect("b's access");
            }
            // At once: the conflicts come mid-batch.
            let mut all = Vec::new();
            for i in 0..20 {
                let (a, b) = (a.clone(), b.clone());
                all.push(tokio::spawn(async move {
                    a.record(record(&format!("a-late{i}"))).await.map(|_| ())
                }));
                all.push(tokio::spawn(async move {
                    b.record(record(&format!("b-late{i}"))).await.map(|_| ())
                }));
            }
            for t in all {
                t.await.expect("task").expect("every access recorded");
            }
        });
        let entries: Vec<SignedEntry> = store_a
            .hub_access_entries(0, 1000)
            .expect("read")
            .iter()
            .map(|b| SignedEntry::decode(b).expect("decode"))
            .collect();
        assert_eq!(entries.len(), 50, "every access once");
        let users: std::collections::HashSet<&str> = entries
            .iter()
            .filter_map(|e| e.access().map(|r| r.user.as_str()))
            .collect();
        assert_eq!(users.len(), 50, "no access twice");
        let signer = alpr_shared::cert::DeviceCert {
            name: device,
            kind: alpr_shared::types::DeviceKind::Pole,
            key: SecretKey::from_bytes(&seed).public(),
            not_before: UnixMillis(0),
            not_after: UnixMillis(u64::MAX),
            serial: "01".into(),
            der: Vec::new(),
        };
        let report = verify_log(&signer, &entries, &[], Default::default());
        assert!(report.authentic(), "{report:?}");
        assert_eq!(report.accesses, 50);
    }

    #[tokio::test]
    async fn an_invalid_record_is_refused_and_takes_no_place_in_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn HubStorage> = Arc::new(
            crate::store::redb::RedbStore::open(&dir.path().join("hub.redb")).expect("open"),
        );
        let log = AccessLog::start(storage.clone(), crate::keys::throwaway().expect("key"))
            .expect("start");
        let mut bad = record("mallory");
        bad.query = "x".repeat(alpr_shared::log::access::MAX_QUERY_LEN + 1);
        assert!(matches!(
            log.record(bad).await,
            Err(AccessError::Invalid(_))
        ));
        assert_eq!(log.record(record("alice")).await.expect("ok").seq(), 0);
        assert_eq!(storage.hub_access_head().expect("head").0, 1);
    }
}
