//! The PostgreSQL database a bench runs on: a fresh one made for the run
//! in the server `--database-url` names (dropped afterwards), or, without
//! a URL, in a throwaway cluster the bench starts
//! ([`alpr_hub::store::postgres::cluster::TempCluster`]) in the bench's
//! folder — the output says which, and on what filesystem its data lies
//! (tmpfs is refused, as for the benches' own folders: a commit there
//! costs nothing).

use anyhow::Context;

use alpr_hub::store::postgres::cluster::TempCluster;
use alpr_hub::store::postgres::{connect_one, PgConfig, PgStore};

/// A database made for one run.
pub(crate) struct BenchDatabase {
    /// The throwaway cluster holding it, if the bench started one.
    cluster: Option<TempCluster>,
    /// The URL it was made through (its server's), to drop it afterwards.
    admin: Option<String>,
    pub(crate) name: String,
    pub(crate) url: String,
    /// Where it is, for people.
    pub(crate) described: String,
    /// The filesystem of the server's data folder ("unknown" when the
    /// server's folder is not on this machine).
    pub(crate) fs: String,
}

/// `url` with its database replaced by `database` (the path after the
/// host; query parameters kept).
pub(crate) fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let scheme_end = url
        .find("://")
        .context("a PostgreSQL URL (postgres://user@host:port/database)")?
        + 3;
    let rest = &url[scheme_end..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after = &rest[host_end..];
    let query = after.find('?').map_or("", |q| &after[q..]);
    Ok(format!(
        "{}{}/{database}{query}",
        &url[..scheme_end],
        &rest[..host_end]
    ))
}

/// The database `url` names (the path after the host).
pub(crate) fn database_of(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = rest.find('/').map_or("", |i| &rest[i + 1..]);
    path.split('?').next().unwrap_or("")
}

/// The size of `store`'s database on disk, in bytes.
pub(crate) fn database_bytes(store: &PgStore) -> anyhow::Result<u64> {
    let pool = store.pool().clone();
    let bytes = store.spawn_wait(async move {
        let conn = pool
            .get()
            .await
            .map_err(alpr_hub::store::postgres::pg_err)?;
        let row = conn
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(alpr_hub::store::postgres::pg_err)?;
        Ok(row.get::<_, i64>(0))
    })?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// `url` without a password, for printing.
pub(crate) fn without_password(url: &str) -> String {
    let Some(s) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[s..];
    let at = rest.find('@');
    let slash = rest.find('/').unwrap_or(rest.len());
    match at {
        Some(at) if at < slash => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..s], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

pub(crate) fn config(url: &str, pool_size: usize) -> PgConfig {
    PgConfig {
        url: url.to_owned(),
        pool_size,
        tls_ca: None,
    }
}

/// The filesystem of the data folder of the server `url` names, when that
/// folder is on this machine; else "unknown".
async fn server_filesystem(url: &str) -> String {
    let dir = async {
        let (client, _task, _) = connect_one(&config(url, 1)).await?;
        let row = client.query_one("SHOW data_directory", &[]).await?;
        anyhow::Ok(row.get::<_, String>(0))
    }
    .await;
    match dir {
        Ok(d) if std::path::Path::new(&d).exists() => {
            alpr_shared::health::filesystem_of(std::path::Path::new(&d))
        }
        _ => "unknown".into(),
    }
}

/// Run one statement on `url` outside a transaction (CREATE/DROP DATABASE).
async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, _task, _) = connect_one(&config(url, 1)).await?;
    client
        .batch_execute(sql)
        .await
        .with_context(|| format!("{sql} on {}", without_password(url)))?;
    Ok(())
}

impl BenchDatabase {
    /// A fresh database named `{prefix}_{pid}_{millis}`: in the server
    /// `url` names, else in a throwaway cluster made in `parent`. Refused
    /// when the server's data folder is on tmpfs, unless `allow_tmpfs`.
    pub(crate) async fn fresh(
        url: Option<&str>,
        prefix: &str,
        parent: &std::path::Path,
        allow_tmpfs: bool,
    ) -> anyhow::Result<Self> {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            alpr_shared::types::UnixMillis::now().0
        );
        let db = match url {
            Some(url) => {
                execute(url, &format!("CREATE DATABASE {name}")).await?;
                let db_url = with_database(url, &name)?;
                let fs = server_filesystem(&db_url).await;
                BenchDatabase {
                    cluster: None,
                    admin: Some(url.to_owned()),
                    described: format!(
                        "database {name} made for this run at {} (dropped after), its data on {fs}",
                        without_password(&db_url)
                    ),
                    name,
                    url: db_url,
                    fs,
                }
            }
            None => {
                let n = name.clone();
                let parent = parent.to_path_buf();
                let (cluster, url) = tokio::task::spawn_blocking(move || {
                    let c = TempCluster::start_in(&parent)?;
                    let url = c.create_database(&n)?;
                    anyhow::Ok((c, url))
                })
                .await??;
                let fs = alpr_shared::health::filesystem_of(&cluster.data_dir());
                let described = format!(
                    "a throwaway PostgreSQL cluster started by the bench (no --database-url) in \
                     {} ({fs}), port {}, database {name}",
                    cluster.data_dir().display(),
                    cluster.port()
                );
                BenchDatabase {
                    cluster: Some(cluster),
                    admin: None,
                    described,
                    name,
                    url,
                    fs,
                }
            }
        };
        if db.fs == "tmpfs" && !allow_tmpfs {
            let why = format!(
                "the PostgreSQL data of {} is on tmpfs: a durable commit there costs nothing, so \
                 the figure would mislead. Choose a folder on disk with --dir (or a server on \
                 disk with --database-url), or pass --allow-tmpfs",
                db.name
            );
            let _ = db.finish().await;
            anyhow::bail!(why);
        }
        Ok(db)
    }

    /// `synchronous_commit` and `fsync` as the server runs them.
    pub(crate) async fn durability(&self) -> anyhow::Result<(String, String)> {
        let (client, _task, _) = connect_one(&config(&self.url, 1)).await?;
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .get(0);
        let fsync: String = client.query_one("SHOW fsync", &[]).await?.get(0);
        Ok((sync, fsync))
    }

    /// Drop the database (made in a server the bench did not start) or
    /// stop the throwaway cluster.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        if let Some(admin) = &self.admin {
            execute(admin, &format!("DROP DATABASE {} WITH (FORCE)", self.name)).await?;
        }
        if let Some(c) = self.cluster {
            tokio::task::spawn_blocking(move || drop(c)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_another_database_and_prints_without_its_password() {
        assert_eq!(
            with_database("postgres://u@h:5432/app?sslmode=disable", "b1").expect("url"),
            "postgres://u@h:5432/b1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:pw@h", "b1").expect("url"),
            "postgres://u:pw@h/b1"
        );
        assert_eq!(
            without_password("postgres://u:secret@h:5432/b1"),
            "postgres://u:***@h:5432/b1"
        );
        assert_eq!(without_password("postgres://u@h/b1"), "postgres://u@h/b1");
        assert_eq!(database_of("postgres://u@h:5432/b1?sslmode=disable"), "b1");
    }
}
