//! `hub.toml`. Every field has a default that works for a local setup
//! (certificates from `hub pki init --out certs/dev/ca`).
//!
//! The hub has a TLS identity (`cert`, `key`) and one signing key per
//! purpose (`[keys.receipt]`, `[keys.policy]`, `[keys.hotlist]`,
//! `[keys.log]`, `[keys.export]`, each a `cert` and a `key`), by default
//! `<purpose>.crt` and `<purpose>.key` beside `cert`, as `hub pki init`
//! writes them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alpr_shared::settings::{Checker, InvalidSetting};
use alpr_shared::types::UnixMillis;
use serde::Deserialize;

mod key_files;
pub use key_files::{KeyFiles, SigningKeys};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Folder of the database (`hub.redb`).
    pub data_dir: PathBuf,
    /// The deployment CA certificate.
    pub ca_cert: PathBuf,
    /// The hub's TLS certificate and key (the QUIC port for nodes, and the
    /// API unless `api_cert` is set). This key signs nothing else.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The signing keys, one per purpose (`[keys.<purpose>]`).
    pub keys: SigningKeys,
    /// Revoked node certificates: a serial number (hex, as `hub pki enroll`
    /// prints it; effective from when the hub first loads it) or a table
    /// `{ serial = "..", at = "RFC 3339 time", reason = ".." }`.
    pub revoked: Vec<RevokedEntry>,
    /// Concurrent connections, at most.
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Where `/metrics` (Prometheus) and `/healthz` are served; off when
    /// unset. Keep it on loopback unless a scraper elsewhere needs it.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS handshakes in progress, at most: a budget apart from
    /// `max_connections`, whose permits only authenticated nodes take.
    pub max_handshakes: usize,
    /// A handshake not finished within this is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Bytes of frames one node may have in the hub (being read, verified,
    /// queued for the writer), at most. At least two image frames.
    pub node_buffer_bytes: usize,
    /// Bytes of frames all nodes together may have in the hub, at most.
    pub buffer_bytes: usize,
    /// Refusals of unauthenticated sources are kept this long.
    #[serde(with = "humantime_serde")]
    pub refusal_retention: Duration,
    /// Memory for the database's page cache, at most.
    pub db_cache_bytes: usize,
    /// How often retention purges reads past `policy.hub_retention_days`
    /// that no legal hold covers (also `hub retention run`).
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// The policy edges enforce (version 1, and a new version whenever this
    /// section changes): retention, purposes, agencies, officers.
    pub policy: crate::policy::PolicySettings,
    /// TCP address of the HTTPS API for people (`hub login`, `hub nodes`,
    /// `hub user`, `hub audit`, …).
    pub api_listen: SocketAddr,
    /// The API's TLS certificate and key; the hub's own (`cert`, `key`,
    /// issued by the deployment CA) when unset.
    pub api_cert: Option<PathBuf>,
    pub api_key: Option<PathBuf>,
    /// API connections at once, at most.
    pub api_max_connections: usize,
    /// An API request not answered within this is cut off.
    #[serde(with = "humantime_serde")]
    pub api_request_timeout: Duration,
    /// Largest API request body.
    pub api_body_limit: usize,
    /// A session ends after this long without a request…
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// …or this long after login, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    /// Failed logins of one username within `login_window` that lock it.
    pub login_failures: u32,
    /// Failed logins from one source address within `login_window` that
    /// lock it.
    pub login_source_failures: u32,
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// How long a locked username or source is refused.
    #[serde(with = "humantime_serde")]
    pub login_lockout: Duration,
    /// Bulk hotlists (`[hotlist]`, `[[hotlist.sources]]`): which lists may
    /// be imported, how they match, how many generations are kept.
    pub hotlist: crate::hotlist::HotlistConfig,
    /// The web console (`[console]`): its map tiles.
    pub console: ConsoleConfig,
    /// Where the hub keeps everything (`[store]`): the embedded redb file
    /// in `data_dir` (the default), or a PostgreSQL database shared by
    /// several hub processes.
    pub store: StoreConfig,
}

/// A store opened from `[store]`, and the redb recovery wrapper when
/// that is the backend (for health reports).
pub type OpenedStore = (
    std::sync::Arc<dyn crate::store::HubStorage>,
    Option<std::sync::Arc<crate::store::recovering::Recovering>>,
);

/// `[store]` in `hub.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// PostgreSQL: the connection URL (`postgres://user@host:port/db`,
    /// with `sslmode=require` for TLS). A password is better given in
    /// `PGPASSWORD` or a `passfile` than here.
    pub url: Option<String>,
    /// PostgreSQL: connections in this process's pool (default 8).
    pub pool_size: Option<usize>,
    /// PostgreSQL over TLS: the CA certificate (PEM) the database's
    /// certificate must chain to; with it, TLS is required.
    pub tls_ca: Option<PathBuf>,
}

/// Which database the hub keeps its records in.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One file in `data_dir`, one hub process.
    #[default]
    Redb,
    /// A PostgreSQL database, any number of hub processes.
    Postgres,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from("hub-data"),
            ca_cert: PathBuf::from("certs/dev/ca/ca.crt"),
            cert: PathBuf::from("certs/dev/ca/hub.crt"),
            key: PathBuf::from("certs/dev/ca/hub.key"),
            keys: SigningKeys::default(),
            revoked: Vec::new(),
            max_connections: 1024,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            metrics_listen: None,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(20),
            node_buffer_bytes: 24 * 1024 * 1024,
            buffer_bytes: 256 * 1024 * 1024,
            refusal_retention: Duration::from_secs(30 * 24 * 3600),
            db_cache_bytes: 256 * 1024 * 1024,
            retention_interval: Duration::from_secs(3600),
            policy: crate::policy::PolicySettings::default(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            api_cert: None,
            api_key: None,
            api_max_connections: 256,
            api_request_timeout: Duration::from_secs(60),
            api_body_limit: 1024 * 1024,
            session_idle: Duration::from_secs(15 * 60),
            session_max: Duration::from_secs(8 * 3600),
            login_failures: 5,
            login_source_failures: 20,
            login_window: Duration::from_secs(15 * 60),
            login_lockout: Duration::from_secs(15 * 60),
            hotlist: crate::hotlist::HotlistConfig::default(),
            console: ConsoleConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// The configuration at `path`; without one, `hub.toml` if present, else
/// the defaults (a working local setup).
pub fn load_config(path: Option<&Path>) -> anyhow::Result<HubConfig> {
    match path {
        Some(p) => HubConfig::load(p),
        None if Path::new("hub.toml").exists() => HubConfig::load(Path::new("hub.toml")),
        None => Ok(HubConfig::default()),
    }
}

impl HubConfig {
    /// The API's certificate and key files.
    pub fn api_tls_files(&self) -> (&Path, &Path) {
        (
            self.api_cert.as_deref().unwrap_or(&self.cert),
            self.api_key.as_deref().unwrap_or(&self.key),
        )
    }

    /// Where a client on this machine reaches the API.
    pub fn api_local(&self) -> SocketAddr {
        let mut a = self.api_listen;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        a
    }

    /// Users' session lifetimes and login throttling.
    pub fn users(&self) -> crate::users::UsersConfig {
        crate::users::UsersConfig {
            session_idle: self.session_idle,
            session_max: self.session_max,
            throttle: crate::users::ThrottleConfig {
                user_failures: self.login_failures,
                source_failures: self.login_source_failures,
                window: self.login_window,
                lockout: self.login_lockout,
            },
        }
    }

    /// Read a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut c: HubConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.data_dir, &mut c.ca_cert, &mut c.cert, &mut c.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [
            c.api_cert.as_mut(),
            c.api_key.as_mut(),
            c.store.tls_ca.as_mut(),
        ]
        .into_iter()
        .flatten()
        .chain(c.keys.paths_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        c.validate(path)?;
        for r in &mut c.revoked {
            let raw = r.raw().to_owned();
            r.check().map_err(|e| {
                Checker::new(path).invalid("revoked", format!("{raw:?}"), format!("{e:#}"))
            })?;
        }
        Ok(c)
    }

    /// Every field within its range; `file` names the config in the error.
    pub fn validate(&self, file: &Path) -> Result<(), InvalidSetting> {
        let c = Checker::new(file);
        c.number(
            "max_connections",
            self.max_connections,
            1,
            MAX_CONNECTIONS_LIMIT,
        )?;
        c.duration(
            "idle_timeout",
            self.idle_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        c.duration(
            "keep_alive",
            self.keep_alive,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        c.shorter(
            "keep_alive",
            self.keep_alive,
            "idle_timeout",
            self.idle_timeout,
        )?;
        c.number("api_max_connections", self.api_max_connections, 1, 65_536)?;
        c.number(
            "api_body_limit",
            self.api_body_limit,
            1024,
            64 * 1024 * 1024,
        )?;
        c.duration(
            "api_request_timeout",
            self.api_request_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        c.duration(
            "session_idle",
            self.session_idle,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        )?;
        c.duration(
            "session_max",
            self.session_max,
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        )?;
        c.number("login_failures", self.login_failures as usize, 1, 1000)?;
        c.number(
            "login_source_failures",
            self.login_source_failures as usize,
            1,
            100_000,
        )?;
        c.duration(
            "login_window",
            self.login_window,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        )?;
        c.duration(
            "login_lockout",
            self.login_lockout,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        )?;
        for (field, p) in [
            ("data_dir", &self.data_dir),
            ("ca_cert", &self.ca_cert),
            ("cert", &self.cert),
            ("key", &self.key),
        ] {
            c.not_empty(field, &p.to_string_lossy())?;
        }
        if let Err(e) = self.hotlist.validate() {
            return Err(c.invalid("hotlist", "[hotlist]", e));
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hub.redb")
    }

    /// The PostgreSQL settings of `[store]` (backend `postgres`).
    pub fn postgres(&self) -> anyhow::Result<crate::store::postgres::PgConfig> {
        use anyhow::Context;
        let url = self
            .store
            .url
            .clone()
            .context("[store] backend = \"postgres\" needs a url")?;
        Ok(crate::store::postgres::PgConfig {
            url,
            pool_size: self.store.pool_size.unwrap_or(8),
            tls_ca: self.store.tls_ca.clone(),
        })
    }

    /// The certificate of the hub's log key (`[keys.log]`, its first PEM
    /// block), DER: what the hub's access log verifies under.
    pub fn log_certificate(&self) -> anyhow::Result<Vec<u8>> {
        use anyhow::Context;
        let (cert, _) = self.signing_files(alpr_shared::cert::KeyPurpose::Log);
        let cert_pem = std::fs::read(&cert)
            .with_context(|| format!("reading {} (the log key's certificate)", cert.display()))?;
        alpr_shared::cert::pem_certificates(&cert_pem)
            .context("the log key's certificate")?
            .into_iter()
            .next()
            .context("no certificate in the log key's certificate file")
    }

    /// The deployment's CA, from `ca_cert`.
    pub fn anchor(&self) -> anyhow::Result<alpr_shared::cert::TrustAnchor> {
        use anyhow::Context;
        let ca = std::fs::read(&self.ca_cert)
            .with_context(|| format!("reading {}", self.ca_cert.display()))?;
        alpr_shared::cert::TrustAnchor::from_pem(&ca).context("the CA certificate")
    }

    /// The hub's own access log on `storage`, as `hub serve` writes it:
    /// signed with the hub's log key (checked against the CA) under its
    /// certificate's name. The operator tools that open the store (`hub
    /// store check`, `hub migrate`) record themselves in it the same way.
    pub fn start_access_log(
        &self,
        storage: std::sync::Arc<dyn crate::store::HubStorage>,
    ) -> anyhow::Result<crate::access::AccessLog> {
        use anyhow::Context;
        let key: alpr_shared::signer::HubKey<alpr_shared::signer::LogSigning> =
            self.signing_key(&self.anchor()?)?;
        crate::access::AccessLog::start(storage, key).context("starting the access log")
    }

    /// Open the store `[store]` names. The redb file is wrapped so that a
    /// broken file is recovered ([`crate::store::recovering::Recovering`],
    /// returned too for health reports); PostgreSQL is migrated to this
    /// binary's schema on open, and refused if newer.
    pub fn open_storage(&self) -> anyhow::Result<OpenedStore> {
        use anyhow::Context;
        match self.store.backend {
            StoreBackend::Redb => {
                alpr_shared::private::create_private_dir(&self.data_dir)?;
                let r = std::sync::Arc::new(
                    crate::store::recovering::Recovering::open(
                        &self.db_path(),
                        self.db_cache_bytes,
                    )
                    .context("opening the hub database")?,
                );
                alpr_shared::private::make_private(&self.db_path())?;
                Ok((r.clone(), Some(r)))
            }
            StoreBackend::Postgres => {
                let pg = crate::store::postgres::PgStore::open(&self.postgres()?)
                    .context("opening the PostgreSQL store")?;
                Ok((std::sync::Arc::new(pg), None))
            }
        }
    }
}

/// Connections one hub accepts at most, whatever the config says.
pub const MAX_CONNECTIONS_LIMIT: usize = 100_000;

/// A revoked serial that is not a certificate serial number.
#[derive(Debug, thiserror::Error)]
#[error("a certificate serial number in hex (up to 40 digits, ':' between bytes allowed), as `openssl x509 -serial` prints it")]
pub struct InvalidSerial {
    pub serial: String,
}

/// Check a certificate serial number written in hex (`0A:1B…`, `0a1b…`,
/// `serial=0A1B…`) and return its normal form: lower-case hex without
/// separators. Anything else is refused, never silently revoking nothing.
pub fn valid_serial(s: &str) -> Result<String, InvalidSerial> {
    let bad = || InvalidSerial {
        serial: s.to_owned(),
    };
    let t = s.trim();
    let t = t.strip_prefix("serial=").unwrap_or(t);
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() || t.starts_with(':') || t.ends_with(':') || t.contains("::") {
        return Err(bad());
    }
    if !t.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
        return Err(bad());
    }
    let hex = normalise_serial(t);
    // RFC 5280: at most 20 octets.
    if hex.is_empty() || hex.len() > 40 {
        return Err(bad());
    }
    Ok(hex)
}

/// One `revoked` item of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RevokedEntry {
    /// A serial number, effective from when the hub first loads it.
    Serial(String),
    /// A serial number with the time revocation took effect.
    Table {
        serial: String,
        /// RFC 3339 in UTC, e.g. `2026-11-28T16:00:00Z`; absent: when the
        /// hub first loads it.
        #[serde(default)]
        at: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl RevokedEntry {
    /// The serial number as written.
    pub fn raw(&self) -> &str {
        match self {
            RevokedEntry::Serial(s) | RevokedEntry::Table { serial: s, .. } => s,
        }
    }

    /// The serial number in normal form (lower-case hex, no separators).
    pub fn serial(&self) -> String {
        valid_serial(self.raw()).unwrap_or_else(|_| normalise_serial(self.raw()))
    }

    /// The effective time given, if any.
    pub fn at(&self) -> anyhow::Result<Option<UnixMillis>> {
        match self {
            RevokedEntry::Table { at: Some(t), .. } => parse_time(t).map(Some),
            _ => Ok(None),
        }
    }

    pub fn reason(&self) -> String {
        match self {
            RevokedEntry::Table {
                reason: Some(r), ..
            } => r.clone(),
            _ => "listed in the hub configuration".into(),
        }
    }

    /// A serial number that is hex (kept in normal form), and a time that
    /// parses.
    fn check(&mut self) -> anyhow::Result<()> {
        let normal = valid_serial(self.raw())?;
        match self {
            RevokedEntry::Serial(s) | RevokedEntry::Table { serial: s, .. } => *s = normal,
        }
        self.at()?;
        Ok(())
    }
}

/// An RFC 3339 time in UTC (`2026-11-28T16:00:00Z`).
pub fn parse_time(s: &str) -> anyhow::Result<UnixMillis> {
    Ok(alpr_shared::cli::parse_time(s)?)
}

/// Serial numbers compare as lower-case hex without separators.
pub fn normalise_serial(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `[console]` in `hub.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A map tile server on the agency's own network, as a template with
    /// `{z}`, `{x}` and `{y}` (`https://tiles.example/{z}/{x}/{y}.png`).
    /// Unset: maps are drawn from the nodes' positions alone.
    pub tile_url: Option<String>,
    /// What the tiles' licence asks to be shown under the map.
    pub tile_attribution: Option<String>,
}

impl ConsoleConfig {
    /// The origin (`https://host:port`) of the tile server, for the
    /// Content-Security-Policy.
    pub fn tile_origin(&self) -> Option<String> {
        let url = self.tile_url.as_deref()?;
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split('/').next()?;
        if host.is_empty() || !matches!(scheme, "https" | "http") {
            return None;
        }
        Some(format!("{scheme}://{host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> anyhow::Result<HubConfig> {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("hub.toml");
        std::fs::write(&p, toml).expect("write");
        HubConfig::load(&p)
    }

    fn refused(toml: &str, field: &str, value: &str, allowed: &str) {
        let e = format!("{:#}", load(toml).expect_err(toml));
        assert!(e.contains("hub.toml"), "names the file: {e}");
        assert!(
            e.contains(&format!("{field} = {value}")),
            "names field and value: {e}"
        );
        assert!(e.contains(allowed), "names the range {allowed:?}: {e}");
    }

    #[test]
    fn defaults_and_an_empty_file_are_valid() {
        HubConfig::default()
            .validate(Path::new("hub.toml"))
            .expect("defaults valid");
        load("").expect("empty file");
    }

    #[test]
    fn zero_connections_are_refused() {
        refused(
            "max_connections = 0",
            "max_connections",
            "0",
            "from 1 to 100000",
        );
        refused(
            "max_connections = 100001",
            "max_connections",
            "100001",
            "from 1 to 100000",
        );
        assert_eq!(load("max_connections = 1").expect("1").max_connections, 1);
    }

    #[test]
    fn zero_idle_timeout_is_refused() {
        refused(
            "idle_timeout = \"0s\"",
            "idle_timeout",
            "\"0s\"",
            "from 1s to 1h",
        );
        refused(
            "idle_timeout = \"2h\"",
            "idle_timeout",
            "\"2h\"",
            "from 1s to 1h",
        );
    }

    #[test]
    fn keep_alive_must_be_shorter_than_idle_timeout() {
        refused(
            "keep_alive = \"30s\"\nidle_timeout = \"30s\"",
            "keep_alive",
            "\"30s\"",
            "less than idle_timeout",
        );
        refused("keep_alive = \"0s\"", "keep_alive", "\"0s\"", "from 100ms");
        load("keep_alive = \"10s\"\nidle_timeout = \"30s\"").expect("valid");
    }

    #[test]
    fn malformed_revoked_serials_are_refused() {
        refused(
            "revoked = [\"not-a-serial\"]",
            "revoked",
            "\"not-a-serial\"",
            "serial number in hex",
        );
        refused(
            "revoked = [\"\"]",
            "revoked",
            "\"\"",
            "serial number in hex",
        );
        let c = load("revoked = [\"0A:1B:FF\", \"serial=0A1BFE\"]").expect("valid serials");
        let serials: Vec<String> = c.revoked.iter().map(RevokedEntry::serial).collect();
        assert_eq!(serials, vec!["0a1bff".to_string(), "0a1bfe".to_string()]);
    }

    #[test]
    fn valid_serial_accepts_openssl_forms_only() {
        assert_eq!(valid_serial("0A:1B").expect("colons"), "0a1b");
        assert_eq!(valid_serial(" 0x0a1b ").expect("0x"), "0a1b");
        for bad in ["", ":", "0A::1B", "zz", "0A-1B", "12 34", &"a".repeat(41)] {
            assert!(valid_serial(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_ca_key_beside_the_hub_key_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let c = HubConfig {
            key: d.path().join("hub.key"),
            ..HubConfig::default()
        };
        c.check_ca_key_apart().expect("no ca.key: fine");
        std::fs::write(d.path().join("ca.key"), b"secret").expect("write");
        let e = c.check_ca_key_apart().expect_err("ca.key beside hub.key");
        assert!(e.to_string().contains("CA private key"), "{e}");
    }

    #[test]
    fn the_ca_key_under_another_name_is_found_by_its_public_key() {
        let d = tempfile::tempdir().expect("tmp");
        let ca = alpr_shared::pki::new_ca("Test PD", 30).expect("ca");
        let other = alpr_shared::pki::new_ca("Other PD", 30).expect("other");
        std::fs::write(d.path().join("ca.crt"), &ca.cert_pem).expect("write");
        let c = HubConfig {
            key: d.path().join("hub.key"),
            ca_cert: d.path().join("ca.crt"),
            ..HubConfig::default()
        };
        // Another CA's key beside ours is not ours: fine.
        std::fs::write(d.path().join("backup.pem"), other.key_pem.as_bytes()).expect("write");
        c.check_ca_key_apart()
            .expect("a foreign key is not the CA key");
        std::fs::write(d.path().join("backup.pem"), ca.key_pem.as_bytes()).expect("write");
        let e = c
            .check_ca_key_apart()
            .expect_err("the CA key as backup.pem");
        assert!(e.to_string().contains("backup.pem"), "{e}");
    }

    #[test]
    fn revoked_takes_both_forms() {
        let c: HubConfig = toml::from_str(
            r#"revoked = ["0A:1b", { serial = "ff01", at = "2026-11-28T16:00:00Z", reason = "stolen" }]"#,
        )
        .expect("parses");
        assert_eq!(c.revoked[0].serial(), "0a1b");
        assert_eq!(c.revoked[0].at().expect("no time"), None);
        assert_eq!(c.revoked[1].serial(), "ff01");
        assert_eq!(
            c.revoked[1].at().expect("time"),
            Some(UnixMillis(1_795_881_600_000))
        );
        assert_eq!(c.revoked[1].reason(), "stolen");
        let bad = RevokedEntry::Table {
            serial: "ff".into(),
            at: Some("yesterday".into()),
            reason: None,
        };
        assert!(bad.at().is_err());
    }
}
