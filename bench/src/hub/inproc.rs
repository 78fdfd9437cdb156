//! The hub's ingest path without sockets, for `alpr-bench hub ingest` and the
//! benches built on it: each simulated edge's frames go through a
//! [`HubSession`] (decoding, `verify_strict` on the blocking pool, chain
//! placement) and the hub's single [`Writer`] (durable commits, receipts),
//! with the hub's admission limit and stream pipeline.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alpr_shared::sync::{HubOutput, HubSession, Progress};
use alpr_shared::types::UnixMillis;
use alpr_shared::wire::{Frame, Hello, MAX_ENTRIES_FRAME, MAX_ENTRIES_PER_FRAME, PROTOCOL_VERSION};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{hubs, pg, EdgeLoad, IngestArgs, Offer, Run};
use alpr_hub::ingest::{Metrics, Writer, WriterConfig};
use alpr_hub::store::postgres::PgStore;
use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::{HubStorage, WriteOp, WriteResult};

/// The hub's path without sockets: session, verification on the blocking
/// pool, the writer.
pub(super) async fn run_in_process(
    args: &IngestArgs,
    dir: &Path,
    loads: Vec<EdgeLoad>,
    offer: Offer,
) -> anyhow::Result<Run> {
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.join("bench.redb"))?);
    run_in_process_with(args, storage, loads, offer, None).await
}

/// As [`run_in_process`], into `storage` (which may hold other logs).
pub(crate) async fn run_in_process_on(
    args: &IngestArgs,
    storage: Arc<dyn HubStorage>,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    run_in_process_with(args, storage, loads, Offer::Closed, None).await
}

/// As [`run_in_process_on`], the edges offering their frames as `offer`
/// says; with `stop`, each edge stops sending when it fires (its frames
/// in flight still complete), and [`Run::acked_before_stop`] counts the
/// reads acknowledged before.
pub(crate) async fn run_in_process_with(
    args: &IngestArgs,
    storage: Arc<dyn HubStorage>,
    loads: Vec<EdgeLoad>,
    offer: Offer,
    stop: Option<CancellationToken>,
) -> anyhow::Result<Run> {
    let edges = loads.len();
    let stop = stop.unwrap_or_default();
    let metrics = Arc::new(Metrics::default());
    let writer_config = WriterConfig {
        max_batch: args.max_commit.max(1),
        min_batch: args.min_commit,
        linger: Duration::from_millis(args.linger_ms),
        ..WriterConfig::default()
    };
    let (writer, join) = Writer::spawn(storage.clone(), metrics.clone(), writer_config);
    let receipt_key: Arc<alpr_shared::signer::HubKey<alpr_shared::signer::ReceiptSigning>> =
        Arc::new(alpr_hub::keys::throwaway()?);
    let slots = Arc::new(tokio::sync::Semaphore::new(alpr_hub::sync::verify_slots()));
    let admit = args.admit.max(MAX_ENTRIES_PER_FRAME);
    let admission = Arc::new(tokio::sync::Semaphore::new(admit));

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (e, load) in loads.into_iter().enumerate() {
        let schedule = offer.schedule(t1, e, edges);
        let stop = stop.clone();
        let writer = writer.clone();
        let receipt_key = receipt_key.clone();
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
            let mut session =
                HubSession::new(name.clone(), public, receipt_key, Progress::default());
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
            let mut before_stop = 0u64;
            let mut pending: VecDeque<(tokio::task::JoinHandle<_>, Instant, Instant, u64)> =
                VecDeque::new();
            let mut frames = frames.into_iter().enumerate();
            loop {
                // Keep `in_flight` frames queued for the writer, as a hub
                // reading a node's stream ahead of its commits would.
                let next = if pending.len() < in_flight && !stop.is_cancelled() {
                    frames.next()
                } else {
                    None
                };
                let Some((k, bytes)) = next else {
                    let Some((p, sent, ready, weight)) = pending.pop_front() else {
                        break;
                    };
                    let (res, done, in_time): (
                        Result<WriteResult, alpr_hub::ingest::IngestError>,
                        Instant,
                        bool,
                    ) = p.await.context("commit waiter")?;
                    let WriteResult::Ingested(r) = res? else {
                        anyhow::bail!("unexpected writer answer");
                    };
                    for o in session.ingested(r.map(|i| i.progress), now) {
                        match o {
                            HubOutput::Send(Frame::Ack(_)) => {
                                latencies.push((done - sent).as_secs_f64() * 1e3);
                                waits.push((done - ready).as_secs_f64() * 1e3);
                                before_stop += if in_time { weight } else { 0 };
                            }
                            HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                            _ => {}
                        }
                    }
                    continue;
                };
                // The frame is ready (at a fixed rate: when it is due, and
                // its latency counts from then, late or not); the hub
                // admits it when the entries ahead of it are few enough
                // (see `sync::ADMITTED_ENTRIES`).
                let due = match schedule {
                    Some((first, every)) => {
                        let due = first + every.mul_f64(k as f64);
                        tokio::time::sleep_until(due.into()).await;
                        Some(due)
                    }
                    None => None,
                };
                let ready = due.unwrap_or_else(Instant::now);
                // The hub's path from the bytes a stream delivers.
                let frame = match Frame::decode_prefixed(&bytes, MAX_ENTRIES_FRAME) {
                    Ok(Some((f, _))) => f,
                    other => anyhow::bail!("a frame that does not decode: {other:?}"),
                };
                let weight = match &frame {
                    Frame::Entries(e) => e.entries.len(),
                    _ => 1,
                };
                let entries = weight as u64;
                let weight = u32::try_from(weight.clamp(1, admit)).unwrap_or(1);
                let admitted = admission.clone().acquire_many_owned(weight).await?;
                let sent = due.unwrap_or_else(Instant::now);
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
                            let stop = stop.clone();
                            let p = tokio::spawn(async move {
                                let r = p.committed().await;
                                let done = Instant::now();
                                let in_time = !stop.is_cancelled();
                                drop(admitted);
                                (r, done, in_time)
                            });
                            pending.push_back((p, sent, ready, entries));
                            break;
                        }
                        HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                        _ => {}
                    }
                }
            }
            anyhow::Ok((session.progress().next_seq, latencies, waits, before_stop))
        });
    }
    let mut stored = 0;
    let mut acked_before_stop = 0;
    let mut latencies_ms = Vec::new();
    let mut waits_ms = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (n, l, w, b) = r.context("edge task")??;
        stored += n;
        acked_before_stop += b;
        latencies_ms.extend(l);
        waits_ms.extend(w);
    }
    let seconds = t1.elapsed().as_secs_f64();
    drop(writer);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    let commits = (
        Metrics::get(&metrics.commits),
        Metrics::get(&metrics.commit_micros) as f64 / 1e6,
    );
    Ok(Run::one_hub(
        edges,
        stored,
        acked_before_stop,
        latencies_ms,
        waits_ms,
        seconds,
        Some(commits),
    ))
}

/// The in-process path into one PostgreSQL database, through `hubs`
/// stores and writers of their own (as `hubs` processes would), the
/// edges spread over them.
pub(super) async fn run_in_process_pg(
    args: &IngestArgs,
    hubs: usize,
    loads: Vec<EdgeLoad>,
    db: &pg::BenchDatabase,
    offer: Offer,
) -> anyhow::Result<Run> {
    let mut groups: Vec<Vec<EdgeLoad>> = (0..hubs).map(|_| Vec::new()).collect();
    for (i, load) in loads.into_iter().enumerate() {
        groups[i % hubs].push(load);
    }
    let mut stores = Vec::new();
    for _ in 0..hubs {
        let config = pg::config(&db.url, args.pool_size);
        let store = tokio::task::spawn_blocking(move || PgStore::open(&config)).await??;
        stores.push(Arc::new(store) as Arc<dyn HubStorage>);
    }
    // The stores stay open (their backends alive) until measured.
    let open = stores.clone();
    let pg0 = hubs::postgres_cpu_seconds(&db.name);
    let t = Instant::now();
    let runs = futures_util::future::try_join_all(
        stores
            .into_iter()
            .zip(groups)
            .map(|(store, group)| run_in_process_with(args, store, group, offer, None)),
    )
    .await?;
    let seconds = t.elapsed().as_secs_f64();
    let postgres_cpu_s = Some(hubs::postgres_cpu_seconds(&db.name) - pg0);
    drop(open);
    let mut all = Run {
        stored: 0,
        acked_before_stop: 0,
        latencies_ms: Vec::new(),
        waits_ms: Vec::new(),
        seconds,
        commits: Some((0, 0.0)),
        hubs: Vec::new(),
        postgres_cpu_s,
    };
    for r in runs {
        all.stored += r.stored;
        all.acked_before_stop += r.acked_before_stop;
        all.latencies_ms.extend(r.latencies_ms);
        all.waits_ms.extend(r.waits_ms);
        if let (Some(a), Some(b)) = (all.commits.as_mut(), r.commits) {
            a.0 += b.0;
            a.1 += b.1;
        }
        all.hubs.extend(r.hubs);
    }
    Ok(all)
}
