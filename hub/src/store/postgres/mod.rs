//! The hub's records in PostgreSQL ([`PgStore`]), for deployments that
//! outgrow one machine: several hub processes share one database (or a
//! PostgreSQL-compatible distributed engine; see `docs/scale.md`).
//!
//! The [`HubStorage`] seam is synchronous (redb's calls block briefly on
//! disk); the PostgreSQL client is async. A [`PgStore`] owns a small
//! runtime of its own: each call is run there and waited for on a plain
//! channel, so it may be called from any thread, inside or outside the
//! hub's runtime, as the redb store is.
//!
//! The schema is versioned ([`schema::MIGRATIONS`]): opening a store
//! applies the migrations it lacks, under a lock so that two hubs starting
//! together do not race, and refuses a database whose schema is newer than
//! this binary.

mod access;
mod accounts;
mod alerts;
mod chains;
mod changes;
pub mod cluster;
mod control;
mod hotlists;
mod images;
mod lease;
mod logins;
mod partition;
mod read;
mod retention;
pub mod schema;
mod search;
mod sql;
#[cfg(test)]
mod tests;
mod write;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::{Backend, DbKind, StoreError};

/// How to reach the database (`[store]` in `hub.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user@host:port/database?…`
    pub url: String,
    /// Connections in this process's pool.
    pub pool_size: usize,
    /// With it, the connection is TLS and the server's certificate must
    /// chain to this CA (PEM).
    pub tls_ca: Option<PathBuf>,
}

/// Key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x616c_7072_6d69_6772; // "alprmigr"

/// A PostgreSQL failure (a query, a transaction, the pool); also for
/// `alpr-bench`, which queries the database it measures.
pub fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::db(Backend::Postgres, DbKind::Other, e)
}

/// The hub's records in PostgreSQL.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    config: PgConfig,
    leases: lease::Leases,
    changes: changes::Changes,
    /// The months whose partitions this process has seen made.
    partitions: Arc<partition::Partitions>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.config.pool_size)
            .finish()
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version before.
    pub from: u32,
    /// The schema version now (this binary's).
    pub to: u32,
    /// The migrations applied, by (version, name).
    pub applied: Vec<(u32, &'static str)>,
}

/// The connection settings `config` names, with its TLS.
fn connect_config(
    config: &PgConfig,
) -> anyhow::Result<(
    tokio_postgres::Config,
    Option<tokio_postgres_rustls::MakeRustlsConnect>,
)> {
    let pg: tokio_postgres::Config = config
        .url
        .parse()
        .context("the PostgreSQL URL ([store] url)")?;
    let tls = match &config.tls_ca {
        None => None,
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for der in alpr_shared::cert::pem_certificates(&pem)
                .with_context(|| format!("the certificates in {}", ca.display()))?
            {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der))
                    .with_context(|| format!("a certificate in {}", ca.display()))?;
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    };
    Ok((pg, tls))
}

/// One connection outside the pool (migrations, the lease session, the
/// change listener), driven on the current runtime.
pub async fn connect_one(
    config: &PgConfig,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
)> {
    let (mut pg, tls) = connect_config(config)?;
    if tls.is_some() {
        pg.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    macro_rules! drive {
        ($conn:expr) => {{
            let mut conn = $conn;
            tokio::spawn(async move {
                let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                use futures_util::StreamExt;
                while let Some(m) = stream.next().await {
                    let _ = tx.send(m?);
                }
                Ok(())
            })
        }};
    }
    let (client, task) = match tls {
        Some(tls) => {
            let (client, conn) = pg.connect(tls).await.context("connecting to PostgreSQL")?;
            (client, drive!(conn))
        }
        None => {
            let (client, conn) = pg
                .connect(tokio_postgres::NoTls)
                .await
                .context("connecting to PostgreSQL")?;
            (client, drive!(conn))
        }
    };
    Ok((client, task, rx))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("postgres")
        .enable_all()
        .build()
        .context("starting the database runtime")
}

/// Apply the migrations the database lacks (under an advisory lock);
/// refuse a database newer than this binary.
async fn migrate_on(client: &mut tokio_postgres::Client) -> Result<Migrated, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    let r = apply_migrations(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err);
    let m = r?;
    unlock?;
    Ok(m)
}

async fn apply_migrations(client: &mut tokio_postgres::Client) -> Result<Migrated, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS alpr_schema (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_err)?;
    let from: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM alpr_schema", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    let from = u32::try_from(from).map_err(pg_err)?;
    let latest = schema::latest();
    if from > latest {
        return Err(pg_err(format!(
            "the database's schema is version {from}, newer than this hub's ({latest}): \
             run a hub of the same version or newer"
        )));
    }
    let mut applied = Vec::new();
    for m in schema::MIGRATIONS.iter().filter(|m| m.version > from) {
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| pg_err(format!("migration {} ({}): {e}", m.version, m.name)))?;
        let v = i32::try_from(m.version).map_err(pg_err)?;
        tx.execute(
            "INSERT INTO alpr_schema (version, name) VALUES ($1, $2)",
            &[&v, &m.name],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        applied.push((m.version, m.name));
    }
    Ok(Migrated {
        from,
        to: latest,
        applied,
    })
}

/// Run `fut` on `rt` and wait for it on this thread, which may be driving
/// another runtime (the hub opens its store inside its own: there
/// `Runtime::block_on` would panic).
fn wait_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().context("the database runtime stopped")?
}

/// Bring the database's schema to this binary's (`hub migrate`).
pub fn migrate(config: &PgConfig) -> anyhow::Result<Migrated> {
    let rt = runtime()?;
    let config = config.clone();
    let m = wait_on(&rt, async move {
        let (mut client, _task, _) = connect_one(&config).await?;
        anyhow::Ok(migrate_on(&mut client).await?)
    });
    // Dropping a runtime inside another one panics; this never blocks.
    rt.shutdown_background();
    m
}

impl PgStore {
    /// Connect, migrate, and start the pool.
    pub fn open(config: &PgConfig) -> anyhow::Result<Self> {
        let rt = runtime()?;
        let (pg, tls) = connect_config(config)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => {
                let mut pg = pg;
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(pg, tls, manager_config)
            }
            None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("the connection pool")?;
        let cfg = config.clone();
        let started = wait_on(&rt, async move {
            let (mut client, _task, _) = connect_one(&cfg).await?;
            migrate_on(&mut client).await?;
            drop(client);
            let leases = lease::Leases::start(cfg.clone()).await?;
            let changes = changes::Changes::start(cfg).await?;
            anyhow::Ok((leases, changes))
        });
        let (leases, changes) = match started {
            Ok(s) => s,
            Err(e) => {
                // Dropping a runtime inside another one panics.
                rt.shutdown_background();
                return Err(e);
            }
        };
        Ok(PgStore {
            rt: Some(rt),
            pool,
            config: config.clone(),
            leases,
            changes,
            partitions: Arc::default(),
        })
    }

    /// Run `f` with a pooled connection on the store's runtime and wait
    /// for it (from any thread).
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let pool = self.pool.clone();
        self.spawn_wait(async move {
            let conn = pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))?;
            f(conn).await
        })
    }

    /// Run a future on the store's runtime and wait for it.
    pub fn spawn_wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the database runtime stopped".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable("the database runtime stopped".into()))?
    }

    /// The pool (for benches that load rows in bulk).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
