//! `hub.toml`. Every field has a default that works for a local setup
//! (certificates from `hub pki init --out certs/dev/ca`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Folder of the database (`hub.redb`).
    pub data_dir: PathBuf,
    /// The deployment CA certificate.
    pub ca_cert: PathBuf,
    /// The hub's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Serial numbers (hex, as `hub pki enroll` prints them) of revoked
    /// node certificates.
    pub revoked: Vec<String>,
    /// Concurrent connections, at most.
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Where `/metrics` (Prometheus) and `/healthz` are served; off when
    /// unset. Keep it on loopback unless a scraper elsewhere needs it.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            data_dir: PathBuf::from("hub-data"),
            ca_cert: PathBuf::from("certs/dev/ca/ca.crt"),
            cert: PathBuf::from("certs/dev/ca/hub.crt"),
            key: PathBuf::from("certs/dev/ca/hub.key"),
            revoked: Vec::new(),
            max_connections: 1024,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            metrics_listen: None,
        }
    }
}

impl HubConfig {
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
        c.revoked = c.revoked.iter().map(|s| normalise_serial(s)).collect();
        Ok(c)
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hub.redb")
    }
}

/// Serial numbers compare as lower-case hex without separators.
pub fn normalise_serial(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
