//! `hub.toml`. Every field has a default that works for a local setup
//! (certificates from `hub pki init --out certs/dev/ca`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alpr_shared::types::UnixMillis;
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
        for r in &mut c.revoked {
            r.check()
                .with_context(|| format!("parsing `revoked` in {}", path.display()))?;
        }
        Ok(c)
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hub.redb")
    }
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
    pub fn serial(&self) -> String {
        match self {
            RevokedEntry::Serial(s) | RevokedEntry::Table { serial: s, .. } => normalise_serial(s),
        }
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

    /// A serial number that is hex, and a time that parses.
    fn check(&mut self) -> anyhow::Result<()> {
        let serial = self.serial();
        anyhow::ensure!(!serial.is_empty(), "a revoked serial number must be hex");
        self.at()?;
        Ok(())
    }
}

/// An RFC 3339 time in UTC (`2026-11-28T16:00:00Z`).
pub fn parse_time(s: &str) -> anyhow::Result<UnixMillis> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| anyhow::anyhow!("{s:?} is not an RFC 3339 UTC time: {e}"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("{s:?} is before 1970"))?;
    Ok(UnixMillis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// Serial numbers compare as lower-case hex without separators.
pub fn normalise_serial(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
