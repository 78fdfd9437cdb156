//! `hub bench retention`: a store of N expired reads with their images,
//! purged while simulated edges keep ingesting through the hub's real
//! ingest path ([`crate::bench`]): how long the purge takes, and how much
//! ingest keeps of its rate alone (`ingest_ratio`). Targets: purge_s ≤ 60,
//! ingest_ratio ≥ 0.5.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::log::retention::DAY_MS;
use alpr_shared::log::LogWriter;
use alpr_shared::sync::Verified;
use alpr_shared::types::{DeviceId, TimeSource, UnixMillis};
use anyhow::Context;
use serde::Serialize;

use crate::access::AccessLog;
use crate::bench::{
    filesystem_of, node_key, run_in_process_on, sample_read, sign_edge, IngestArgs,
};
use crate::store::redb::RedbStore;
use crate::store::{HubStorage, WriteOp};

use super::Retention;

#[derive(Debug, clap::Args)]
pub struct RetentionBenchArgs {
    /// Expired reads in the store, each with its two images.
    #[arg(long, default_value_t = 1_000_000)]
    pub reads: usize,
    /// Simulated edges ingesting during the purge.
    #[arg(long, default_value_t = 100)]
    pub edges: usize,
    /// Reads the edges ingest (alone, then again during the purge).
    #[arg(long, default_value_t = 200_000)]
    pub ingest: usize,
    /// Where the temporary database folder goes (default: here).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub allow_tmpfs: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct RetentionBenchReport {
    pub path: String,
    pub fs: String,
    pub reads: usize,
    pub edges: usize,
    pub fill_s: f64,
    pub purge_s: f64,
    pub purged: u64,
    pub purged_per_s: f64,
    pub images_deleted: u64,
    pub ingest_alone_per_s: f64,
    pub ingest_during_purge_per_s: f64,
    pub ingest_ratio: f64,
}

/// Nodes holding the expired reads.
const OLD_NODES: usize = 10;
/// Reads per fill commit.
const FILL_CHUNK: usize = 10_000;

#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    ingest: IngestArgs,
}

fn ingest_args(edges: usize, reads: usize) -> IngestArgs {
    let mut a = <Defaults as clap::Parser>::parse_from(["bench"]).ingest;
    a.edges = edges;
    a.reads = reads;
    a
}

/// Sign `edges` edges' logs of `reads` in all, named with `prefix`.
fn loads(prefix: &str, edges: usize, reads: usize, batch: usize) -> Vec<crate::bench::EdgeLoad> {
    let per_edge = reads / edges;
    let base = UnixMillis::now().0;
    (0..edges)
        .map(|e| {
            let name = DeviceId::new(format!("{prefix}-{e:03}")).expect("valid name");
            let key = node_key(&name);
            sign_edge(e, name, key, None, per_edge, batch, base).0
        })
        .collect()
}

pub async fn run(args: RetentionBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.ingest >= args.edges && args.reads >= OLD_NODES,
        "need at least one read per edge and per node"
    );
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("hub-bench-retention-")
        .tempdir_in(&parent)
        .with_context(|| format!("a temporary folder in {}", parent.display()))?;
    let dir = tmp.path().to_path_buf();
    let fs = filesystem_of(&dir);
    anyhow::ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs: choose a folder on disk with --dir, or pass --allow-tmpfs",
        dir.display()
    );
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.join("bench.redb"))?);

    // Fill: N reads captured 400 days ago, with their images.
    let t0 = Instant::now();
    let old = UnixMillis::now().0 - 400 * DAY_MS;
    let per_node = args.reads / OLD_NODES;
    {
        let storage = storage.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for n in 0..OLD_NODES {
                let name = DeviceId::new(format!("old-{n:02}")).expect("valid name");
                let mut w = LogWriter::new(node_key(&name), name.clone());
                let mut i = 0usize;
                while i < per_node {
                    let end = (i + FILL_CHUNK).min(per_node);
                    let mut entries = Vec::with_capacity(end - i);
                    let mut images = Vec::with_capacity(2 * (end - i));
                    for j in i..end {
                        let k = (n * per_node + j) as u64;
                        let e = w
                            .append_read(
                                sample_read(k),
                                UnixMillis(old + j as u64),
                                TimeSource::Gps,
                            )
                            .context("signing")?;
                        let c = e.read().context("a read")?;
                        for (h, bytes) in [
                            (c.crop_hash, k.to_be_bytes()),
                            (c.overview_hash, (k ^ u64::MAX).to_be_bytes()),
                        ] {
                            images.push(WriteOp::Image {
                                device: name.clone(),
                                seq: j as u64,
                                hash: h,
                                bytes: bytes.to_vec(),
                            });
                        }
                        entries.push(Verified {
                            bytes: e.encode(),
                            hash: e.hash(),
                            entry: e,
                        });
                    }
                    let mut ops = vec![WriteOp::Ingest {
                        device: name.clone(),
                        entries,
                        checkpoint: None,
                        new_key: None,
                        at: UnixMillis::now(),
                    }];
                    ops.extend(images);
                    storage.commit(ops)?;
                    i = end;
                }
            }
            Ok(())
        })
        .await??;
    }
    let fill_s = t0.elapsed().as_secs_f64();

    // Ingest alone.
    let alone = run_in_process_on(
        &ingest_args(args.edges, args.ingest),
        storage.clone(),
        loads("alone", args.edges, args.ingest, 256),
    )
    .await?;
    let ingest_alone = alone.stored as f64 / alone.seconds;

    // Purge while other edges ingest.
    let access = AccessLog::start(storage.clone(), crate::keys::throwaway()?)?;
    let retention = Arc::new(Retention::new(
        storage.clone(),
        access,
        Arc::new(Vec::new),
        Arc::new(UnixMillis::now),
    ));
    let during_loads = loads("during", args.edges, args.ingest, 256);
    let purge = {
        let retention = retention.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = retention.run(365).await;
            (r, t.elapsed().as_secs_f64())
        })
    };
    let during = run_in_process_on(
        &ingest_args(args.edges, args.ingest),
        storage.clone(),
        during_loads,
    )
    .await?;
    let (report, purge_s) = purge.await.context("the purge task")?;
    let report = report?;
    let ingest_during = during.stored as f64 / during.seconds;
    let out = RetentionBenchReport {
        path: dir.display().to_string(),
        fs,
        reads: per_node * OLD_NODES,
        edges: args.edges,
        fill_s,
        purge_s,
        purged: report.purged,
        purged_per_s: report.purged as f64 / purge_s,
        images_deleted: report.images,
        ingest_alone_per_s: ingest_alone,
        ingest_during_purge_per_s: ingest_during,
        ingest_ratio: ingest_during / ingest_alone,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "hub bench retention: {} expired reads with images, {} edges ingesting {} reads",
        out.reads, out.edges, args.ingest
    );
    println!("database in {} ({})", out.path, out.fs);
    println!(
        "{:<44} {:>12}",
        "fill (not measured work)",
        format!("{:.1} s", out.fill_s)
    );
    println!(
        "{:<44} {:>12}   ({} reads, {} images; {:.0} reads/s)",
        "purge",
        format!("{:.1} s", out.purge_s),
        out.purged,
        out.images_deleted,
        out.purged_per_s
    );
    println!(
        "{:<44} {:>12.0}",
        "ingest alone (reads/s)", out.ingest_alone_per_s
    );
    println!(
        "{:<44} {:>12.0}",
        "ingest during the purge (reads/s)", out.ingest_during_purge_per_s
    );
    println!("{:<44} {:>12.2}", "ingest_ratio", out.ingest_ratio);
    Ok(())
}
