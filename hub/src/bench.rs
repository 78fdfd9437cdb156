//! `hub bench ingest`: many edges' signed reads through the hub's real
//! ingest path — session, per-entry `verify_strict` on the blocking pool,
//! chain placement, the single writer with a durable commit per
//! transaction, signed receipts — and a table of what it sustained: reads
//! per second and the acknowledgement latency (a frame's submission to its
//! receipt). With `--quic`, the edges are real QUIC connections with real
//! certificates to `hub serve` running in this process.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::sync::{HubOutput, HubSession, Progress};
use alpr_shared::types::{DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{
    Entries, Frame, Hello, Lane, ALPN, MAX_ENTRIES_FRAME, MAX_ENTRIES_PER_FRAME, PROTOCOL_VERSION,
};
use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::ingest::{Metrics, Writer, WriterConfig};
use crate::store::redb::RedbStore;
use crate::store::{HubStorage, WriteOp, WriteResult};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Simulated edges uploading at once.
    #[arg(long, default_value_t = 100)]
    pub edges: usize,
    /// Reads in total (split evenly between edges).
    #[arg(long, default_value_t = 200_000)]
    pub reads: usize,
    /// Entries per frame, as edges send them.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Most entries one durable commit takes.
    #[arg(long, default_value_t = WriterConfig::default().max_batch)]
    pub max_commit: usize,
    /// A commit with fewer entries waits for more (see --linger-ms).
    #[arg(long, default_value_t = WriterConfig::default().min_batch)]
    pub min_commit: usize,
    /// How long a small commit may wait for more, in milliseconds.
    #[arg(long, default_value_t = WriterConfig::default().linger.as_millis() as u64)]
    pub linger_ms: u64,
    /// Frames of each edge queued for the writer ahead of their commits
    /// (the hub's stream pipeline).
    #[arg(long, default_value_t = crate::sync::PIPELINE)]
    pub in_flight: usize,
    /// Entries the hub admits at once over all edges (the hub's
    /// `sync::ADMITTED_ENTRIES`).
    #[arg(long, default_value_t = crate::sync::ADMITTED_ENTRIES)]
    pub admit: usize,
    /// Where the run's fresh, temporary database folder goes (default: the
    /// current folder, so the figure is for a real disk).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run even if the folder is on tmpfs (the figure then says nothing
    /// about durable storage).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Through `hub serve` over QUIC on loopback, one connection per edge,
    /// with real certificates.
    #[arg(long)]
    pub quic: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub mode: &'static str,
    pub path: String,
    pub fs: String,
    pub edges: usize,
    pub reads: usize,
    pub reads_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// From a frame ready at the edge (before the hub admits it) to its
    /// receipt (in process only; over QUIC `ack_*` already count from the
    /// edge's write).
    pub ready_to_ack_p99_ms: Option<f64>,
    pub seconds: f64,
    /// Durable commits (in-process only).
    pub commits: Option<u64>,
}

/// A plausible read: a plate from a small space, a site, model names.
pub fn sample_read(i: u64) -> ReadContent {
    const L: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let plate = format!(
        "{}{}{}{:04}",
        L[(i % 23) as usize] as char,
        L[(i / 23 % 23) as usize] as char,
        L[(i / 529 % 23) as usize] as char,
        i % 10_000
    );
    ReadContent {
        location: Location::Site {
            site_id: format!("site-{}", i % 50),
        },
        camera: "cam-1".into(),
        char_confidence: vec![9500; plate.len()],
        plate,
        confidence: 9400,
        region: Some("US-CA".into()),
        detector_model: "plate-det-v1".into(),
        ocr_model: "plate-ocr-v1".into(),
        crop_hash: sha256(&i.to_be_bytes()),
        overview_hash: sha256(&(i ^ u64::MAX).to_be_bytes()),
    }
}

/// A simulated edge's key, derived from its name (the bench needs it twice:
/// to sign the log, and its checkpoints when framing).
pub(crate) fn node_key(name: &DeviceId) -> SecretKey {
    SecretKey::from_bytes(&sha256(name.as_str().as_bytes()).0)
}

/// The filesystem type holding `path` (from /proc/self/mountinfo: the
/// longest mount point that contains it), or "unknown".
pub fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let Some(fs) = fields.get(dash + 1) else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(l, _)| mount.len() >= *l) {
            best = Some((mount.len(), (*fs).to_owned()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// A QUIC edge's certificate and key (PEM).
pub(crate) type EdgeFiles = Option<(Vec<u8>, Vec<u8>)>;

/// An edge ready to upload: its name, its certificate (QUIC), and its
/// frames, encoded as it sends them.
pub(crate) struct EdgeLoad {
    name: DeviceId,
    public: alpr_shared::crypto::PublicKey,
    files: EdgeFiles,
    reads: u64,
    frames: Vec<Vec<u8>>,
}

/// The outcome of one run.
pub(crate) struct Run {
    pub(crate) stored: u64,
    /// Admission to receipt.
    latencies_ms: Vec<f64>,
    /// Ready (waiting for admission) to receipt, in process only.
    waits_ms: Vec<f64>,
    pub(crate) seconds: f64,
    commits: Option<(u64, f64)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.reads >= args.edges,
        "need at least one read per edge"
    );
    // A fresh folder for every run (inside `--dir`, else the current
    // folder): a database left by an earlier run would hold other logs.
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("hub-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("a temporary folder in {}", parent.display()))?;
    let dir = tmp.path().to_path_buf();
    let dir = dir.canonicalize().unwrap_or(dir);
    let fs = filesystem_of(&dir);
    anyhow::ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs: a durable commit there costs nothing, so the figure would mislead. \
         Choose a folder on disk with --dir, or pass --allow-tmpfs",
        dir.display()
    );
    let per_edge = args.reads / args.edges;
    let total = per_edge * args.edges;
    let batch = args.batch.clamp(1, MAX_ENTRIES_PER_FRAME);

    // Identities: with --quic, a deployment CA, the hub's certificate and
    // one certificate per edge; in process, keys derived from the names.
    let pki_dir = dir.join("pki");
    let mut identities: Vec<(DeviceId, SecretKey, EdgeFiles)> = Vec::new();
    let authority = if args.quic {
        Some(write_pki(&pki_dir)?)
    } else {
        None
    };
    for e in 0..args.edges {
        let name = DeviceId::new(format!("bench-{e:03}")).expect("valid name");
        match &authority {
            Some(a) => {
                let (issued, key) = a.issue_device(&name, DeviceKind::Pole, 30)?;
                let files = (
                    issued.cert_pem.into_bytes(),
                    issued.key_pem.as_bytes().to_vec(),
                );
                identities.push((name, key, Some(files)));
            }
            None => {
                let key = node_key(&name);
                identities.push((name, key, None));
            }
        }
    }

    // Sign every edge's log and frame it (the edges' work, not the hub's).
    let t0 = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let base = UnixMillis::now().0;
    let mut shares: Vec<Vec<(usize, DeviceId, SecretKey, EdgeFiles)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (e, (name, key, files)) in identities.into_iter().enumerate() {
        shares[e % threads].push((e, name, key, files));
    }
    let (loads, canonical_bytes): (Vec<EdgeLoad>, Vec<usize>) = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                s.spawn(move || {
                    share
                        .into_iter()
                        .map(|(e, name, key, files)| {
                            sign_edge(e, name, key, files, per_edge, batch, base)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .unzip()
    });
    anyhow::ensure!(loads.len() == args.edges, "an edge's log failed to sign");
    let sign_secs = t0.elapsed().as_secs_f64();
    let canonical_bytes: usize = canonical_bytes.iter().sum();
    let wire_bytes: usize = loads
        .iter()
        .flat_map(|l| l.frames.iter().map(Vec::len))
        .sum();

    let run = if args.quic {
        run_quic(&args, &dir, &pki_dir, loads).await?
    } else {
        run_in_process(&args, &dir, loads).await?
    };
    anyhow::ensure!(
        run.stored as usize == total,
        "stored {} of {total}",
        run.stored
    );
    let mut lat = run.latencies_ms;
    lat.sort_by(f64::total_cmp);
    let mut waits = run.waits_ms;
    waits.sort_by(f64::total_cmp);
    let report = IngestReport {
        mode: if args.quic { "quic" } else { "in-process" },
        path: dir.display().to_string(),
        fs,
        edges: args.edges,
        reads: total,
        reads_per_s: total as f64 / run.seconds,
        ack_p50_ms: percentile(&lat, 0.5),
        ack_p99_ms: percentile(&lat, 0.99),
        ready_to_ack_p99_ms: (!waits.is_empty()).then(|| percentile(&waits, 0.99)),
        seconds: run.seconds,
        commits: run.commits.map(|c| c.0),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "hub bench ingest ({}): {} edges × {} reads = {} reads",
        report.mode, args.edges, per_edge, total
    );
    println!("database in {} ({})", report.path, report.fs);
    println!(
        "{:<40} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "phase", "reads", "seconds", "reads/s", "ack p50", "ack p99"
    );
    println!(
        "{:<40} {:>10} {:>9.2} {:>10.0}",
        "edges sign their logs (not hub work)",
        total,
        sign_secs,
        total as f64 / sign_secs
    );
    println!(
        "{:<40} {:>10} {:>9.2} {:>10.0} {:>7.1}ms {:>7.1}ms",
        "verify_strict + chain + durable + ack",
        total,
        run.seconds,
        report.reads_per_s,
        report.ack_p50_ms,
        report.ack_p99_ms
    );
    if let Some(w) = report.ready_to_ack_p99_ms {
        println!(
            "{:<40} {:>10} {:>9} {:>10} {:>9} {:>7.1}ms",
            "  the same from ready (incl. admission)", "", "", "", "", w
        );
    }
    println!(
        "\n{:.0} bytes per entry on the wire ({:.0} stored)",
        wire_bytes as f64 / total as f64,
        canonical_bytes as f64 / total as f64,
    );
    if args.quic {
        println!("ack latency: from the edge's write of a frame to the receipt it reads back");
    } else {
        println!(
            "ack latency: from the hub's admission of a frame (at most {} entries admitted at once) to its receipt",
            args.admit
        );
    }
    if let Some((commits, commit_secs)) = run.commits {
        println!(
            "{} durable commits ({:.0} reads per commit); the writer spent {commit_secs:.2} s of {:.2} s in commits",
            commits,
            total as f64 / commits.max(1) as f64,
            run.seconds
        );
    }
    Ok(())
}

/// Sign one edge's log and cut it into frames, each with the checkpoint
/// at its end. Returns the load and its canonical bytes.
pub(crate) fn sign_edge(
    e: usize,
    name: DeviceId,
    key: SecretKey,
    files: EdgeFiles,
    per_edge: usize,
    batch: usize,
    base: u64,
) -> (EdgeLoad, usize) {
    let public = key.public();
    let mut w = LogWriter::new(key, name.clone());
    let mut frames = Vec::new();
    let mut canonical = 0;
    let mut chunk = Vec::with_capacity(batch);
    for i in 0..per_edge {
        let n = (e * per_edge + i) as u64;
        let entry = w
            .append_read(sample_read(n), UnixMillis(base + i as u64), TimeSource::Gps)
            .expect("valid read");
        canonical += entry.encode().len();
        chunk.push(entry);
        if chunk.len() == batch || i + 1 == per_edge {
            let cp = w.checkpoint(UnixMillis::now());
            if let Some(f) = Entries::from_log(std::mem::take(&mut chunk), Some(cp)) {
                frames.push(Frame::Entries(f).encode());
            }
        }
    }
    (
        EdgeLoad {
            name,
            public,
            files,
            reads: per_edge as u64,
            frames,
        },
        canonical,
    )
}

/// The hub's path without sockets: session, verification on the blocking
/// pool, the writer.
async fn run_in_process(
    args: &IngestArgs,
    dir: &Path,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.join("bench.redb"))?);
    run_in_process_on(args, storage, loads).await
}

/// As [`run_in_process`], into `storage` (which may hold other logs).
pub(crate) async fn run_in_process_on(
    args: &IngestArgs,
    storage: Arc<dyn HubStorage>,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let metrics = Arc::new(Metrics::default());
    let writer_config = WriterConfig {
        max_batch: args.max_commit.max(1),
        min_batch: args.min_commit,
        linger: Duration::from_millis(args.linger_ms),
        ..WriterConfig::default()
    };
    let (writer, join) = Writer::spawn(storage.clone(), metrics.clone(), writer_config);
    let hub_key = Arc::new(SecretKey::generate());
    let slots = Arc::new(tokio::sync::Semaphore::new(crate::sync::verify_slots()));
    let admit = args.admit.max(MAX_ENTRIES_PER_FRAME);
    let admission = Arc::new(tokio::sync::Semaphore::new(admit));

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for load in loads {
        let writer = writer.clone();
        let hub_key = hub_key.clone();
        let slots = slots.clone();
        let admission = admission.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move {
            let EdgeLoad {
                name,
                public,
                reads,
                frames,
                ..
            } = load;
            let mut session = HubSession::new(name.clone(), public, hub_key, Progress::default());
            let now = UnixMillis::now();
            session.handle_frame(
                Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    device: name.clone(),
                    log_size: reads,
                    // Says it holds every policy: the hub pushes none.
                    policy_version: u64::MAX,
                    hotlists: Vec::new(),
                }),
                now,
            );
            let mut latencies = Vec::with_capacity(frames.len());
            let mut waits = Vec::with_capacity(frames.len());
            let mut pending: VecDeque<(tokio::task::JoinHandle<_>, Instant, Instant)> =
                VecDeque::new();
            let mut frames = frames.into_iter();
            loop {
                // Keep `in_flight` frames queued for the writer, as a hub
                // reading a node's stream ahead of its commits would.
                let next = if pending.len() < in_flight {
                    frames.next()
                } else {
                    None
                };
                let Some(bytes) = next else {
                    let Some((p, sent, ready)) = pending.pop_front() else {
                        break;
                    };
                    let (res, done): (Result<WriteResult, crate::ingest::IngestError>, Instant) =
                        p.await.context("commit waiter")?;
                    let WriteResult::Ingested(r) = res? else {
                        anyhow::bail!("unexpected writer answer");
                    };
                    for o in session.ingested(r.map(|i| i.progress), now) {
                        match o {
                            HubOutput::Send(Frame::Ack(_)) => {
                                latencies.push((done - sent).as_secs_f64() * 1e3);
                                waits.push((done - ready).as_secs_f64() * 1e3);
                            }
                            HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                            _ => {}
                        }
                    }
                    continue;
                };
                // The frame is ready; the hub admits it when the entries
                // ahead of it are few enough (see `sync::ADMITTED_ENTRIES`).
                let ready = Instant::now();
                // The hub's path from the bytes a stream delivers.
                let frame = match Frame::decode_prefixed(&bytes, MAX_ENTRIES_FRAME) {
                    Ok(Some((f, _))) => f,
                    other => anyhow::bail!("a frame that does not decode: {other:?}"),
                };
                let weight = match &frame {
                    Frame::Entries(e) => e.entries.len(),
                    _ => 1,
                };
                let weight = u32::try_from(weight.clamp(1, admit)).unwrap_or(1);
                let admitted = admission.clone().acquire_many_owned(weight).await?;
                let sent = Instant::now();
                // The signature checks on the blocking pool, a frame per core.
                let slot = slots.clone().acquire_owned().await?;
                let (back, outs) = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    let outs = session.handle_frame(frame, now);
                    (session, outs)
                })
                .await
                .context("verification task")?;
                session = back;
                for out in outs {
                    match out {
                        HubOutput::Ingest(v) => {
                            let p = writer
                                .enqueue(WriteOp::Ingest {
                                    device: name.clone(),
                                    entries: v.entries,
                                    checkpoint: v.checkpoint,
                                    new_key: v.new_key,
                                    at: now,
                                })
                                .await?;
                            // As the hub's answering half does: wait for
                            // the commit, then release the admission.
                            let p = tokio::spawn(async move {
                                let r = p.committed().await;
                                let done = Instant::now();
                                drop(admitted);
                                (r, done)
                            });
                            pending.push_back((p, sent, ready));
                            break;
                        }
                        HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                        _ => {}
                    }
                }
            }
            anyhow::Ok((session.progress().next_seq, latencies, waits))
        });
    }
    let mut stored = 0;
    let mut latencies_ms = Vec::new();
    let mut waits_ms = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (n, l, w) = r.context("edge task")??;
        stored += n;
        latencies_ms.extend(l);
        waits_ms.extend(w);
    }
    let seconds = t1.elapsed().as_secs_f64();
    drop(writer);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    Ok(Run {
        stored,
        latencies_ms,
        waits_ms,
        seconds,
        commits: Some((
            Metrics::get(&metrics.commits),
            Metrics::get(&metrics.commit_micros) as f64 / 1e6,
        )),
    })
}

/// A deployment CA and the hub's certificate in `dir`.
pub(crate) fn write_pki(dir: &Path) -> anyhow::Result<alpr_shared::pki::Authority> {
    let ca = write_ca_and_hub(dir, 30)?;
    Ok(alpr_shared::pki::Authority::load(
        &ca.cert_pem,
        &ca.key_pem,
    )?)
}

/// A deployment CA valid `days` and the hub's certificate in `dir`; the
/// CA (its key too, for benches that sign reads as its nodes).
pub(crate) fn write_ca_and_hub(dir: &Path, days: i64) -> anyhow::Result<alpr_shared::pki::Issued> {
    std::fs::create_dir_all(dir)?;
    let ca = alpr_shared::pki::new_ca("Bench Agency", days)?;
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem)?;
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    let hub = authority.issue_hub(&["localhost".into(), "127.0.0.1".into()], days)?;
    std::fs::write(dir.join("hub.crt"), &hub.cert_pem)?;
    // A key others may read is refused by `hub serve`, as ssh does.
    std::io::Write::write_all(
        &mut alpr_shared::private::create_private_file(&dir.join("hub.key"))?,
        hub.key_pem.as_bytes(),
    )?;
    Ok(ca)
}

/// `hub serve` in this process, and one QUIC connection per edge.
async fn run_quic(
    args: &IngestArgs,
    dir: &Path,
    pki: &Path,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("hub-data"),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        max_connections: args.edges + 16,
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::sync::serve(config, cancel.clone(), Some(tx)));
    let Ok(addr) = rx.await else {
        let why = match server.await {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(())) => "it stopped".into(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("the hub did not start: {why}");
    };

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for load in loads {
        let ca = ca.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move { quic_edge(addr, &ca, load, in_flight).await });
    }
    let mut stored = 0;
    let mut latencies_ms = Vec::new();
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        match r.context("edge task").and_then(|r| r) {
            Ok((n, l)) => {
                stored += n;
                latencies_ms.extend(l);
            }
            Err(e) => failed = Some(e),
        }
    }
    let seconds = t1.elapsed().as_secs_f64();
    cancel.cancel();
    server.await.context("the hub task")??;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Run {
        stored,
        latencies_ms,
        waits_ms: Vec::new(),
        seconds,
        commits: None,
    })
}

/// One edge over QUIC: hello, then its frames on the entries lane with
/// `in_flight` unacknowledged at most; returns what the hub acknowledged
/// and each frame's acknowledgement latency.
async fn quic_edge(
    addr: SocketAddr,
    ca: &[u8],
    load: EdgeLoad,
    in_flight: usize,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let (cert, key) = load.files.context("an edge without a certificate")?;
    let cfg = quic::client_config(
        ca,
        &cert,
        &key,
        ALPN,
        Liveness {
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        },
    )?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(cfg);
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[Lane::Control.tag()]).await?;
    quic::write_frame(
        &mut send,
        &Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            device: load.name.clone(),
            log_size: load.reads,
            // Says it holds every policy: the hub pushes none.
            policy_version: u64::MAX,
            hotlists: Vec::new(),
        }),
    )
    .await?;
    match quic::read_frame(&mut recv, Lane::Control.max_frame()).await? {
        Frame::Welcome(_) => {}
        other => anyhow::bail!("{}: no welcome: {other:?}", load.name),
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[Lane::Entries.tag()]).await?;
    let window = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let frames = load.frames;
    let writer = {
        let window = window.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            for f in frames {
                window.acquire().await?.forget();
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(Instant::now());
                }
                send.write_all(&f).await?;
            }
            anyhow::Ok(send)
        })
    };
    let mut latencies = Vec::new();
    let mut acked = 0;
    while acked < load.reads {
        match quic::read_frame(&mut recv, Lane::Entries.max_frame()).await? {
            Frame::Ack(r) => {
                acked = r.receipt.next_seq;
                let sent = sent_at.lock().ok().and_then(|mut q| q.pop_front());
                if let Some(t) = sent {
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                window.add_permits(1);
            }
            Frame::Refused(r) => anyhow::bail!("{}: refused: {r:?}", load.name),
            _ => {}
        }
    }
    let _send = writer.await.context("the edge's writer")??;
    conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
    endpoint.wait_idle().await;
    Ok((acked, latencies))
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Logins to time.
    #[arg(long, default_value_t = 50)]
    pub logins: usize,
    /// Where the run's temporary folder goes (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `hub bench login --json` prints.
#[derive(Debug, Serialize)]
pub struct LoginReport {
    pub logins: usize,
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    /// argon2id parameters.
    pub argon2: &'static str,
}

/// `hub bench login`: logins through the API of a hub served in this
/// process (HTTPS on loopback, argon2id, the access-log entry committed
/// before each answer), one at a time, each on a new connection.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hub-bench-login-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a folder in {}", base.display()))?;
    let pki = dir.path().join("pki");
    write_pki(&pki)?;
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("hub-data"),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        // The bench logs in many times as one user: no lock-out.
        login_failures: 1000,
        login_source_failures: 100_000,
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
    let bootstrap = config.data_dir.join(crate::users::BOOTSTRAP_FILE);
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::sync::serve(config, cancel.clone(), Some(tx)));
    if rx.await.is_err() {
        let why = match server.await {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(())) => "it stopped".into(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("the hub did not start: {why}");
    }
    let result = async {
        let b: crate::users::BootstrapFile = serde_json::from_slice(&std::fs::read(&bootstrap)?)?;
        let url = format!("https://{}", b.api);
        let password = "bench-password-0123".to_string();
        let _: crate::users::UserView = crate::api::client::ApiClient::connect(&url, &ca)
            .await?
            .post(
                "/api/v1/bootstrap",
                &crate::api::users::BootstrapRequest {
                    token: b.token,
                    user: crate::users::NewUser {
                        username: "bench".into(),
                        agency: "BENCH0000".into(),
                        title: "bench".into(),
                        role: crate::users::Role::Administrator,
                        password: password.clone(),
                        training_completed: "2026-01-01".into(),
                        training_expires: "2099-01-01".into(),
                    },
                },
            )
            .await?;
        let mut lat = Vec::with_capacity(args.logins);
        for _ in 0..args.logins.max(1) {
            let mut c = crate::api::client::ApiClient::connect(&url, &ca).await?;
            let t = Instant::now();
            let _: crate::users::Login = c
                .post(
                    "/api/v1/login",
                    &crate::api::users::LoginRequest {
                        username: "bench".into(),
                        password: password.clone(),
                    },
                )
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(lat)
    }
    .await;
    cancel.cancel();
    let _ = server.await;
    let mut lat = result?;
    lat.sort_by(f64::total_cmp);
    let report = LoginReport {
        logins: lat.len(),
        login_p50_ms: percentile(&lat, 0.50),
        login_p99_ms: percentile(&lat, 0.99),
        argon2: "argon2id m=19456 KiB t=2 p=1",
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:<8} {:>10} {:>10}", "logins", "p50 ms", "p99 ms");
        println!(
            "{:<8} {:>10.1} {:>10.1}",
            report.logins, report.login_p50_ms, report.login_p99_ms
        );
        println!("({}; target p99 ≤ 100 ms)", report.argon2);
    }
    Ok(())
}
