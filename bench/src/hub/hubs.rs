//! Hub processes for the benches: `hub serve` run as child processes of
//! the bench (the `hub` binary beside `alpr-bench`), each with its own folder and
//! configuration, all on one PostgreSQL database — as a deployment of
//! several hubs runs them. A child is stopped with SIGTERM (as an operator
//! stops it) and killed if the bench fails before that.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Lines of a child's log kept for an error message.
const LOG_LINES: usize = 40;

/// What a hub process needs to serve.
#[derive(Debug, Clone)]
pub(crate) struct HubFiles {
    /// The run's folder (each hub gets `hub-N` in it).
    pub(crate) dir: PathBuf,
    /// The deployment CA and the hub's certificate and key.
    pub(crate) pki: PathBuf,
    pub(crate) database_url: String,
    pub(crate) pool_size: usize,
    pub(crate) max_connections: usize,
}

/// A running `hub serve`.
pub(crate) struct HubProcess {
    child: Child,
    /// Where nodes reach it (QUIC).
    pub(crate) addr: SocketAddr,
    /// Its metrics endpoint (plain HTTP on loopback).
    metrics: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// What a hub's metrics endpoint said at the end of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct HubCounters {
    pub entries_stored: u64,
    pub duplicates: u64,
    pub commits: u64,
    pub commit_s: f64,
}

/// `s` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `addr=` of a log line that says `what`.
fn address_in(line: &str, what: &str) -> Option<SocketAddr> {
    if !line.contains(what) {
        return None;
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
}

fn toml_path(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))?;
    Ok(toml_string(s))
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl HubProcess {
    /// Write hub `n`'s configuration in `files.dir`, start `hub serve`,
    /// and wait until it listens.
    pub(crate) fn start(n: usize, files: &HubFiles) -> anyhow::Result<Self> {
        let dir = files.dir.join(format!("hub-{n}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("hub.toml");
        let text = format!(
            "listen = \"127.0.0.1:0\"\n\
             api_listen = \"127.0.0.1:0\"\n\
             metrics_listen = \"127.0.0.1:0\"\n\
             data_dir = {}\n\
             ca_cert = {}\n\
             cert = {}\n\
             key = {}\n\
             max_connections = {}\n\
             \n[store]\n\
             backend = \"postgres\"\n\
             url = {}\n\
             pool_size = {}\n",
            toml_path(&dir.join("data"))?,
            toml_path(&files.pki.join("ca.crt"))?,
            toml_path(&files.pki.join("hub.crt"))?,
            toml_path(&files.pki.join("hub.key"))?,
            files.max_connections,
            toml_string(&files.database_url),
            files.pool_size,
        );
        std::fs::write(&config, text)?;
        let exe = crate::hub_binary()?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,alpr_hub::sync=info,alpr_hub::serve=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().context("the hub's log")?;
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut listen = None;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(&line);
                    if let Some(a) = address_in(&line, "hub listening") {
                        listen = Some(a);
                    }
                    if let Some(a) = address_in(&line, "metrics endpoint listening") {
                        let _ = tx.send(("metrics", a));
                    }
                    if let Some(a) = listen.take() {
                        let _ = tx.send(("listen", a));
                    }
                    if let Ok(mut l) = log.lock() {
                        if l.len() == LOG_LINES {
                            l.pop_front();
                        }
                        l.push_back(line);
                    }
                }
            });
        }
        let mut hub = HubProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut found = (None, None);
        while found.0.is_none() || found.1.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(("listen", a)) => found.0 = Some(a),
                Ok((_, a)) => found.1 = Some(a),
                Err(_) => {
                    if let Some(status) = hub.child.try_wait()? {
                        anyhow::bail!("hub {n} stopped ({status}): {}", hub.log_tail());
                    }
                    if left.is_zero() {
                        anyhow::bail!("hub {n} did not listen within 60 s: {}", hub.log_tail());
                    }
                }
            }
        }
        hub.addr = found.0.context("listen address")?;
        hub.metrics = found.1.context("metrics address")?;
        Ok(hub)
    }

    /// The child's last log lines.
    pub(crate) fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// CPU seconds the process has used (user + system), from /proc.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The counters of its metrics endpoint.
    pub(crate) fn counters(&self) -> anyhow::Result<HubCounters> {
        let mut s = std::net::TcpStream::connect_timeout(&self.metrics, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        Ok(HubCounters {
            entries_stored: value("alpr_hub_entries_stored_total") as u64,
            duplicates: value("alpr_hub_duplicates_total") as u64,
            commits: value("alpr_hub_commits_total") as u64,
            commit_s: value("alpr_hub_commit_seconds_total"),
        })
    }

    /// Stop it as an operator does (SIGTERM), and wait for it to finish
    /// its last commits.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(
                    status.success(),
                    "the hub exited with {status}: {}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("the hub did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of the process whose `stat` file is `path`.
pub(crate) fn process_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// The machine's CPU time so far: (busy, total), in clock ticks.
pub(crate) fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU seconds used so far by the PostgreSQL backends serving `database`
/// (their command line names it), from /proc.
pub(crate) fn postgres_cpu_seconds(database: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
                && std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(database))
        })
        .filter_map(|e| process_cpu_seconds(&e.path().join("stat").to_string_lossy()))
        .sum()
}
