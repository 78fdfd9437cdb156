//! `edge.toml`. Every field has a default that works for a local setup
//! (a node enrolled with `hub pki enroll --out certs/dev/node`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alpr_shared::settings::{Checker, InvalidSetting};
use serde::Deserialize;

mod capture;
pub use capture::{CameraConfig, CameraUrl, CaptureConfig, Direction, GpsFix, RtspTransport};

/// The hub's address when the config names none: a local setup.
pub const DEFAULT_HUB: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    4433,
));

/// Unacknowledged entries an edge may have in flight, at most.
pub const MAX_WINDOW_ENTRIES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Folder of the store (`edge.redb`) and the status socket.
    pub data_dir: PathBuf,
    /// The hub's UDP address (one hub; `hubs` for several). Neither:
    /// [`DEFAULT_HUB`].
    #[serde(default)]
    pub hub: Option<SocketAddr>,
    /// Several hub processes sharing one database, tried in this order:
    /// when one cannot be reached, drops the link or says the node is
    /// connected to another hub, the node moves on to the next.
    pub hubs: Vec<SocketAddr>,
    /// The name the hub's certificate must carry (every hub's).
    pub hub_name: String,
    /// This node's certificate and key, and the deployment CA.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_cert: PathBuf,
    pub sync: SyncConfig,
    pub replay: ReplayConfig,
    /// Frames recognised into reads: the node's camera.
    pub capture: CaptureConfig,
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
            hub: None,
            hubs: Vec::new(),
            hub_name: "localhost".into(),
            cert: PathBuf::from("certs/dev/node/node.crt"),
            key: PathBuf::from("certs/dev/node/node.key"),
            ca_cert: PathBuf::from("certs/dev/node/ca.crt"),
            sync: SyncConfig::default(),
            replay: ReplayConfig::default(),
            capture: CaptureConfig::default(),
            metrics_listen: None,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        let core = alpr_shared::sync::SyncTuning::default();
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
        let camera_files = c
            .capture
            .cameras
            .iter_mut()
            .flat_map(|cam| cam.credentials_file.iter_mut().chain(cam.ca_file.as_mut()));
        let capture_paths = c
            .capture
            .paths
            .iter_mut()
            .chain(c.capture.models_dir.as_mut())
            .chain(camera_files);
        for f in c.replay.file.iter_mut().chain(capture_paths) {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        c.validate(path)?;
        Ok(c)
    }

    /// Every field within its range; `file` names the config in the error.
    /// The sync core gets these values as they are ([`EdgeConfig::core`]).
    pub fn validate(&self, file: &Path) -> Result<(), InvalidSetting> {
        let c = Checker::new(file);
        c.not_empty("hub_name", &self.hub_name)?;
        if let Some(hub) = self.hub.filter(|_| !self.hubs.is_empty()) {
            return Err(c.invalid(
                "hub",
                format!("\"{hub}\""),
                "either `hub` (one address) or `hubs` (several), not both",
            ));
        }
        for (i, a) in self.hubs.iter().enumerate() {
            if self.hubs[..i].contains(a) {
                return Err(c.invalid("hubs", format!("\"{a}\""), "each address once"));
            }
        }
        for (field, p) in [
            ("data_dir", &self.data_dir),
            ("cert", &self.cert),
            ("key", &self.key),
            ("ca_cert", &self.ca_cert),
        ] {
            c.not_empty(field, &p.to_string_lossy())?;
        }
        let s = &self.sync;
        c.duration(
            "sync.idle_timeout",
            s.idle_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        c.duration(
            "sync.keep_alive",
            s.keep_alive,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        c.shorter(
            "sync.keep_alive",
            s.keep_alive,
            "sync.idle_timeout",
            s.idle_timeout,
        )?;
        c.duration(
            "sync.backoff_min",
            s.backoff_min,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        c.duration(
            "sync.backoff_max",
            s.backoff_max,
            Duration::from_millis(10),
            Duration::from_secs(6 * 3600),
        )?;
        c.at_most(
            "sync.backoff_min",
            s.backoff_min,
            "sync.backoff_max",
            s.backoff_max,
        )?;
        c.number(
            "sync.batch_entries",
            s.batch_entries,
            1,
            alpr_shared::wire::MAX_ENTRIES_PER_FRAME,
        )?;
        c.number(
            "sync.window_entries",
            s.window_entries,
            s.batch_entries as u64,
            MAX_WINDOW_ENTRIES,
        )?;
        c.duration(
            "sync.retransmit_after",
            s.retransmit_after,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        c.duration(
            "replay.interval",
            self.replay.interval,
            Duration::ZERO,
            Duration::from_secs(3600),
        )?;
        c.not_empty("replay.site_id", &self.replay.site_id)?;
        c.not_empty("replay.camera", &self.replay.camera)?;
        let mut taken = Vec::new();
        for cam in &self.capture.cameras {
            cam.validate(&c, &taken)?;
            taken.push(cam.name.as_str());
        }
        Ok(())
    }

    /// `edge.toml` in the current folder if there is one, else defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None if Path::new("edge.toml").exists() => Self::load(Path::new("edge.toml")),
            None => Ok(Self::default()),
        }
    }

    /// The hubs to connect to, in the order they are tried (at least one).
    pub fn hub_addresses(&self) -> Vec<SocketAddr> {
        match (&self.hub, self.hubs.is_empty()) {
            (_, false) => self.hubs.clone(),
            (Some(h), true) => vec![*h],
            (None, true) => vec![DEFAULT_HUB],
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("edge.redb")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("edge.sock")
    }

    pub fn core(&self) -> alpr_shared::sync::SyncTuning {
        alpr_shared::sync::SyncTuning {
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
            ..alpr_shared::sync::SyncTuning::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> anyhow::Result<EdgeConfig> {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("edge.toml");
        std::fs::write(&p, toml).expect("write");
        EdgeConfig::load(&p)
    }

    fn refused(toml: &str, field: &str, value: &str, allowed: &str) {
        let e = format!("{:#}", load(toml).expect_err(toml));
        assert!(e.contains("edge.toml"), "names the file: {e}");
        assert!(
            e.contains(&format!("{field} = {value}")),
            "names field and value: {e}"
        );
        assert!(e.contains(allowed), "names the range {allowed:?}: {e}");
    }

    #[test]
    fn defaults_and_an_empty_file_are_valid() {
        EdgeConfig::default()
            .validate(Path::new("edge.toml"))
            .expect("defaults valid");
        load("").expect("empty file");
    }

    #[test]
    fn zero_retransmit_after_is_refused() {
        refused(
            "[sync]\nretransmit_after = \"0s\"",
            "sync.retransmit_after",
            "\"0s\"",
            "from 1s to 1h",
        );
    }

    #[test]
    fn zero_idle_timeout_and_a_keep_alive_that_cannot_beat_it_are_refused() {
        refused(
            "[sync]\nidle_timeout = \"0s\"",
            "sync.idle_timeout",
            "\"0s\"",
            "from 1s to 1h",
        );
        refused(
            "[sync]\nkeep_alive = \"40s\"\nidle_timeout = \"30s\"",
            "sync.keep_alive",
            "\"40s\"",
            "less than sync.idle_timeout",
        );
    }

    #[test]
    fn backoff_min_above_backoff_max_is_refused() {
        refused(
            "[sync]\nbackoff_min = \"1m\"\nbackoff_max = \"10s\"",
            "sync.backoff_min",
            "\"1m\"",
            "at most sync.backoff_max",
        );
        refused(
            "[sync]\nbackoff_min = \"0s\"",
            "sync.backoff_min",
            "\"0s\"",
            "from 10ms",
        );
    }

    #[test]
    fn batch_and_window_sizes_are_bounded() {
        refused(
            "[sync]\nbatch_entries = 0",
            "sync.batch_entries",
            "0",
            "from 1 to 1024",
        );
        refused(
            "[sync]\nbatch_entries = 5000",
            "sync.batch_entries",
            "5000",
            "from 1 to 1024",
        );
        refused(
            "[sync]\nbatch_entries = 256\nwindow_entries = 10",
            "sync.window_entries",
            "10",
            "from 256 to",
        );
    }

    #[test]
    fn one_hub_or_several_in_order() {
        let one = load("hub = \"192.0.2.1:4433\"").expect("one hub");
        assert_eq!(
            one.hub_addresses(),
            vec!["192.0.2.1:4433".parse().expect("addr")]
        );
        let several =
            load("hubs = [\"192.0.2.2:4433\", \"192.0.2.1:4433\"]").expect("several hubs");
        assert_eq!(
            several.hub_addresses(),
            vec![
                "192.0.2.2:4433".parse().expect("addr"),
                "192.0.2.1:4433".parse().expect("addr")
            ]
        );
        assert_eq!(load("").expect("none").hub_addresses(), vec![DEFAULT_HUB]);
    }

    #[test]
    fn hub_and_hubs_together_or_a_repeated_hub_are_refused() {
        refused(
            "hub = \"192.0.2.1:4433\"\nhubs = [\"192.0.2.2:4433\"]",
            "hub",
            "\"192.0.2.1:4433\"",
            "not both",
        );
        refused(
            "hubs = [\"192.0.2.2:4433\", \"192.0.2.2:4433\"]",
            "hubs",
            "\"192.0.2.2:4433\"",
            "each address once",
        );
    }

    #[test]
    fn empty_names_are_refused() {
        refused("hub_name = \"\"", "hub_name", "\"\"", "non-empty");
        refused(
            "[replay]\ncamera = \" \"",
            "replay.camera",
            "\"\"",
            "non-empty",
        );
    }
}
