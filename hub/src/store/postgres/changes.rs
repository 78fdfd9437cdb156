//! Changes other hub processes make to the shared documents (policy,
//! holds, local entries, hotlist generations, users) reach this one: a
//! `LISTEN` on a dedicated connection, and a poll of the change counter
//! as a fallback (a notification is lost while that connection is down).
//!
//! Every commit that changes a shared document raises `meta['changes']`
//! and notifies `alpr_changes` with the new value, in its transaction
//! ([`super::write`]). The value published here only moves forward; a
//! follower reloads what it serves whenever it moves.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::sql::query;
use super::{pg_err, PgConfig};

/// The channel the writes notify.
pub const CHANNEL: &str = "alpr_changes";
/// How often the counter is read, notifications or not.
const POLL: Duration = Duration::from_secs(2);
/// Wait before opening the listening connection again.
const RECONNECT: Duration = Duration::from_secs(1);

/// In the transaction `tx` of a commit that changed a shared document:
/// raise the change counter and notify [`CHANNEL`] with its new value.
pub(super) async fn announce(
    tx: &impl deadpool_postgres::GenericClient,
) -> Result<(), crate::store::StoreError> {
    let value: i64 = query!(
        tx,
        "UPDATE meta SET value = value + 1 WHERE key = 'changes' RETURNING value"
    )
    .await?
    .first()
    .map(|r| r.get(0))
    .ok_or_else(|| pg_err("the change counter is missing"))?;
    query!(
        tx,
        "SELECT pg_notify('alpr_changes', $1)",
        &value.to_string()
    )
    .await?;
    Ok(())
}

/// The change counter as this process last saw it.
pub(super) struct Changes {
    rx: watch::Receiver<u64>,
    /// Stops the listener when the store is dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl Changes {
    /// Start listening (on the current runtime: the store's).
    pub(super) async fn start(config: PgConfig) -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(0);
        let stop = CancellationToken::new();
        tokio::spawn(listen(config, tx, stop.clone()));
        Ok(Changes {
            rx,
            _stop: stop.drop_guard(),
        })
    }

    pub(super) fn watch(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

/// Publish `value` if it is newer than what was published.
fn publish(tx: &watch::Sender<u64>, value: u64) {
    tx.send_if_modified(|v| {
        let newer = value > *v;
        if newer {
            *v = value;
        }
        newer
    });
}

/// The counter as stored; `None` before the schema has it.
async fn counter(client: &tokio_postgres::Client) -> Result<Option<u64>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT value FROM meta WHERE key = 'changes'", &[])
        .await?;
    Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
}

/// Listen and poll until `stop`, reconnecting whenever the connection ends.
async fn listen(config: PgConfig, tx: watch::Sender<u64>, stop: CancellationToken) {
    loop {
        let why = tokio::select! {
            _ = stop.cancelled() => return,
            why = follow(&config, &tx) => why,
        };
        warn!(reason = %why, "the change listener lost the database; reconnecting");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT) => {}
        }
    }
}

/// One listening connection's life; returns why it ended.
async fn follow(config: &PgConfig, tx: &watch::Sender<u64>) -> String {
    let (client, mut driver, mut messages) = match super::connect_one(config).await {
        Ok(c) => c,
        Err(e) => return format!("{e:#}"),
    };
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return e.to_string();
    }
    info!("listening for other hub processes' changes");
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = messages.recv() => match m {
                Some(tokio_postgres::AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    match n.payload().parse::<u64>() {
                        Ok(v) => publish(tx, v),
                        // Not a number: read the counter instead.
                        Err(_) => poll.reset_immediately(),
                    }
                }
                Some(_) => {}
                None => return "the connection ended".into(),
            },
            r = &mut driver => return match r {
                Ok(Ok(())) => "closed by the server".into(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            },
            _ = poll.tick() => match counter(&client).await {
                Ok(Some(v)) => publish(tx, v),
                Ok(None) => {}
                Err(e) if e.code().is_some() => {
                    // The server answered (no such table yet): nothing to
                    // follow until the schema has it.
                    debug!(error = %e, "the change counter cannot be read");
                }
                Err(e) => return e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::cluster::TempCluster;

    #[test]
    fn notifications_and_the_counter_reach_the_watch_and_survive_a_restart() {
        let cluster = TempCluster::start().expect("a PostgreSQL cluster");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let config = PgConfig {
            url: cluster.url(),
            pool_size: 2,
            tls_ca: None,
        };
        rt.block_on(async {
            let (admin, _driver, _) = crate::store::postgres::connect_one(&config)
                .await
                .expect("connect");
            admin
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL);
                     INSERT INTO meta VALUES ('changes', 0) ON CONFLICT DO NOTHING",
                )
                .await
                .expect("a counter");
            let changes = Changes::start(config.clone()).await.expect("start");
            let mut rx = changes.watch();
            let wait = |rx: &mut watch::Receiver<u64>, want: u64| {
                let mut rx = rx.clone();
                async move {
                    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|v| *v >= want))
                        .await
                        .expect("in time")
                        .map(|v| *v)
                        .expect("open")
                }
            };
            // A notification arrives at once.
            tokio::time::sleep(Duration::from_millis(300)).await;
            admin
                .batch_execute(
                    "BEGIN; UPDATE meta SET value = 1 WHERE key = 'changes';
                     SELECT pg_notify('alpr_changes', '1'); COMMIT;",
                )
                .await
                .expect("a change");
            assert_eq!(wait(&mut rx, 1).await, 1);
            // Without a notification, the poll finds it.
            admin
                .batch_execute("UPDATE meta SET value = 5 WHERE key = 'changes'")
                .await
                .expect("a silent change");
            assert_eq!(wait(&mut rx, 5).await, 5);
            // Never backwards.
            admin
                .batch_execute("SELECT pg_notify('alpr_changes', '3')")
                .await
                .expect("a stale notification");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(*rx.borrow_and_update(), 5);
            drop(admin);
            // The database restarts: the listener comes back by itself.
            cluster.stop_immediate().expect("stop");
            cluster.restart().expect("restart");
            let (admin, _driver, _) = crate::store::postgres::connect_one(&config)
                .await
                .expect("connect again");
            admin
                .batch_execute("UPDATE meta SET value = 9 WHERE key = 'changes'")
                .await
                .expect("a change after the restart");
            assert_eq!(wait(&mut rx, 9).await, 9);
        });
    }
}
