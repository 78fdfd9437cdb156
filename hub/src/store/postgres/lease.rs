//! Per-node leases: a session-level advisory lock per connected node, all
//! held on one dedicated connection of this process, so that a node's
//! chain has one writer across every hub process. The locks end with that
//! connection: when the process dies or loses the database, PostgreSQL
//! releases them and every lease handed out is marked lost.
//!
//! The lease is the courtesy, not the guard: two processes placing one
//! node's entries at once are kept apart by the row lock each ingest takes
//! ([`super::write`]). The lease keeps a node on one hub at a time, so
//! that they never have to.
//!
//! A lost connection is noticed when its driver ends (the server closed
//! it, or the socket failed) or when a heartbeat goes unanswered; the
//! next lease asked for opens a new one. Advisory locks count per session:
//! the same process taking a node twice (its new connection replacing the
//! old one) is granted, and each lease releases its own count.

use std::sync::{Arc, Weak};
use std::time::Duration;

use alpr_shared::types::DeviceId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{pg_err, PgConfig};
use crate::store::{NodeLease, StoreError};

/// How often the lease connection is asked whether it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A heartbeat unanswered this long means the connection is lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock key of `device`'s lease: the first 8 bytes of a
/// domain-separated SHA-256 of its name, stable across processes and
/// versions.
pub fn lease_key(device: &DeviceId) -> i64 {
    let mut input = b"alpr node lease\0".to_vec();
    input.extend_from_slice(device.as_str().as_bytes());
    let h = alpr_shared::crypto::sha256(&input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    i64::from_be_bytes(first)
}

/// This process's leases.
pub(super) struct Leases {
    config: PgConfig,
    /// The connection holding them, while it lives.
    session: Arc<tokio::sync::Mutex<Option<Session>>>,
}

/// One lease connection.
#[derive(Clone)]
struct Session {
    client: Arc<tokio_postgres::Client>,
    /// Cancelled when the connection ends: every lease taken on it is lost.
    lost: CancellationToken,
}

/// Dropped with a [`NodeLease`]: gives its count of the lock back.
struct Release {
    key: i64,
    session: Session,
    rt: tokio::runtime::Handle,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.session.lost.is_cancelled() {
            // The lock ended with its connection.
            return;
        }
        let (key, session) = (self.key, self.session.clone());
        self.rt.spawn(async move {
            if let Err(e) = session
                .client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
            {
                // A lock that cannot be released must not outlive this
                // process's hold on the node: give up the connection, so
                // that the server releases every lock on it.
                warn!(error = %e, "releasing a node's lease failed: dropping the lease connection");
                session.lost.cancel();
            }
        });
    }
}

impl Leases {
    /// No connection is opened until the first lease is asked for.
    pub(super) async fn start(config: PgConfig) -> anyhow::Result<Self> {
        Ok(Leases {
            config,
            session: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// Take `device`'s lease; `None` while another process holds it.
    /// Waits for the database on `rt` (from any thread).
    pub(super) fn lease(
        &self,
        rt: &tokio::runtime::Runtime,
        device: &DeviceId,
    ) -> Result<Option<NodeLease>, StoreError> {
        let key = lease_key(device);
        let slot = self.session.clone();
        let config = self.config.clone();
        let handle = rt.handle().clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(take(slot, config, key, handle).await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable("the database runtime stopped".into()))?
    }
}

/// Take lock `key` on the lease connection (opened if there is none).
async fn take(
    slot: Arc<tokio::sync::Mutex<Option<Session>>>,
    config: PgConfig,
    key: i64,
    rt: tokio::runtime::Handle,
) -> Result<Option<NodeLease>, StoreError> {
    let session = {
        let mut guard = slot.lock().await;
        match guard.as_ref().filter(|s| !s.lost.is_cancelled()) {
            Some(s) => s.clone(),
            None => {
                let s = open(&config, Arc::downgrade(&slot)).await?;
                *guard = Some(s.clone());
                s
            }
        }
    };
    let granted: bool = match session
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
    {
        Ok(row) => row.get(0),
        Err(e) => {
            // Whatever this connection held is in doubt: start afresh.
            session.lost.cancel();
            return Err(pg_err(e));
        }
    };
    if !granted {
        return Ok(None);
    }
    let lost = session.lost.child_token();
    Ok(Some(NodeLease::new(
        lost,
        Box::new(Release { key, session, rt }),
    )))
}

/// Open a lease connection, and watch it: when its driver ends or a
/// heartbeat fails, every lease on it is lost and it leaves `slot` (the
/// connection closes once the last lease on it is dropped).
async fn open(
    config: &PgConfig,
    slot: Weak<tokio::sync::Mutex<Option<Session>>>,
) -> Result<Session, StoreError> {
    let (client, driver, _messages) = super::connect_one(config)
        .await
        .map_err(|e| StoreError::Unavailable(format!("the lease connection: {e:#}")))?;
    let session = Session {
        client: Arc::new(client),
        lost: CancellationToken::new(),
    };
    info!("lease connection to the database opened");
    let watched = session.clone();
    tokio::spawn(async move {
        let lost = watched.lost.clone();
        let mut driver = driver;
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                _ = lost.cancelled() => break "given up".to_string(),
                r = &mut driver => break match r {
                    Ok(Ok(())) => "closed by the server".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                },
                _ = beat.tick() => {
                    let ping = watched.client.simple_query("SELECT 1");
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "no answer to a heartbeat".to_string(),
                    }
                }
            }
        };
        lost.cancel();
        warn!(reason = %why, "lease connection to the database lost: its nodes' leases are lost");
        // Let go of the connection (it closes when the last lease on it
        // is dropped); the next lease opens another.
        if let Some(slot) = slot.upgrade() {
            let mut guard = slot.lock().await;
            if guard
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(&s.client, &watched.client))
            {
                *guard = None;
            }
        }
    });
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::cluster::TempCluster;

    fn device(name: &str) -> DeviceId {
        DeviceId::new(name).expect("a valid name")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    fn leases(rt: &tokio::runtime::Runtime, url: &str) -> Leases {
        let config = PgConfig {
            url: url.to_owned(),
            pool_size: 2,
            tls_ca: None,
        };
        rt.block_on(Leases::start(config)).expect("leases")
    }

    #[test]
    fn keys_are_stable_and_differ_between_nodes() {
        assert_eq!(lease_key(&device("n1")), lease_key(&device("n1")));
        assert_ne!(lease_key(&device("n1")), lease_key(&device("n2")));
    }

    #[test]
    fn one_process_at_a_time_holds_a_node() {
        let cluster = TempCluster::start().expect("a PostgreSQL cluster");
        let rt = runtime();
        let a = leases(&rt, &cluster.url());
        let b = leases(&rt, &cluster.url());
        let n1 = device("n1");

        let held = a.lease(&rt, &n1).expect("lease").expect("granted to a");
        assert!(b.lease(&rt, &n1).expect("lease").is_none(), "b refused");
        // Another node is free; the same process may take n1 again (a
        // new connection of the node replacing its old one).
        let other = b.lease(&rt, &device("n2")).expect("lease");
        assert!(other.is_some(), "n2 granted to b");
        let again = a.lease(&rt, &n1).expect("lease").expect("a again");
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            b.lease(&rt, &n1).expect("lease").is_none(),
            "a still holds n1 through its second lease"
        );
        drop(again);
        // Released: b's turn (the unlock runs in the background).
        let got = wait_for(|| b.lease(&rt, &n1).expect("lease"));
        assert!(!got.is_lost());
    }

    #[test]
    fn a_database_restart_loses_every_lease_and_new_ones_are_granted() {
        let cluster = TempCluster::start().expect("a PostgreSQL cluster");
        let rt = runtime();
        let a = leases(&rt, &cluster.url());
        let n1 = device("n1");
        let held = a.lease(&rt, &n1).expect("lease").expect("granted");
        assert!(!held.is_lost());
        cluster.stop_immediate().expect("stop");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), held.lost())
                .await
                .expect("the lease is lost when the database goes")
        });
        assert!(a.lease(&rt, &n1).is_err(), "no lease without a database");
        cluster.restart().expect("restart");
        let b = leases(&rt, &cluster.url());
        let again = wait_for(|| a.lease(&rt, &n1).ok().flatten());
        assert!(!again.is_lost());
        assert!(
            b.lease(&rt, &n1).expect("lease").is_none(),
            "the new connection holds n1"
        );
    }

    #[test]
    fn a_process_that_dies_lets_go_of_its_nodes() {
        let cluster = TempCluster::start().expect("a PostgreSQL cluster");
        let b_rt = runtime();
        let b = leases(&b_rt, &cluster.url());
        let n1 = device("n1");
        {
            let a_rt = runtime();
            let a = leases(&a_rt, &cluster.url());
            let held = a.lease(&a_rt, &n1).expect("lease").expect("granted");
            assert!(b.lease(&b_rt, &n1).expect("lease").is_none());
            // The process goes without releasing anything: its runtime
            // and connection die under the lease.
            std::mem::forget(held);
            a_rt.shutdown_background();
        }
        let got = wait_for(|| b.lease(&b_rt, &n1).expect("lease"));
        assert!(!got.is_lost());
    }

    fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "timed out");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
