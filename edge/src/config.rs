//! `edge.toml`. Every field has a default that works for a local setup
//! (a node enrolled with `hub pki enroll --out certs/dev/node`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Folder of the store (`edge.redb`) and the status socket.
    pub data_dir: PathBuf,
    /// The hub's UDP address.
    pub hub: SocketAddr,
    /// The name the hub's certificate must carry.
    pub hub_name: String,
    /// This node's certificate and key, and the deployment CA.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_cert: PathBuf,
    pub sync: SyncConfig,
    pub replay: ReplayConfig,
    /// Frames recognised into reads: the node's camera.
    pub capture: crate::pipeline::CaptureConfig,
    /// Where `/metrics` (Prometheus) and `/healthz` are served; off when
    /// unset. Keep it on loopback unless a scraper elsewhere needs it.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Sync in the background at all.
    pub enabled: bool,
    /// The link is metered (cellular): images wait unless allowed.
    pub metered: bool,
    pub images_on_metered: bool,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Entries per frame and unacknowledged entries at most.
    pub batch_entries: usize,
    pub window_entries: u64,
    /// Resend from the last receipt after this long without one.
    #[serde(with = "humantime_serde")]
    pub retransmit_after: Duration,
}

/// A source of reads until recognition is plugged in: a JSON-lines file
/// and/or generated reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// JSON lines, one read each (see `crate::replay::ReplayLine`).
    pub file: Option<PathBuf>,
    /// Generate reads until the log holds this many (0: none).
    pub generate: u64,
    /// Pause between generated or replayed reads.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Give generated reads small synthetic images.
    pub images: bool,
    pub site_id: String,
    pub camera: String,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            data_dir: PathBuf::from("edge-data"),
            hub: SocketAddr::from(([127, 0, 0, 1], 4433)),
            hub_name: "localhost".into(),
            cert: PathBuf::from("certs/dev/node/node.crt"),
            key: PathBuf::from("certs/dev/node/node.key"),
            ca_cert: PathBuf::from("certs/dev/node/ca.crt"),
            sync: SyncConfig::default(),
            replay: ReplayConfig::default(),
            capture: crate::pipeline::CaptureConfig::default(),
            metrics_listen: None,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        let core = alpr_shared::sync::EdgeConfig::default();
        SyncConfig {
            enabled: true,
            metered: false,
            images_on_metered: false,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            backoff_min: core.backoff_min,
            backoff_max: core.backoff_max,
            batch_entries: core.batch_entries,
            window_entries: core.window_entries,
            retransmit_after: core.retransmit_after,
        }
    }
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            file: None,
            generate: 0,
            interval: Duration::from_millis(0),
            images: false,
            site_id: "site-1".into(),
            camera: "cam-1".into(),
        }
    }
}

impl EdgeConfig {
    /// Read a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut c: EdgeConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.data_dir, &mut c.cert, &mut c.key, &mut c.ca_cert] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let capture_paths = c
            .capture
            .paths
            .iter_mut()
            .chain(c.capture.models_dir.as_mut());
        for f in c.replay.file.iter_mut().chain(capture_paths) {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        Ok(c)
    }

    /// `edge.toml` in the current folder if there is one, else defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None if Path::new("edge.toml").exists() => Self::load(Path::new("edge.toml")),
            None => Ok(Self::default()),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("edge.redb")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("edge.sock")
    }

    pub fn core(&self) -> alpr_shared::sync::EdgeConfig {
        alpr_shared::sync::EdgeConfig {
            batch_entries: self
                .sync
                .batch_entries
                .clamp(1, alpr_shared::wire::MAX_ENTRIES_PER_FRAME),
            window_entries: self.sync.window_entries.max(1),
            retransmit_after: self.sync.retransmit_after,
            backoff_min: self.sync.backoff_min,
            backoff_max: self.sync.backoff_max.max(self.sync.backoff_min),
            metered: self.sync.metered,
            images_on_metered: self.sync.images_on_metered,
            ..alpr_shared::sync::EdgeConfig::default()
        }
    }
}
