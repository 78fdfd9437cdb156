//! The benches' hubs over QUIC: `hub serve` in this process (redb), or
//! `hub serve` child processes on one PostgreSQL database, and one real
//! QUIC connection per simulated edge with its own node certificate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{Frame, Hello, Lane, ALPN, PROTOCOL_VERSION};
use anyhow::Context;

use super::hubs::{self, HubFiles, HubProcess};
use super::served::{loopback_config, ServedHub};
use super::{pg, EdgeLoad, HubRun, IngestArgs, Offer, Run};
use alpr_hub::config::HubConfig;

/// A deployment CA and the hub's keys in `dir`.
pub(crate) fn write_pki(dir: &Path) -> anyhow::Result<alpr_shared::pki::Authority> {
    let ca = write_ca_and_hub(dir, 30)?;
    Ok(alpr_shared::pki::Authority::load(
        &ca.cert_pem,
        &ca.key_pem,
    )?)
}

/// A deployment CA valid `days` and the hub's keys in `dir`; the
/// CA (its key too, for benches that sign reads as its nodes).
pub(crate) fn write_ca_and_hub(dir: &Path, days: i64) -> anyhow::Result<alpr_shared::pki::Issued> {
    std::fs::create_dir_all(dir)?;
    let ca = alpr_shared::pki::new_ca("Bench Agency", days)?;
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem)?;
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    alpr_hub::pki::write_hub_keys(
        &authority,
        dir,
        &["localhost".into(), "127.0.0.1".into()],
        days,
    )?;
    Ok(ca)
}

/// `hub serve` in this process, and one QUIC connection per edge.
pub(super) async fn run_quic(
    args: &IngestArgs,
    dir: &Path,
    pki: &Path,
    loads: Vec<EdgeLoad>,
    offer: Offer,
) -> anyhow::Result<Run> {
    let edges = loads.len();
    let config = HubConfig {
        max_connections: args.edges + 16,
        ..loopback_config(&dir.join("hub-data"), pki)
    };
    let hub = ServedHub::start(config).await?;
    let (addr, ca) = (hub.addr, hub.ca.clone());

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let start = Arc::new(tokio::sync::Barrier::new(edges));
    for (e, load) in loads.into_iter().enumerate() {
        let ca = ca.clone();
        let in_flight = args.in_flight.max(1);
        let pace = Pace {
            offer,
            edge: e,
            edges,
            start: start.clone(),
        };
        tasks.spawn(async move { quic_edge(addr, &ca, load, in_flight, pace).await });
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
    hub.stop().await?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Run::one_hub(
        edges,
        stored,
        stored,
        latencies_ms,
        Vec::new(),
        seconds,
        None,
    ))
}

/// `hubs` `hub serve` processes on the PostgreSQL database `db`, and one
/// QUIC connection per edge, edge `i` to hub `i % hubs`.
pub(super) async fn run_quic_hubs(
    args: &IngestArgs,
    hubs: usize,
    dir: &Path,
    pki: &Path,
    loads: Vec<EdgeLoad>,
    db: &pg::BenchDatabase,
    offer: Offer,
) -> anyhow::Result<Run> {
    let edges = loads.len();
    let start = Arc::new(tokio::sync::Barrier::new(edges));
    let files = HubFiles {
        dir: dir.to_path_buf(),
        pki: pki.to_path_buf(),
        database_url: db.url.clone(),
        pool_size: args.pool_size,
        max_connections: args.edges + 16,
    };
    // One after the other: the first makes the deployment's first policy
    // version, the others load it.
    let mut procs = Vec::new();
    for n in 0..hubs {
        let files = files.clone();
        procs.push(
            tokio::task::spawn_blocking(move || HubProcess::start(n, &files))
                .await
                .context("starting a hub")??,
        );
    }
    let ca = std::fs::read(pki.join("ca.crt"))?;
    let cpu0: Vec<Option<f64>> = procs.iter().map(HubProcess::cpu_seconds).collect();
    let pg0 = hubs::postgres_cpu_seconds(&db.name);
    let mut per_hub: Vec<HubRun> = (0..hubs)
        .map(|_| HubRun {
            edges: 0,
            stored: 0,
            latencies_ms: Vec::new(),
            counters: None,
            cpu_s: None,
        })
        .collect();
    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, load) in loads.into_iter().enumerate() {
        let h = i % hubs;
        per_hub[h].edges += 1;
        let addr = procs[h].addr;
        let ca = ca.clone();
        let in_flight = args.in_flight.max(1);
        let pace = Pace {
            offer,
            edge: i,
            edges,
            start: start.clone(),
        };
        tasks.spawn(async move { (h, quic_edge(addr, &ca, load, in_flight, pace).await) });
    }
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        match r.context("edge task") {
            Ok((h, Ok((n, l)))) => {
                per_hub[h].stored += n;
                per_hub[h].latencies_ms.extend(l);
            }
            Ok((h, Err(e))) => failed = Some(e.context(format!("an edge of hub {h}"))),
            Err(e) => failed = Some(e),
        }
    }
    let seconds = t1.elapsed().as_secs_f64();
    let postgres_cpu_s = Some(hubs::postgres_cpu_seconds(&db.name) - pg0);
    for ((h, p), c0) in per_hub.iter_mut().zip(&procs).zip(cpu0) {
        h.counters = p.counters().ok();
        h.cpu_s = p.cpu_seconds().zip(c0).map(|(a, b)| a - b);
    }
    if let Some(e) = failed {
        let logs: Vec<String> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| format!("hub {i}'s last log lines:\n{}", p.log_tail()))
            .collect();
        return Err(e.context(logs.join("\n")));
    }
    tokio::task::spawn_blocking(move || {
        procs
            .into_iter()
            .enumerate()
            .try_for_each(|(i, p)| p.stop().with_context(|| format!("stopping hub {i}")))
    })
    .await??;
    let stored = per_hub.iter().map(|h| h.stored).sum();
    let latencies_ms = per_hub
        .iter()
        .flat_map(|h| h.latencies_ms.iter().copied())
        .collect();
    Ok(Run {
        stored,
        acked_before_stop: stored,
        latencies_ms,
        waits_ms: Vec::new(),
        seconds,
        commits: None,
        hubs: per_hub,
        postgres_cpu_s,
    })
}

/// How one QUIC edge paces its frames.
struct Pace {
    offer: Offer,
    edge: usize,
    edges: usize,
    /// At a fixed rate, every edge starts its schedule once all are
    /// connected (handshakes are not frames late).
    start: Arc<tokio::sync::Barrier>,
}

/// One edge over QUIC: hello, then its frames on the entries lane with
/// `in_flight` unacknowledged at most (at a fixed rate: each when due);
/// returns what the hub acknowledged and each frame's acknowledgement
/// latency (from its write, or from when it was due).
async fn quic_edge(
    addr: SocketAddr,
    ca: &[u8],
    load: EdgeLoad,
    in_flight: usize,
    pace: Pace,
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
            // Says it holds every policy: the hub pushes none. (The
            // largest version a PostgreSQL bigint keeps.)
            policy_version: i64::MAX as u64,
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
    let schedule = if pace.offer == Offer::Closed {
        None
    } else {
        pace.start.wait().await;
        pace.offer.schedule(Instant::now(), pace.edge, pace.edges)
    };
    let writer = {
        let window = window.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            for (k, f) in frames.into_iter().enumerate() {
                window.acquire().await?.forget();
                let at = match schedule {
                    Some((first, every)) => {
                        let due = first + every.mul_f64(k as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(at);
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
