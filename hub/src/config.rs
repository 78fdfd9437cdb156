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
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(20),
            node_buffer_bytes: 24 * 1024 * 1024,
            buffer_bytes: 256 * 1024 * 1024,
            refusal_retention: Duration::from_secs(30 * 24 * 3600),
            db_cache_bytes: 256 * 1024 * 1024,
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
