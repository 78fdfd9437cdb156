//! `alpr-bench edge camera`: live cameras end to end. A video of N vehicle
//! passes made from the labelled photos (1920×1080, 30 fps, H.264 High
//! with B-frames: `tests/support/make-passes-video.sh`), played in a loop
//! by GStreamer's RTSP server (one server per camera), watched by the real
//! `edge run` (release build) until its reads are signed in its redb, for
//! `--duration`. Then, from the edge's log, its store and the video's
//! ground truth: one read per pass, exact plates, missed passes, frames
//! decoded, analysed and dropped, the time from a vehicle's last frame to
//! its signed read, and the edge's CPU and memory. The same photos are
//! also read one by one, for the accuracy a pass should at least reach.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alpr_shared::types::{DeviceId, DeviceKind};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct CameraBenchArgs {
    /// Vehicle passes in the video (the first N labelled US photos).
    #[arg(long, default_value_t = 20)]
    pub generate: usize,
    /// Cameras watched at once (one RTSP server each, the same video).
    #[arg(long, default_value_t = 1)]
    pub cameras: usize,
    /// How long to watch, in seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Where the video, the edge's store and its log go (a real disk).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The labelled photos.
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// The models.
    #[arg(long, env = alpr_edge::recognise::MODELS_ENV)]
    pub models: Option<PathBuf>,
    /// The edge binary (default: `edge` beside this one).
    #[arg(long)]
    pub edge: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// (camera, loop of the video, pass in the loop).
type PassKey = (usize, i64, usize);
/// A read of a pass: its plate, and seconds from the pass's end to its
/// signed read.
type PassRead = (String, Option<f64>);

#[derive(Debug, Clone)]
struct Pass {
    start: f64,
    end: f64,
    plate: String,
}

struct Server {
    child: Child,
    url: String,
    epoch: f64,
    period: f64,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn start_server(video: &Path, log: &Path) -> anyhow::Result<Server> {
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/support/rtsp-server.py"))
        .arg(video)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting tests/support/rtsp-server.py (scripts/setup.sh installs GStreamer)")?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(out).lines();
    let (mut epoch, mut period) = (None, None);
    loop {
        let line = lines
            .next()
            .context("the RTSP server stopped before it was ready")??;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["EPOCH", e, "PERIOD", p] => {
                epoch = e.parse().ok();
                period = p.parse().ok();
            }
            ["READY", url] => {
                return Ok(Server {
                    url: (*url).to_owned(),
                    epoch: epoch.context("no EPOCH line")?,
                    period: period.context("no PERIOD line")?,
                    child,
                })
            }
            _ => {}
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `… read stored entry=N …` lines with their log time (seconds).
fn stored_times(log: &str) -> BTreeMap<u64, f64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let clean: String = strip_ansi(line);
        if !clean.contains("read stored") {
            continue;
        }
        let Some(ts) = clean.split_whitespace().next() else {
            continue;
        };
        let Ok(t) = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')) else {
            continue;
        };
        let entry = clean
            .split_whitespace()
            .find_map(|f| f.strip_prefix("entry="))
            .and_then(|n| n.parse().ok());
        if let Some(e) = entry {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            out.insert(e, secs);
        }
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

pub fn bench(args: CameraBenchArgs) -> anyhow::Result<ExitCode> {
    let photos = args
        .photos
        .clone()
        .unwrap_or_else(|| repo().join("../shared/data/plates/us"));
    let models = args
        .models
        .clone()
        .unwrap_or_else(|| repo().join("../shared/models"))
        .canonicalize()
        .context("the models folder")?;
    let edge_bin = match &args.edge {
        Some(e) => e.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's folder")?
            .join("edge"),
    };
    std::fs::create_dir_all(&args.dir)?;
    let dir = tempfile::Builder::new()
        .prefix("alpr-camera-bench-")
        .tempdir_in(&args.dir)?;
    let d = dir.path();
    let fs = filesystem_of(d);

    // The video and its ground truth.
    let video = d.join("passes.mp4");
    let made = Command::new("bash")
        .arg(repo().join("tests/support/make-passes-video.sh"))
        .arg(&video)
        .arg(&photos)
        .arg(args.generate.to_string())
        .output()?;
    anyhow::ensure!(
        made.status.success(),
        "make-passes-video.sh: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let passes: Vec<Pass> = std::fs::read_to_string(video.with_extension("truth"))?
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Pass {
                start: f.next()?.parse().ok()?,
                end: f.next()?.parse().ok()?,
                plate: f.next()?.to_owned(),
            })
        })
        .collect();

    // The same photos one by one: the accuracy a pass should reach.
    let photo_exact = photos_exact(&photos, &models, &passes)?;

    // The cameras, the node's identity, its config.
    let servers = (0..args.cameras)
        .map(|i| start_server(&video, &d.join(format!("rtsp-{i}.log"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ca = alpr_shared::pki::new_ca("Bench Agency", 30)?;
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    let (issued, _) =
        authority.issue_device(&DeviceId::new("pole-bench")?, DeviceKind::Pole, 30)?;
    std::fs::write(d.join("ca.crt"), &ca.cert_pem)?;
    std::fs::write(d.join("node.crt"), &issued.cert_pem)?;
    let key = d.join("node.key");
    std::fs::write(&key, issued.key_pem.as_bytes())?;
    alpr_shared::private::make_private(&key)?;
    let hub = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let mut toml = format!(
        "data_dir = {:?}\nhub = \"{hub}\"\ncert = {:?}\nkey = {:?}\nca_cert = {:?}\n\n[capture]\nmodels_dir = {:?}\nsite_id = \"bench-site\"\n",
        d.join("edge-data"),
        d.join("node.crt"),
        key,
        d.join("ca.crt"),
        models
    );
    for (i, s) in servers.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[capture.cameras]]\nname = \"cam{i}\"\ndirection = \"front\"\nurl = {:?}\n",
            s.url
        ));
    }
    let config = d.join("edge.toml");
    std::fs::write(&config, toml)?;
    let log_path = d.join("edge.log");
    let load_before = load_average();
    let mut edge = Command::new(&edge_bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .with_context(|| format!("starting {}", edge_bin.display()))?;
    let pid = edge.id();

    // Watch: CPU and memory every second; the first frames mark the start.
    let started = Instant::now();
    let watch_from = unix_now() + 5.0;
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let mut rss_peak: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(args.duration) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(r) = rss_mb(pid) {
            rss_peak = rss_peak.max(r);
        }
        if let Ok(Some(status)) = edge.try_wait() {
            anyhow::bail!("the edge stopped: {status}; see {}", log_path.display());
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid).unwrap_or(0.0) - cpu0;
    let status = Command::new(&edge_bin)
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let watch_until = unix_now() - 3.0;
    let load_after = load_average();
    // SIGTERM: the edge stores what it has and stops.
    terminate(pid);
    let _ = edge.wait();

    // Reads: stored when, read from which pass.
    let log = std::fs::read_to_string(&log_path)?;
    let stored_at = stored_times(&log);
    let entries = alpr_edge::store::read_log(&d.join("edge-data/edge.redb"))?;
    let by_camera = camera_index(&servers);
    let mut seen: BTreeMap<PassKey, Vec<PassRead>> = BTreeMap::new();
    let mut unplaced = 0usize;
    for e in &entries {
        let Some(r) = e.read() else { continue };
        let cam: usize = r
            .camera
            .trim_start_matches("cam")
            .split('@')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let Some(s) = by_camera.get(cam) else {
            continue;
        };
        let t = e.header.captured_at.0 as f64 / 1000.0 - s.0;
        let lp = (t / s.1).floor();
        let within = t - lp * s.1;
        match passes
            .iter()
            .position(|p| within >= p.start - 0.5 && within <= p.end + 0.5)
        {
            Some(k) => {
                let end = s.0 + lp * s.1 + passes[k].end;
                let latency = stored_at.get(&e.header.seq).map(|at| at - end);
                seen.entry((cam, lp as i64, k))
                    .or_default()
                    .push((r.plate.clone(), latency));
            }
            None => unplaced += 1,
        }
    }
    // Every pass that ended while the edge watched.
    let (mut shown, mut one, mut duplicate, mut missed, mut exact) = (0, 0, 0, 0, 0);
    let mut latencies = Vec::new();
    for (cam, (epoch, period)) in by_camera.iter().enumerate() {
        let mut lp = ((watch_from - epoch) / period).floor() as i64;
        loop {
            let mut past = false;
            for (k, p) in passes.iter().enumerate() {
                let start = epoch + lp as f64 * period + p.start;
                let end = epoch + lp as f64 * period + p.end;
                if end > watch_until {
                    past = true;
                    break;
                }
                if start < watch_from {
                    continue;
                }
                shown += 1;
                match seen.get(&(cam, lp, k)) {
                    None => missed += 1,
                    Some(reads) => {
                        if reads.len() == 1 {
                            one += 1;
                        } else {
                            duplicate += 1;
                        }
                        if reads.iter().any(|(plate, _)| *plate == p.plate) {
                            exact += 1;
                        }
                        latencies.extend(reads.iter().filter_map(|r| r.1));
                    }
                }
            }
            if past {
                break;
            }
            lp += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let cams = status["capture"]["cameras"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sum = |k: &str| cams.iter().filter_map(|c| c[k].as_u64()).sum::<u64>();
    let report = serde_json::json!({
        "cameras": args.cameras,
        "duration_s": wall,
        "video_passes": passes.len(),
        "passes": shown,
        "reads": entries.iter().filter(|e| e.read().is_some()).count(),
        "reads_outside_a_pass": unplaced,
        "one_read_passes": one,
        "one_read_ratio": one as f64 / shown.max(1) as f64,
        "exact": exact,
        "exact_ratio": exact as f64 / shown.max(1) as f64,
        "photo_exact_ratio": photo_exact,
        "duplicate_reads": duplicate,
        "missed_passes": missed,
        "frames_received": sum("frames_received"),
        "decoded_fps": sum("frames_decoded") as f64 / wall,
        "analysed_fps": sum("frames_analysed") as f64 / wall,
        "still_frames": sum("frames_still"),
        "dropped_frames": sum("frames_dropped"),
        "corrupt_frames": sum("frames_corrupt"),
        "reconnects": sum("reconnects"),
        "read_latency_p50_ms": percentile(&latencies, 0.5) * 1000.0,
        "read_latency_p99_ms": percentile(&latencies, 0.99) * 1000.0,
        "read_latency_max_ms": latencies.last().copied().unwrap_or(f64::NAN) * 1000.0,
        "cpu_cores": cpu / wall,
        "rss_mb": rss_peak,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "filesystem": fs,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (k, v) in report.as_object().into_iter().flatten() {
            println!("{k:<24} {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn camera_index(servers: &[Server]) -> Vec<(f64, f64)> {
    servers.iter().map(|s| (s.epoch, s.period)).collect()
}

/// Ask the edge to stop as a service manager would.
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// The filesystem `dir` is on (a benchmark's store belongs on a real disk).
fn filesystem_of(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype,source", "-h"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default()
}

/// The share of the passes' photos read exactly when read one by one.
fn photos_exact(photos: &Path, models: &Path, passes: &[Pass]) -> anyhow::Result<f64> {
    use alpr_edge::recognise::{Recogniser, RecogniserOptions};
    let mut r = Recogniser::open(models, RecogniserOptions::default())?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(photos)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    let mut exact = 0;
    for (p, pass) in names.iter().zip(passes) {
        let (plates, _) = r.recognise_file(p)?;
        if plates.first().is_some_and(|b| b.text == pass.plate) {
            exact += 1;
        }
    }
    Ok(exact as f64 / passes.len().max(1) as f64)
}
