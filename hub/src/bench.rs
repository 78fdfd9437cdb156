//! `hub bench ingest`: many edges' signed reads through the hub's real
//! ingest path — session, batch signature verification, chain placement,
//! the single writer with a durable commit per transaction, signed
//! receipts — and a table of what it sustained.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::{LogWriter, SignedEntry};
use alpr_shared::sync::{HubOutput, HubSession, Progress};
use alpr_shared::types::{DeviceId, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::{
    sign_checkpoint, Entries, Frame, Hello, MAX_ENTRIES_FRAME, MAX_ENTRIES_PER_FRAME,
    PROTOCOL_VERSION,
};
use anyhow::Context;

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
    /// Folder for the database (a temporary one if not given).
    #[arg(long)]
    pub dir: Option<PathBuf>,
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
fn node_key(name: &DeviceId) -> SecretKey {
    SecretKey::from_bytes(&sha256(name.as_str().as_bytes()).0)
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.reads >= args.edges,
        "need at least one read per edge"
    );
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let per_edge = args.reads / args.edges;
    let total = per_edge * args.edges;

    // Sign every edge's log first (this is the edges' work, not the hub's).
    let t0 = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let logs: Vec<(DeviceId, alpr_shared::crypto::PublicKey, Vec<SignedEntry>)> =
        std::thread::scope(|s| {
            let chunks: Vec<Vec<usize>> = (0..threads)
                .map(|t| (0..args.edges).filter(|e| e % threads == t).collect())
                .collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|edges| {
                    s.spawn(move || {
                        edges
                            .into_iter()
                            .map(|e| {
                                let name =
                                    DeviceId::new(format!("bench-{e:03}")).expect("valid name");
                                let key = node_key(&name);
                                let public = key.public();
                                let mut w = LogWriter::new(key, name.clone());
                                let entries = (0..per_edge)
                                    .map(|i| {
                                        let n = (e * per_edge + i) as u64;
                                        w.append_read(
                                            sample_read(n),
                                            UnixMillis(1_750_000_000_000 + n * 37),
                                            TimeSource::Gps,
                                        )
                                        .expect("valid read")
                                    })
                                    .collect();
                                (name, public, entries)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
    let sign_secs = t0.elapsed().as_secs_f64();
    let canonical_bytes: usize = logs
        .iter()
        .flat_map(|(_, _, e)| e.iter().map(|e| e.encode().len()))
        .sum();
    // Frames as edges send them (compact entries, a checkpoint each),
    // built before the clock starts: that is the edges' work too.
    let batch = args.batch.clamp(1, MAX_ENTRIES_PER_FRAME);
    let mut wire_bytes = 0usize;
    let logs: Vec<(DeviceId, alpr_shared::crypto::PublicKey, u64, Vec<Vec<u8>>)> = logs
        .into_iter()
        .map(|(name, key, entries)| {
            let n = entries.len() as u64;
            let frames: Vec<Vec<u8>> = entries
                .chunks(batch)
                .filter_map(|c| {
                    let last = c.last()?;
                    let cp = sign_checkpoint(
                        &node_key(&name),
                        name.clone(),
                        last.seq() + 1,
                        last.hash(),
                        UnixMillis::now(),
                    );
                    Entries::from_log(c.to_vec(), Some(cp)).map(|f| Frame::Entries(f).encode())
                })
                .collect();
            wire_bytes += frames.iter().map(Vec::len).sum::<usize>();
            (name, key, n, frames)
        })
        .collect();

    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.join("bench.redb"))?);
    let metrics = Arc::new(Metrics::default());
    let writer_config = WriterConfig {
        max_batch: args.max_commit.max(1),
        min_batch: args.min_commit,
        linger: std::time::Duration::from_millis(args.linger_ms),
        ..WriterConfig::default()
    };
    let (writer, join) = Writer::spawn(storage.clone(), metrics.clone(), writer_config);
    let hub_key = Arc::new(SecretKey::generate());

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, key, n, frames) in logs {
        let writer = writer.clone();
        let hub_key = hub_key.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move {
            let mut session = HubSession::new(name.clone(), key, hub_key, Progress::default());
            let now = UnixMillis::now();
            session.handle_frame(
                Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    device: name.clone(),
                    log_size: n,
                }),
                now,
            );
            let mut acks = 0u64;
            let mut pending = std::collections::VecDeque::new();
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
                    let Some(p) = pending.pop_front() else { break };
                    let res = crate::ingest::Pending::committed(p).await?;
                    let WriteResult::Ingested(r) = res else {
                        anyhow::bail!("unexpected writer answer");
                    };
                    for o in session.ingested(r.map(|i| i.progress), now) {
                        match o {
                            HubOutput::Send(Frame::Ack(_)) => acks += 1,
                            HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                            _ => {}
                        }
                    }
                    continue;
                };
                // The hub's path from the bytes a stream delivers.
                let frame = match Frame::decode_prefixed(&bytes, MAX_ENTRIES_FRAME) {
                    Ok(Some((f, _))) => f,
                    other => anyhow::bail!("a frame that does not decode: {other:?}"),
                };
                for out in session.handle_frame(frame, now) {
                    match out {
                        HubOutput::Ingest(v) => {
                            pending.push_back(
                                writer
                                    .enqueue(WriteOp::Ingest {
                                        device: name.clone(),
                                        entries: v.entries,
                                        checkpoint: v.checkpoint,
                                        new_key: v.new_key,
                                        at: now,
                                    })
                                    .await?,
                            );
                        }
                        HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                        _ => {}
                    }
                }
                tokio::task::yield_now().await;
            }
            anyhow::Ok((session.progress().next_seq, acks))
        });
    }
    let mut stored = 0;
    while let Some(r) = tasks.join_next().await {
        let (n, _) = r.context("edge task")??;
        stored += n;
    }
    let ingest_secs = t1.elapsed().as_secs_f64();
    drop(writer);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    anyhow::ensure!(stored as usize == total, "stored {stored} of {total}");
    let commits = Metrics::get(&metrics.commits);
    let commit_secs = Metrics::get(&metrics.commit_micros) as f64 / 1e6;

    println!(
        "hub bench ingest: {} edges × {} reads = {} reads",
        args.edges, per_edge, total
    );
    println!(
        "{:<38} {:>12} {:>10} {:>12}",
        "phase", "reads", "seconds", "reads/s"
    );
    println!(
        "{:<38} {:>12} {:>10.2} {:>12.0}",
        "edges sign their logs (not hub work)",
        total,
        sign_secs,
        total as f64 / sign_secs
    );
    println!(
        "{:<38} {:>12} {:>10.2} {:>12.0}",
        "verify + chain + durable store + ack",
        total,
        ingest_secs,
        total as f64 / ingest_secs
    );
    println!(
        "\n{} durable commits ({:.0} reads per commit); {:.0} bytes per entry on the wire \
         ({:.0} stored)",
        commits,
        total as f64 / commits.max(1) as f64,
        wire_bytes as f64 / total as f64,
        canonical_bytes as f64 / total as f64
    );
    println!(
        "the writer spent {commit_secs:.2} s of {ingest_secs:.2} s in commits ({:.0} reads/s while committing)",
        total as f64 / commit_secs.max(1e-9)
    );
    Ok(())
}
