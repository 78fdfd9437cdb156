//! Support for end-to-end tests: find the built binaries, make a deployment
//! PKI for the test, start `hub serve` and `edge run` on loopback with
//! configs written for the test (and kill -9 and restart them), read back
//! what each durably holds, and a UDP relay that loses, bursts, cuts and
//! rebinds a link.

pub mod browser;
pub mod camera;
pub mod flood;
pub mod relay;
pub mod story;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alpr_shared::cert::{DeviceCert, TrustAnchor};
use alpr_shared::log::SignedEntry;
use alpr_shared::pki::{new_ca, Authority, Issued};
use alpr_shared::types::{DeviceId, DeviceKind};
use anyhow::Context;

/// The team's material beside the repository (`../shared`: photos,
/// models), or `ALPR_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("ALPR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Whether this run is CI (`CI=true`), where every test must really run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run here (`why`: a tool or a permission missing).
/// Outside CI it says so loudly and the test passes as skipped; in CI it
/// fails, so a missing tool never passes for a green test.
pub fn cannot_run(test: &str, why: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !in_ci(),
        "{test} cannot run in CI: {why} (scripts/setup.sh installs what it needs; CI runs as root)"
    );
    eprintln!("\n!!!!!!!! SKIPPED {test}: {why} !!!!!!!!\n");
    Ok(())
}

/// The password of the officers the tests put in edges' policies.
pub const OFFICER_PASSWORD: &str = "correct horse";

/// The hold's id in `hub`/`edge hold add`'s answer, "hold ID placed for case C".
pub fn placed_id(text: &str) -> anyhow::Result<String> {
    text.split_whitespace()
        .skip_while(|w| *w != "hold")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no hold id in {text:?}"))
}

/// The `id` of an entry a `--json` command printed (a local hotlist entry).
pub fn id_of(json: &str) -> anyhow::Result<String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| anyhow::anyhow!("not an entry ({e}): {json}"))?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no id in {json}"))
}

/// A `[[policy.officers]]` entry: `user` of agency CA0190000, trained
/// until 2099, with `password` and the signing key it gives (cheap
/// parameters, for tests).
pub fn officer_toml(user: &str, password: &str) -> anyhow::Result<String> {
    let hash =
        alpr_edge::policy::hash_password_with(password, 256, 1).map_err(|e| anyhow::anyhow!(e))?;
    let (key, _) =
        alpr_shared::control::officer::OfficerKey::derive(password, rand::random(), 256, 1)?;
    Ok(format!(
        "[[policy.officers]]\nusername = \"{user}\"\nagency = \"CA0190000\"\ntitle = \"Officer\"\n\
         password_hash = \"{hash}\"\ntraining_expires = \"2099-01-01T00:00:00Z\"\n\
         signing_key = \"{key}\"\n"
    ))
}

/// The hub's `[policy]` with these officers (from [`officer_toml`]).
pub fn policy_toml(max_stale: &str, officers: &[String]) -> String {
    format!(
        "[policy]\nedge_retention_days = 30\nmax_stale = \"{max_stale}\"\n{}",
        officers.concat()
    )
}

/// `hub.toml` lines for one bulk list, `ncic`, in NCIC format, matched
/// OCR-equivalent (for [`Hub::start_with`]; [`Hub::import_ncic`] fills it).
pub const NCIC_SOURCES: &str = r#"
[hotlist]
max_change = 0.9

[[hotlist.sources]]
name = "ncic"
format = "ncic"
strategy = "ocr-equivalent"
"#;

/// A real photo of a car with a US plate, in [`shared_dir`].
pub const CAR_PHOTO: &str = "data/plates/us/0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg";

/// Node `name` replaying [`CAR_PHOTO`] from its own folder under `dir`
/// with the real models (site `main-st`, images kept), a frame every
/// `interval` (the edge's default when `None`).
pub fn photo_edge(
    pki: &Pki,
    hub: &Hub,
    dir: &Path,
    name: &str,
    interval: Option<&str>,
) -> anyhow::Result<(Edge, NodeFiles)> {
    let photos = dir.join(format!("photos-{name}"));
    std::fs::create_dir_all(&photos)?;
    std::fs::copy(shared_dir().join(CAR_PHOTO), photos.join("car.jpg"))?;
    let models = shared_dir().join("models");
    let interval = interval
        .map(|i| format!("interval = {i:?}\n"))
        .unwrap_or_default();
    let node = pki.node(name)?;
    let opts = EdgeOptions {
        generate: 0,
        images: true,
        extra_toml: format!(
            "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\nsite_id = \"main-st\"\n{interval}"
        ),
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&node, hub.addr, dir, &opts)?;
    Ok((edge, node))
}

/// One plate as the recogniser reads it: the best text, then its
/// alternatives, most probable first.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub text: String,
    /// Probability (0..1) that `text` is right.
    pub confidence: f64,
    pub alternatives: Vec<String>,
}

/// The edge pipeline's default `min_confidence`: plates read with less are
/// not stored.
pub const MIN_CONFIDENCE: f64 = 0.25;

/// What the recogniser reads on `photo` with the team's models (`edge
/// recognize --json`, as an edge's pipeline reads it): one [`Reading`] per
/// plate.
pub fn recognised(photo: &Path) -> anyhow::Result<Vec<Reading>> {
    let out = Command::new(bin("edge")?)
        .args(["recognize", "--json", "--models"])
        .arg(shared_dir().join("models"))
        .arg(photo)
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "edge recognize: {}",
        output_text(&out)
    );
    let mut found = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        for p in v["plates"].as_array().into_iter().flatten() {
            found.push(Reading {
                text: p["text"].as_str().unwrap_or_default().to_owned(),
                confidence: p["confidence"].as_f64().unwrap_or_default(),
                alternatives: p["alternatives"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["text"].as_str().map(str::to_owned))
                    .collect(),
            });
        }
    }
    Ok(found)
}

/// The plate `edge` read from its photo ([`CAR_PHOTO`], as [`photo_edge`]
/// gives it), once it stored a read (its "read stored" log line, which
/// names no plate) and the hub acknowledged everything the node holds;
/// each wait at most `limit`. The plate is what the recogniser reads on
/// that photo ([`recognised`]). An edge that stops first is an error with
/// its log's tail.
pub fn plate_read(edge: &Edge, limit: Duration) -> anyhow::Result<String> {
    let stored = wait_for(limit, "the photo's read", || {
        if !edge.proc.is_running() {
            // Stop waiting: the error below names why it stopped.
            return Some(false);
        }
        edge.proc
            .log_text()
            .lines()
            .any(|l| story::parse_read(l).is_some())
            .then_some(true)
    })
    .map_err(|e| anyhow::anyhow!("{e}; the node's log:\n{}", edge.proc.log_tail(30)))?;
    anyhow::ensure!(
        stored,
        "the edge stopped before reading its photo:\n{}",
        edge.proc.log_tail(5)
    );
    wait_for(limit, "the read at the hub", || {
        let s = edge.status()?;
        let size = s["log_size"].as_u64()?;
        (size > 0 && s["acked"].as_u64() == Some(size)).then_some(())
    })?;
    photo_plate()
}

/// The plate the recogniser reads on [`CAR_PHOTO`] (read once per test
/// process).
pub fn photo_plate() -> anyhow::Result<String> {
    static PLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(p) = PLATE.get() {
        return Ok(p.clone());
    }
    let plate = recognised(&shared_dir().join(CAR_PHOTO))?
        .into_iter()
        .find(|r| r.confidence >= MIN_CONFIDENCE)
        .map(|r| r.text)
        .context("the car photo reads no plate")?;
    Ok(PLATE.get_or_init(|| plate).clone())
}

/// A built binary of the workspace: `target/<profile>/<name>`, found from
/// the test executable's path (`target/<profile>/deps/<test>`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    // `ALPR_BIN_DIR`: the binaries of another build (a release build, or a
    // copy kept apart from a target directory other builds write to).
    if let Some(dir) = std::env::var_os("ALPR_BIN_DIR").filter(|d| !d.is_empty()) {
        let p = PathBuf::from(dir).join(name);
        anyhow::ensure!(p.exists(), "{} not found (ALPR_BIN_DIR)", p.display());
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable without a folder")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir
            .parent()
            .context("test executable outside target/<profile>/deps")?;
    }
    let p = dir.join(name);
    anyhow::ensure!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    Ok(p)
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `limit`.
/// (A liveness bound, not a timing assertion: generous on purpose.)
pub fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deployment PKI made for one test (in a temporary folder) or for the
/// demo (in a folder that stays).
pub struct Pki {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    authority: Authority,
}

/// A node's files.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA the node trusts for the hub.
    pub ca: PathBuf,
    /// Hex serial, as revocation lists name it.
    pub serial: String,
}

impl Pki {
    /// A PKI in a temporary folder, removed when dropped.
    pub fn new() -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut pki = Self::create_in(temp.path())?;
        pki._temp = Some(temp);
        Ok(pki)
    }

    /// A PKI in `root` (created), left in place.
    pub fn create_in(root: &Path) -> anyhow::Result<Self> {
        let ca = new_ca("Test Agency", 30)?;
        let ca_dir = root.join("ca");
        std::fs::create_dir_all(&ca_dir)?;
        std::fs::write(ca_dir.join("ca.crt"), &ca.cert_pem)?;
        // As `hub pki init` lays it out: the CA key apart from the hub's.
        let ca_private = ca_dir.join("ca-private");
        alpr_shared::private::create_private_dir(&ca_private)?;
        write_key(&ca_private.join("ca.key"), ca.key_pem.as_bytes())?;
        let authority = Authority::load(&ca.cert_pem, &ca.key_pem)?;
        // The hub's TLS identity and its signing keys, as `hub pki init`
        // writes them (the hub finds the signing keys beside hub.crt).
        alpr_hub::pki::write_hub_keys(
            &authority,
            &ca_dir,
            &["localhost".into(), "127.0.0.1".into()],
            30,
        )?;
        Ok(Pki {
            root: root.to_path_buf(),
            _temp: None,
            authority,
        })
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    /// Enroll a vehicle node of this deployment.
    pub fn node(&self, name: &str) -> anyhow::Result<NodeFiles> {
        self.node_of_kind(name, DeviceKind::Vehicle)
    }

    /// Enroll a node of this deployment.
    pub fn node_of_kind(&self, name: &str, kind: DeviceKind) -> anyhow::Result<NodeFiles> {
        let (issued, _) = self
            .authority
            .issue_device(&DeviceId::new(name)?, kind, 30)?;
        self.enrolled(name, &issued)
    }

    /// The files of a node this deployment's CA issued `issued` to.
    fn enrolled(&self, name: &str, issued: &Issued) -> anyhow::Result<NodeFiles> {
        let anchor = TrustAnchor::from_pem(&std::fs::read(self.ca_cert())?)?;
        let serial = anchor.check_device_pem(issued.cert_pem.as_bytes())?.serial;
        self.write_node(
            name,
            &issued.cert_pem,
            issued.key_pem.as_bytes(),
            &self.ca_cert(),
            serial,
        )
    }

    /// Enroll a pole whose certificate was issued `days_ago` days ago, so
    /// the hub accepts reads it captured that long ago (retention tests on
    /// a running hub).
    pub fn node_enrolled_days_ago(&self, name: &str, days_ago: i64) -> anyhow::Result<NodeFiles> {
        let id = DeviceId::new(name)?;
        let (issued, _) =
            self.authority
                .issue_device_enrolled_days_ago(&id, DeviceKind::Pole, days_ago, 30)?;
        self.enrolled(name, &issued)
    }

    /// Enroll a node with another deployment's CA (it still trusts ours for
    /// the hub, so only the hub's check stands between it and the data).
    pub fn foreign_node(&self, name: &str) -> anyhow::Result<NodeFiles> {
        let other = new_ca("Other Agency", 30)?;
        let auth = Authority::load(&other.cert_pem, &other.key_pem)?;
        let (issued, _) = auth.issue_device(&DeviceId::new(name)?, DeviceKind::Pole, 30)?;
        self.write_node(
            name,
            &issued.cert_pem,
            issued.key_pem.as_bytes(),
            &self.ca_cert(),
            String::new(),
        )
    }

    fn write_node(
        &self,
        name: &str,
        cert: &str,
        key: &[u8],
        ca: &Path,
        serial: String,
    ) -> anyhow::Result<NodeFiles> {
        let dir = self.root.join(format!("node-{name}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("node.crt"), cert)?;
        write_key(&dir.join("node.key"), key)?;
        std::fs::copy(ca, dir.join("ca.crt"))?;
        Ok(NodeFiles {
            name: name.into(),
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            ca: dir.join("ca.crt"),
            serial,
        })
    }

    /// The verified certificate of a node of this deployment.
    pub fn device_cert(&self, node: &NodeFiles) -> anyhow::Result<DeviceCert> {
        let anchor = TrustAnchor::from_pem(&std::fs::read(self.ca_cert())?)?;
        Ok(anchor.check_device_pem(&std::fs::read(&node.cert)?)?)
    }
}

/// Write a private key file, owner-only (the hub and edge refuse others).
pub fn write_key(path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    alpr_shared::private::create_private_file(path)?.write_all(pem)?;
    Ok(())
}

/// The `RUST_LOG` of the processes the harness starts (`hub serve`, `edge
/// run`, the `hub` commands of [`Hub::as_user`]): `info` unless a test
/// sets another with [`set_process_log`].
static PROCESS_LOG: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Start the processes of this test process with `RUST_LOG=filter` (e.g.
/// `trace`, to see every log line they could write).
pub fn set_process_log(filter: &str) {
    if let Ok(mut f) = PROCESS_LOG.lock() {
        *f = Some(filter.to_owned());
    }
}

/// The `RUST_LOG` the harness gives the processes it starts.
pub fn process_log() -> String {
    PROCESS_LOG
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_else(|| "info".into())
}

/// A running (or stopped) process of ours, with its stderr in a file.
pub struct Proc {
    pub name: &'static str,
    args: Vec<String>,
    pub log: PathBuf,
    child: std::sync::Mutex<Option<Child>>,
    starts: u32,
}

impl Proc {
    fn new(name: &'static str, args: Vec<String>, log: PathBuf) -> Self {
        Proc {
            name,
            args,
            log,
            child: std::sync::Mutex::new(None),
            starts: 0,
        }
    }

    /// Start (again); stderr goes to the log file (appended).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(bin(self.name)?)
            .args(&self.args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", process_log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        *self
            .child
            .get_mut()
            .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.get_mut().ok().and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for an orderly exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.get_mut().ok().and_then(Option::take) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            loop {
                if let Some(st) = c.try_wait()? {
                    if !st.success() {
                        let log = self.log_text();
                        let tail: Vec<&str> = log.lines().rev().take(15).collect();
                        anyhow::bail!(
                            "{} exited with {st}; log tail:\n{}",
                            self.name,
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        );
                    }
                    return Ok(());
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    let _ = c.wait();
                    anyhow::bail!("{} did not stop on SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(Child::id))
    }

    /// The process's resident memory now and at its peak (VmRSS, VmHWM
    /// from /proc), in bytes.
    pub fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.pid().context("not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line
                .trim_start_matches(name)
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .is_ok_and(|mut g| g.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))))
    }

    /// The last lines of the log, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A hub process with its config and data folder.
pub struct Hub {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub data: PathBuf,
    /// The API for people, `https://127.0.0.1:PORT`.
    pub api: String,
    /// The deployment CA certificate (what `hub login --ca` trusts).
    pub ca: PathBuf,
    /// Saved sessions, one file per user (`ALPR_SESSION`).
    pub sessions: PathBuf,
    /// The PostgreSQL database this hub keeps its records in, when the
    /// tests run on PostgreSQL ([`test_backend`]); held as long as the hub,
    /// so a restarted hub finds its records again.
    pub database: Option<alpr_hub::store::postgres::cluster::TestDatabase>,
}

/// Where the hubs the tests start keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// redb in the hub's data folder (the default).
    Redb,
    /// A fresh PostgreSQL database per hub, in the cluster
    /// `ALPR_TEST_PG_URL` names (`scripts/test-pg.sh`) or one the test
    /// starts.
    Postgres,
}

/// The backend `ALPR_TEST_BACKEND` names (`redb`, the default, or
/// `postgres`); any other value is an error, so a typo never runs the
/// suite on the wrong store.
pub fn test_backend() -> anyhow::Result<TestBackend> {
    match std::env::var("ALPR_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("redb") => Ok(TestBackend::Redb),
        Ok("postgres") => Ok(TestBackend::Postgres),
        Ok(other) => anyhow::bail!("ALPR_TEST_BACKEND={other:?}: expected redb or postgres"),
    }
}

/// The password the test helpers give `user`.
/// A finished command's stdout then stderr, for messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn password_of(user: &str) -> String {
    format!("password-of-{user}")
}

/// `hub.toml` lines of one bulk list, `ncic` (NCIC files, OCR-equivalent
/// matching), for tests that import lists.
pub const NCIC_SOURCE: &str = r#"
[hotlist]
max_change = 0.5

[[hotlist.sources]]
name = "ncic"
format = "ncic"
strategy = "ocr-equivalent"
"#;

/// `n` logins of `user` at `hub` with wrong passwords, each refused as
/// such (not as locked).
pub fn wrong_logins(hub: &Hub, user: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        match hub.login_with(user, &format!("guess-number-{i}")) {
            Ok(()) => anyhow::bail!("a wrong password logged in"),
            Err(e) if e.to_string().contains("wrong username or password") => {}
            Err(e) => anyhow::bail!("refused otherwise: {e}"),
        }
    }
    Ok(())
}

/// A training record: (completed, expires), `YYYY-MM-DD`.
pub const TRAINED: (&str, &str) = ("2026-01-01", "2099-01-01");
/// A training that lapsed.
pub const LAPSED: (&str, &str) = ("2024-01-01", "2025-01-01");
/// The agency of the test users.
pub const AGENCY: &str = "CA0000001";

impl Hub {
    /// Start a hub on a free loopback port; `revoked` serials are refused.
    pub fn start(pki: &Pki, dir: &Path, revoked: &[String]) -> anyhow::Result<Hub> {
        Self::start_with(pki, dir, revoked, "")
    }

    /// [`Hub::start`] with more lines of `hub.toml` (which may set
    /// `idle_timeout`; the other keys written here must not repeat). On
    /// PostgreSQL ([`test_backend`]) the hub gets a `[store]` with a fresh
    /// database, unless `extra_toml` has its own `[store]` (hubs sharing
    /// one database).
    pub fn start_with(
        pki: &Pki,
        dir: &Path,
        revoked: &[String],
        extra_toml: &str,
    ) -> anyhow::Result<Hub> {
        let hub = Self::launch(pki, dir, revoked, extra_toml)?;
        hub.bootstrap("admin")?;
        hub.add_user("auditor", "auditor", TRAINED)?;
        hub.login("auditor")?;
        Ok(hub)
    }

    /// A second hub process on the database another one set up (its
    /// `[store]` in `extra_toml`): the administrator and the auditor that
    /// hub made log in here.
    pub fn join_with(pki: &Pki, dir: &Path, extra_toml: &str) -> anyhow::Result<Hub> {
        let hub = Self::launch(pki, dir, &[], extra_toml)?;
        hub.login("admin")?;
        hub.login("auditor")?;
        Ok(hub)
    }

    /// Write `hub.toml` in `dir`, start `hub serve`, and wait until it
    /// listens.
    fn launch(pki: &Pki, dir: &Path, revoked: &[String], extra_toml: &str) -> anyhow::Result<Hub> {
        let idle = if extra_toml.contains("idle_timeout") {
            ""
        } else {
            "idle_timeout = \"10s\"\n"
        };
        let port = free_udp_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let api_port = free_tcp_port()?;
        let api_toml = if extra_toml.contains("api_listen") {
            String::new()
        } else {
            format!("api_listen = \"127.0.0.1:{api_port}\"\n")
        };
        let data = dir.join("hub-data");
        let ca = pki.ca_dir();
        let revoked: Vec<String> = revoked.iter().map(|s| format!("{s:?}")).collect();
        // `[store]` goes last: a table header ends the top-level keys that
        // `extra_toml` may add.
        let database = match test_backend()? {
            TestBackend::Postgres if !extra_toml.contains("[store]") => {
                Some(alpr_hub::store::postgres::cluster::test_database()?)
            }
            _ => None,
        };
        let store_toml = database.as_ref().map_or(String::new(), |db| {
            format!(
                "\n[store]\nbackend = \"postgres\"\nurl = {:?}\npool_size = 4\n",
                db.url
            )
        });
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\n{api_toml}data_dir = {:?}\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\nrevoked = [{}]\nkeep_alive = \"1s\"\n{idle}{extra_toml}\n{store_toml}",
                data,
                ca.join("ca.crt"),
                ca.join("hub.crt"),
                ca.join("hub.key"),
                revoked.join(", ")
            ),
        )?;
        let mut proc = Proc::new(
            "hub",
            vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            dir.join("hub.log"),
        );
        proc.start()?;
        let sessions = dir.join("sessions");
        std::fs::create_dir_all(&sessions)?;
        let mut hub = Hub {
            proc,
            addr,
            config,
            data,
            api: format!("https://127.0.0.1:{api_port}"),
            ca: ca.join("ca.crt"),
            sessions,
            database,
        };
        hub.wait_listening(1)?;
        Ok(hub)
    }

    /// `hub` with `args`, as `user` (their saved session).
    pub fn as_user(&self, user: &str) -> anyhow::Result<Command> {
        let mut c = Command::new(bin("hub")?);
        c.env("ALPR_SESSION", self.sessions.join(format!("{user}.json")))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", process_log())
            .env_remove("ALPR_PASSWORD")
            .env_remove("ALPR_NEW_PASSWORD");
        Ok(c)
    }

    /// Run `hub ARGS` as `user`: whether it succeeded, and its stdout and
    /// stderr.
    pub fn run_text(&self, user: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let out = self.run_as(user, args)?;
        Ok((out.status.success(), output_text(&out)))
    }

    /// Run `hub ARGS` as `user`; its output whatever the exit status.
    pub fn run_as(&self, user: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(self.as_user(user)?.args(args).output()?)
    }

    /// Ready a case for export: the county DA (`CA0020000`, in-state) and
    /// the FBI (`DCFBI0000`, federal) in the policy, and supervisor `sup1`
    /// holding `case` over the reads of `plate` (files written in `dir`).
    pub fn hold_case_for_export(&self, dir: &Path, case: &str, plate: &str) -> anyhow::Result<()> {
        let agencies = dir.join("agencies.toml");
        std::fs::write(
            &agencies,
            "[[agencies]]\nori = \"CA0020000\"\nname = \"County District Attorney\"\nkind = \"in-state-public\"\n\n\
             [[agencies]]\nori = \"DCFBI0000\"\nname = \"FBI\"\nkind = \"federal\"\n",
        )?;
        let out = self
            .as_user("admin")?
            .args(["policy", "set"])
            .arg(&agencies)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "hub policy set: {}",
            output_text(&out)
        );
        self.add_user("sup1", "supervisor", TRAINED)?;
        self.login("sup1")?;
        let hold = [
            "hold", "add", "--case", case, "--reason", "robbery", "--plate", plate,
        ];
        let out = self.run_as("sup1", &hold)?;
        anyhow::ensure!(out.status.success(), "hub hold add: {}", output_text(&out));
        Ok(())
    }

    /// `user` imports `rows` as the NCIC source's next generation
    /// (`hub hotlist import`, a file written in `dir`).
    pub fn import_ncic(
        &self,
        user: &str,
        dir: &Path,
        rows: &[alpr_shared::hotlist::HotEntry],
    ) -> anyhow::Result<()> {
        let file = dir.join("extract.txt");
        std::fs::write(&file, alpr_shared::hotlist::sample::ncic(rows))?;
        let o = self.run_as(
            user,
            &[
                "hotlist",
                "import",
                &file.to_string_lossy(),
                "--source",
                "ncic",
                "--json",
            ],
        )?;
        anyhow::ensure!(o.status.success(), "import failed: {}", output_text(&o));
        Ok(())
    }

    /// `hub bootstrap` of the first administrator `user`, logged in.
    pub fn bootstrap(&self, user: &str) -> anyhow::Result<()> {
        let out = self
            .as_user(user)?
            .args(["bootstrap", "--config"])
            .arg(&self.config)
            .args([
                "--user",
                user,
                "--agency",
                AGENCY,
                "--training-completed",
                TRAINED.0,
                "--training-expires",
                TRAINED.1,
            ])
            .env("ALPR_PASSWORD", password_of(user))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "hub bootstrap: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.login(user)
    }

    /// `hub login` as `user` with their password; error with the hub's
    /// message when refused.
    pub fn login(&self, user: &str) -> anyhow::Result<()> {
        self.login_with(user, &password_of(user))
    }

    pub fn login_with(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let out = self
            .as_user(user)?
            .args(["login", "--hub", &self.api, "--ca"])
            .arg(&self.ca)
            .args(["--user", user])
            .env("ALPR_PASSWORD", password)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// A console client of this hub (HTTPS trusting the deployment CA),
    /// not logged in.
    pub fn console_client(&self) -> anyhow::Result<alpr_hub::console::client::ConsoleClient> {
        alpr_hub::console::client::ConsoleClient::new(&self.api, &std::fs::read(&self.ca)?)
    }

    /// A console client logged in as `user` through the login form (its
    /// 303 to the dashboard and the session cookie checked).
    pub async fn console(
        &self,
        user: &str,
    ) -> anyhow::Result<alpr_hub::console::client::ConsoleClient> {
        let mut c = self.console_client()?;
        let answer = c.login(user, &password_of(user)).await?;
        anyhow::ensure!(
            answer.status == 303,
            "console login of {user}: HTTP {}: {}",
            answer.status,
            answer.body
        );
        anyhow::ensure!(
            c.cookie("__Host-alpr_session").is_some(),
            "console login of {user}: no session cookie"
        );
        Ok(c)
    }

    /// The administrator adds `user` with `role` and a training record.
    pub fn add_user(&self, user: &str, role: &str, training: (&str, &str)) -> anyhow::Result<()> {
        self.add_user_in(user, role, training, AGENCY)
    }

    /// [`Hub::add_user`] in another agency.
    pub fn add_user_in(
        &self,
        user: &str,
        role: &str,
        training: (&str, &str),
        agency: &str,
    ) -> anyhow::Result<()> {
        let out = self
            .as_user("admin")?
            .args([
                "user",
                "add",
                user,
                "--agency",
                agency,
                "--title",
                "Test user",
                "--role",
                role,
                "--training-completed",
                training.0,
                "--training-expires",
                training.1,
            ])
            .env("ALPR_NEW_PASSWORD", password_of(user))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "hub user add {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Wait for the hub's `times`-th "hub listening"; on failure the error
    /// carries the end of its log (why it did not start).
    fn wait_listening(&mut self, times: usize) -> anyhow::Result<()> {
        wait_for(Duration::from_secs(30), "the hub to listen", || {
            (self.proc.log_text().matches("hub listening").count() >= times).then_some(())
        })
        .map_err(|e| e.context(format!("the hub's log ends:\n{}", self.proc.log_tail(20))))
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        let n = self.proc.log_text().matches("hub listening").count();
        self.proc.start()?;
        self.wait_listening(n + 1)
    }

    /// `hub nodes --json` as the auditor, parsed.
    pub fn nodes(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.run_as("auditor", &["nodes", "--json"])?;
        anyhow::ensure!(
            out.status.success(),
            "hub nodes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// What the hub durably holds for `device`, read from the store its
    /// `hub.toml` names (with redb, the hub must be stopped).
    pub fn stored_entries(&self, device: &str) -> anyhow::Result<Vec<SignedEntry>> {
        use alpr_hub::config::StoreBackend;
        use alpr_hub::store::HubStorage;
        let config = alpr_hub::config::HubConfig::load(&self.config)?;
        let store: Box<dyn HubStorage> = match config.store.backend {
            StoreBackend::Redb => {
                Box::new(alpr_hub::store::redb::RedbStore::open(&config.db_path())?)
            }
            StoreBackend::Postgres => Box::new(alpr_hub::store::postgres::PgStore::open(
                &config.postgres()?,
            )?),
        };
        let raw = store.entries(&DeviceId::new(device)?, 0, usize::MAX)?;
        raw.iter().map(|b| Ok(SignedEntry::decode(b)?)).collect()
    }
}

/// An edge process with its config and data folder.
pub struct Edge {
    pub proc: Proc,
    pub config: PathBuf,
    pub data: PathBuf,
}

/// What an edge's config says beyond its identity.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Generate reads until the log holds this many.
    pub generate: u64,
    pub interval: Duration,
    pub images: bool,
    pub metered: bool,
    pub backoff_max: Duration,
    /// More TOML appended to the config (e.g. a `[capture]` section).
    pub extra_toml: String,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        EdgeOptions {
            generate: 500,
            interval: Duration::ZERO,
            images: false,
            metered: false,
            backoff_max: Duration::from_secs(2),
            extra_toml: String::new(),
        }
    }
}

impl Edge {
    /// Run `edge ARGS --config` of this node as an officer of
    /// [`officer_toml`] (session file `session`, [`OFFICER_PASSWORD`]):
    /// whether it succeeded, and its stdout and stderr.
    pub fn run_as_officer(&self, session: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let out = Command::new(bin("edge")?)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("NO_COLOR", "1")
            .env("ALPR_SESSION", session)
            .env("ALPR_PASSWORD", OFFICER_PASSWORD)
            .output()?;
        Ok((out.status.success(), output_text(&out)))
    }

    pub fn start(
        node: &NodeFiles,
        hub: SocketAddr,
        dir: &Path,
        opts: &EdgeOptions,
    ) -> anyhow::Result<Edge> {
        Self::start_hubs(node, &[hub], dir, opts)
    }

    /// [`Edge::start`] with several hubs (`hubs` in `edge.toml`), tried in
    /// this order.
    pub fn start_hubs(
        node: &NodeFiles,
        hubs: &[SocketAddr],
        dir: &Path,
        opts: &EdgeOptions,
    ) -> anyhow::Result<Edge> {
        let data = dir.join(format!("edge-{}", node.name));
        let config = dir.join(format!("edge-{}.toml", node.name));
        let hub = match hubs {
            [one] => format!("hub = \"{one}\""),
            several => {
                let quoted: Vec<String> = several.iter().map(|h| format!("\"{h}\"")).collect();
                format!("hubs = [{}]", quoted.join(", "))
            }
        };
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n{hub}\ncert = {:?}\nkey = {:?}\nca_cert = {:?}\n\n[sync]\nmetered = {}\nkeep_alive = \"1s\"\nidle_timeout = \"10s\"\nbackoff_min = \"100ms\"\nbackoff_max = \"{}ms\"\nretransmit_after = \"5s\"\n\n[replay]\ngenerate = {}\ninterval = \"{}ms\"\nimages = {}\n{}",
                data,
                node.cert,
                node.key,
                node.ca,
                opts.metered,
                opts.backoff_max.as_millis(),
                opts.generate,
                opts.interval.as_millis(),
                opts.images,
                opts.extra_toml,
            ),
        )?;
        let mut proc = Proc::new(
            "edge",
            vec![
                "run".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            dir.join(format!("edge-{}.log", node.name)),
        );
        proc.start()?;
        Ok(Edge { proc, config, data })
    }

    /// `edge status --json`, parsed (None while the node is not up).
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(bin("edge").ok()?)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .env("NO_COLOR", "1")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Wait until the node's log holds `n` reads, all acknowledged by the hub.
    pub fn wait_synced(&self, n: u64, limit: Duration) -> anyhow::Result<serde_json::Value> {
        wait_for(limit, &format!("{n} reads acknowledged"), || {
            let s = self.status()?;
            (s["log_size"].as_u64() == Some(n) && s["acked"].as_u64() == Some(n)).then_some(s)
        })
    }

    /// The node's own log (the node must be stopped).
    pub fn stored_entries(&self) -> anyhow::Result<Vec<SignedEntry>> {
        alpr_edge::store::read_log(&self.data.join("edge.redb")).map_err(Into::into)
    }
}

/// A TCP port free right now on loopback.
pub fn free_tcp_port() -> anyhow::Result<u16> {
    let s = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// A UDP port free right now on loopback.
pub fn free_udp_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// A hand-driven node connection speaking the sync protocol frame by frame,
/// for tests that send what a well-behaved edge never would.
pub mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use alpr_shared::types::DeviceId;
    use alpr_shared::wire::quic::{self, Liveness};
    use alpr_shared::wire::{Frame, Hello, Lane, ALPN, PROTOCOL_VERSION};

    use super::NodeFiles;

    pub struct RawNode {
        pub endpoint: quinn::Endpoint,
        pub conn: quinn::Connection,
    }

    impl RawNode {
        pub async fn connect(hub: SocketAddr, node: &NodeFiles) -> anyhow::Result<RawNode> {
            let cfg = quic::client_config(
                &std::fs::read(&node.ca)?,
                &std::fs::read(&node.cert)?,
                &std::fs::read(&node.key)?,
                ALPN,
                Liveness {
                    keep_alive: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(10),
                },
            )?;
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
            endpoint.set_default_client_config(cfg);
            let conn = endpoint.connect(hub, "localhost")?.await?;
            Ok(RawNode { endpoint, conn })
        }

        /// Open a stream of `lane`, send `frame`, and return the answer.
        pub async fn exchange(&self, lane: Lane, frames: &[Frame]) -> anyhow::Result<Vec<Frame>> {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            send.write_all(&[lane.tag()]).await?;
            let mut out = Vec::new();
            for f in frames {
                quic::write_frame(&mut send, f).await?;
                out.push(quic::read_frame(&mut recv, lane.max_frame()).await?);
            }
            Ok(out)
        }

        pub async fn hello(&self, device: &str) -> anyhow::Result<Frame> {
            let f = Frame::Hello(Hello {
                version: PROTOCOL_VERSION,
                device: DeviceId::new(device)?,
                log_size: 0,
                // Says it holds every policy: the hub pushes none.
                policy_version: u64::MAX,
                hotlists: Vec::new(),
            });
            let mut r = self.exchange(Lane::Control, &[f]).await?;
            r.pop().ok_or_else(|| anyhow::anyhow!("no answer"))
        }

        /// Write raw bytes on a new stream of `lane`; returns whether the hub
        /// reset or stopped the stream (instead of answering).
        pub async fn send_raw(&self, lane: Lane, bytes: &[u8]) -> anyhow::Result<bool> {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            send.write_all(&[lane.tag()]).await?;
            let _ = send.write_all(bytes).await;
            let _ = send.finish();
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                quic::read_frame(&mut recv, lane.max_frame()),
            )
            .await;
            Ok(matches!(r, Ok(Err(_))))
        }

        pub async fn close(self) {
            self.conn.close(0u32.into(), b"done");
            self.endpoint.wait_idle().await;
        }
    }
}
