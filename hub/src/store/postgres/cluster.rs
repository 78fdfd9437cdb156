//! A throwaway PostgreSQL cluster: `initdb` in a temporary folder, a
//! postmaster on a free loopback port, stopped and deleted on drop. The
//! tests and the benches use it when no `--database-url` is given; it needs
//! PostgreSQL's server binaries (Debian's `postgresql` package, installed by
//! `scripts/setup.sh`).
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the
//! `postgres` user (created by the package) and its commands run as that
//! user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The role the cluster is made with (trust authentication on loopback).
pub const ROLE: &str = "alpr";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server's commands as this user (`Some("postgres")` as root).
    run_as: Option<String>,
}

/// The folder of PostgreSQL's server binaries: `$PG_BIN`, else the newest
/// of `/usr/lib/postgresql/*/bin`, else whatever `initdb` is on `PATH`.
pub fn server_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").exists())
        .context(
            "PostgreSQL's server binaries are not installed (initdb not found): \
             run scripts/setup.sh, or set PG_BIN",
        )
}

fn is_root() -> bool {
    // `id -u` rather than libc: the workspace denies unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl TempCluster {
    /// Make and start a cluster in the system's temporary folder.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_in(&std::env::temp_dir())
    }

    /// Make and start a cluster in a new folder inside `parent` (which the
    /// server's user must be able to enter).
    pub fn start_in(parent: &Path) -> anyhow::Result<Self> {
        let bin = server_bin()?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("alpr-pg-")
            .tempdir_in(parent)
            .with_context(|| format!("making the cluster's folder in {}", parent.display()))?;
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .context("chown of the cluster's folder")?;
            if !status.success() {
                bail!("chown {user} {} failed", dir.path().display());
            }
        }
        let cluster = TempCluster {
            dir,
            bin,
            port: free_port()?,
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                ROLE,
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `postgres` as the cluster's role.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A connection URL for `database`.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Make a fresh database in the cluster and return its URL (one per
    /// test, so tests sharing a cluster never see each other's rows).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", ROLE, name])
            .output()
            .context("running createdb")?;
        if !out.status.success() {
            bail!(
                "createdb {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(self.url_for(name))
    }

    /// The server's log (for a test that failed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn start_server(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let socket_dir = path_str(self.dir.path())?.to_owned();
        let opts = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 \
             -c shared_buffers=128MB -c fsync=on -c synchronous_commit=on",
            self.port
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-o",
                &opts,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let port = self.port.to_string();
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port, "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("PostgreSQL did not start: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Serve TLS with this certificate and key (PEM), from now on: both
    /// plain and TLS connections are then accepted, as `sslmode` asks.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            // PostgreSQL refuses a key others may read, or not its own.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if let Some(user) = &self.run_as {
                let status = Command::new("chown").arg(user).arg(&path).status()?;
                if !status.success() {
                    bail!("chown {user} {} failed", path.display());
                }
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text)?;
        self.run("pg_ctl", &["-D", path_str(&data)?, "reload"])?;
        // The reload is asynchronous: wait until TLS is on.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// Stop the server at once (`immediate`: as a crash would, every
    /// connection cut, recovery from the WAL at the next start).
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )
    }

    /// Start the server again after [`TempCluster::stop_immediate`], on
    /// the same port.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.start_server()
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(self.dir.path());
        let out = cmd
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if let Ok(data) = path_str(&self.data_dir()).map(str::to_owned) {
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        }
    }
}

/// The environment variable naming a running cluster's admin URL for the
/// tests (`scripts/test-pg.sh` sets it for a whole suite).
pub const TEST_PG_URL: &str = "ALPR_TEST_PG_URL";

/// A fresh, empty database for one test ([`test_database`]), and the
/// cluster it lives in when the test process had to start one. The
/// database is left in place when dropped (its cluster is thrown away
/// after the run); a cluster the process started stops with the last of
/// its databases.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its connection URL.
    pub url: String,
    /// [`TestDatabase::url`] as a store configuration (a small pool, no TLS).
    pub config: super::PgConfig,
    _cluster: Option<std::sync::Arc<TempCluster>>,
}

/// A new database for a test: in the cluster `$ALPR_TEST_PG_URL` names
/// (its admin URL: a role that may create databases), else in a
/// [`TempCluster`] of this process (started for the first test that needs
/// one, about a second, and shared by the tests running at the same time;
/// it stops when the last of their databases is dropped). Each name is
/// unique (process id, a counter, random bits), so tests running at once,
/// in one process or several, never share rows.
pub fn test_database() -> anyhow::Result<TestDatabase> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(
        "alpr_test_{}_{n}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let (url, cluster) = match std::env::var(TEST_PG_URL) {
        Ok(admin) if !admin.trim().is_empty() => (create_database_at(admin.trim(), &name)?, None),
        _ => {
            let cluster = shared_cluster()?;
            (cluster.create_database(&name)?, Some(cluster))
        }
    };
    Ok(TestDatabase {
        config: super::PgConfig {
            url: url.clone(),
            pool_size: 4,
            tls_ca: None,
        },
        url,
        _cluster: cluster,
    })
}

/// This process's throwaway cluster: the running one if a test still
/// holds it, else a new one.
fn shared_cluster() -> anyhow::Result<std::sync::Arc<TempCluster>> {
    use std::sync::{Arc, Mutex, Weak};
    static SHARED: Mutex<Weak<TempCluster>> = Mutex::new(Weak::new());
    // Held while starting, so tests starting together share one cluster.
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Ok(cluster);
    }
    let cluster =
        Arc::new(TempCluster::start().context("starting a PostgreSQL cluster for a test")?);
    *shared = Arc::downgrade(&cluster);
    Ok(cluster)
}

/// `CREATE DATABASE name` through the admin URL `admin`; the new
/// database's URL (the admin URL with the database replaced).
fn create_database_at(admin: &str, name: &str) -> anyhow::Result<String> {
    let url = with_database(admin, name)?;
    let config = super::PgConfig {
        url: admin.to_owned(),
        pool_size: 1,
        tls_ca: None,
    };
    // On a thread of its own: the caller may be inside a runtime (an
    // async test starting a hub), where another could not block.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("a runtime to create a test database")?;
            rt.block_on(async {
                let (client, _conn, _) = super::connect_one(&config)
                    .await
                    .with_context(|| format!("connecting to {TEST_PG_URL} ({admin})"))?;
                // The name is made here of [a-z0-9_] only: safe to splice.
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .with_context(|| format!("creating database {name} at {TEST_PG_URL}"))?;
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("creating database {name} panicked"))?
    })?;
    Ok(url)
}

/// `url` (a `postgres://` URL) naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .with_context(|| format!("{TEST_PG_URL} must be a postgres:// URL, not {url:?}"))?;
    let scheme = &url[..url.len() - rest.len()];
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let authority = main.split_once('/').map_or(main, |(a, _)| a);
    Ok(match query {
        Some(q) => format!("{scheme}{authority}/{name}?{q}"),
        None => format!("{scheme}{authority}/{name}"),
    })
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_over_tls_checks_the_databases_certificate() {
        let cluster = TempCluster::start().expect("cluster");
        let ca = alpr_shared::pki::new_ca("DB Agency", 30).expect("ca");
        let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem).expect("ca");
        let server = authority
            .issue_console(&["127.0.0.1".into()], 30)
            .expect("server cert");
        cluster
            .enable_tls(&server.cert_pem, &server.key_pem)
            .expect("tls on");
        let dir = tempfile::tempdir().expect("dir");
        let ca_file = dir.path().join("db-ca.crt");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write");
        let url = format!("postgres://{ROLE}@127.0.0.1:{}/postgres", cluster.port());
        let config = crate::store::postgres::PgConfig {
            url: url.clone(),
            pool_size: 2,
            tls_ca: Some(ca_file),
        };
        let store = crate::store::postgres::PgStore::open(&config).expect("open over TLS");
        let on: bool = store
            .spawn_wait({
                let pool = store.pool().clone();
                async move {
                    let c = pool.get().await.map_err(crate::store::postgres::pg_err)?;
                    let row = c
                        .query_one(
                            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                            &[],
                        )
                        .await
                        .map_err(crate::store::postgres::pg_err)?;
                    Ok(row.get(0))
                }
            })
            .expect("query");
        assert!(on, "the pool's connections are TLS");
        drop(store);
        // A database whose certificate chains to another CA is refused.
        let other = alpr_shared::pki::new_ca("Elsewhere", 30).expect("ca");
        let other_file = dir.path().join("other-ca.crt");
        std::fs::write(&other_file, &other.cert_pem).expect("write");
        let refused = crate::store::postgres::PgStore::open(&crate::store::postgres::PgConfig {
            url,
            pool_size: 2,
            tls_ca: Some(other_file),
        });
        assert!(refused.is_err(), "a certificate from another CA is refused");
    }

    #[test]
    fn a_test_database_url_keeps_host_role_and_options() {
        assert_eq!(
            with_database(
                "postgres://alpr@127.0.0.1:5433/postgres?sslmode=disable",
                "t_1"
            )
            .expect("url"),
            "postgres://alpr@127.0.0.1:5433/t_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432", "t_2").expect("url"),
            "postgresql://u:p@db:5432/t_2"
        );
        let err = with_database("host=db dbname=x", "t").expect_err("not a URL");
        assert!(err.to_string().contains("postgres:// URL"), "{err}");
    }

    #[test]
    fn a_throwaway_cluster_starts_migrates_restarts_and_refuses_a_newer_schema() {
        let cluster = TempCluster::start().expect("cluster");
        let url = cluster.create_database("t1").expect("database");
        let config = crate::store::postgres::PgConfig {
            url,
            pool_size: 2,
            tls_ca: None,
        };
        let m = crate::store::postgres::migrate(&config).expect("migrate");
        assert_eq!(m.from, 0);
        assert_eq!(m.to, crate::store::postgres::schema::latest());
        let again = crate::store::postgres::migrate(&config).expect("migrate again");
        assert!(again.applied.is_empty(), "{again:?}");
        cluster.stop_immediate().expect("stop");
        cluster.restart().expect("restart");
        // A schema from a newer binary is refused, not written to.
        let rt = tokio::runtime::Runtime::new().expect("rt");
        rt.block_on(async {
            let (client, _t, _) = crate::store::postgres::connect_one(&config)
                .await
                .expect("connect");
            client
                .execute(
                    "INSERT INTO alpr_schema (version, name) VALUES (9999, 'future')",
                    &[],
                )
                .await
                .expect("insert");
        });
        let err = crate::store::postgres::PgStore::open(&config).expect_err("newer schema");
        assert!(
            format!("{err:#}").contains("newer than this hub"),
            "{err:#}"
        );
    }
}
