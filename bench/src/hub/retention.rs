//! `alpr-bench hub retention`: a store of N expired reads, each with a plate
//! crop and an overview photo of realistic size (`--crop-bytes`, default
//! 20 KB; `--overview-bytes`, default 150 KB; content as incompressible as
//! a JPEG's, named by its hash as the reads sign it), purged while
//! simulated edges keep ingesting through the hub's real ingest path
//! ([`crate::hub`]) from the purge's start to its end: how long the
//! purge takes (`purge_s`), and how much of its rate alone ingest keeps
//! meanwhile (`ingest_ratio`: reads acknowledged during the purge per
//! second of it, over the rate alone). Targets: purge_s ≤ 60,
//! ingest_ratio ≥ 0.5.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::crypto::sha256;
use alpr_shared::log::retention::DAY_MS;
use alpr_shared::log::LogWriter;
use alpr_shared::sync::Verified;
use alpr_shared::types::{DeviceId, ReadContent, TimeSource, UnixMillis};
use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hub::{
    node_key, on_disk, run_in_process_on, run_in_process_with, sample_read, sign_edge, IngestArgs,
    Offer,
};
use alpr_hub::access::AccessLog;
use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::{HubStorage, WriteOp};

use alpr_hub::retention::Retention;

#[derive(Debug, clap::Args)]
pub struct RetentionBenchArgs {
    /// Expired reads in the store, each with its two images.
    #[arg(long, default_value_t = 1_000_000)]
    pub reads: usize,
    /// Bytes of each read's plate crop.
    #[arg(long, default_value_t = 20_000)]
    pub crop_bytes: usize,
    /// Bytes of each read's overview photo.
    #[arg(long, default_value_t = 150_000)]
    pub overview_bytes: usize,
    /// Simulated edges ingesting during the purge.
    #[arg(long, default_value_t = 100)]
    pub edges: usize,
    /// Reads the edges ingest alone (the rate the purge is compared with).
    #[arg(long, default_value_t = 200_000)]
    pub ingest: usize,
    /// Reads signed for the edges to send during the purge: they send
    /// until the purge ends (the run says if these ran out first).
    #[arg(long, default_value_t = 1_000_000)]
    pub pool: usize,
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
    pub crop_bytes: usize,
    pub overview_bytes: usize,
    /// The database file after the fill, and after the purge.
    pub db_bytes_before: u64,
    pub db_bytes_after: u64,
    pub edges: usize,
    pub fill_s: f64,
    pub purge_s: f64,
    pub purged: u64,
    pub purged_per_s: f64,
    pub images_deleted: u64,
    pub ingest_alone_per_s: f64,
    /// Reads acknowledged while the purge ran, per second of the purge.
    pub ingest_during_purge_per_s: f64,
    pub ingest_ratio: f64,
    /// Whether the edges were still sending when the purge ended (else
    /// the `--pool` ran out first, and the ratio covers less than all of
    /// the purge).
    pub ingest_covered_purge: bool,
}

/// Nodes holding the expired reads.
const OLD_NODES: usize = 10;
/// Most bytes of images in one fill commit.
const FILL_BYTES: usize = 64 << 20;

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
fn loads(prefix: &str, edges: usize, reads: usize, batch: usize) -> Vec<crate::hub::EdgeLoad> {
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

/// `len` bytes that do not compress (as a JPEG's do not), different for
/// each `seed`.
pub(crate) fn image_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Read `k`: [`sample_read`] naming a crop and an overview of the given
/// sizes by their hashes, and those images.
pub(crate) fn read_with_images(
    k: u64,
    crop_bytes: usize,
    overview_bytes: usize,
) -> (ReadContent, Vec<u8>, Vec<u8>) {
    let crop = image_bytes(2 * k, crop_bytes);
    let overview = image_bytes(2 * k + 1, overview_bytes);
    let mut read = sample_read(k);
    read.crop_hash = sha256(&crop);
    read.overview_hash = sha256(&overview);
    (read, crop, overview)
}

fn file_bytes(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub async fn run(args: RetentionBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0
            && args.ingest >= args.edges
            && args.pool >= args.edges
            && args.reads >= OLD_NODES,
        "need at least one read per edge and per node"
    );
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("hub-bench-retention-")
        .tempdir_in(&parent)
        .with_context(|| format!("a temporary folder in {}", parent.display()))?;
    let dir = tmp.path().to_path_buf();
    let fs = on_disk(
        &dir,
        args.allow_tmpfs,
        "the purge's and ingest's durable commits would cost nothing",
    )?;
    let per_read = args.crop_bytes + args.overview_bytes;
    // redb keeps a photo of 150 KB in about 1.7 times its size.
    let need = (args.reads as u64).saturating_mul(2 * per_read as u64 + 1024);
    if let Some(free) = alpr_shared::health::disk_free(&dir) {
        anyhow::ensure!(
            need < free / 10 * 9,
            "{} reads with {} bytes of images each need about {} GB; {} has {} GB free. \
             Ask for fewer --reads, or choose another --dir",
            args.reads,
            per_read,
            need >> 30,
            dir.display(),
            free >> 30
        );
    }
    let db = dir.join("bench.redb");
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&db)?);

    // Fill: N reads captured 400 days ago, with their images.
    eprintln!(
        "filling {} with {} reads and {} MB of images…",
        db.display(),
        args.reads,
        need >> 20
    );
    let t0 = Instant::now();
    let old = UnixMillis::now().0 - 400 * DAY_MS;
    let per_node = args.reads / OLD_NODES;
    let chunk = (FILL_BYTES / per_read.max(1)).clamp(1, 10_000);
    {
        let storage = storage.clone();
        let (crop_bytes, overview_bytes) = (args.crop_bytes, args.overview_bytes);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for n in 0..OLD_NODES {
                let name = DeviceId::new(format!("old-{n:02}")).expect("valid name");
                let mut w = LogWriter::new(node_key(&name), name.clone());
                let mut i = 0usize;
                while i < per_node {
                    let end = (i + chunk).min(per_node);
                    let mut entries = Vec::with_capacity(end - i);
                    let mut images = Vec::with_capacity(2 * (end - i));
                    for j in i..end {
                        let k = (n * per_node + j) as u64;
                        let (read, crop, overview) =
                            read_with_images(k, crop_bytes, overview_bytes);
                        let e = w
                            .append_read(read, UnixMillis(old + j as u64), TimeSource::Gps)
                            .context("signing")?;
                        let c = e.read().context("a read")?;
                        for (h, bytes) in [(c.crop_hash, crop), (c.overview_hash, overview)] {
                            images.push(WriteOp::Image {
                                device: name.clone(),
                                seq: j as u64,
                                hash: h,
                                bytes,
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
    let db_bytes_before = file_bytes(&db);

    // Ingest alone.
    eprintln!(
        "ingest alone: {} reads from {} edges…",
        args.ingest, args.edges
    );
    let alone = run_in_process_on(
        &ingest_args(args.edges, args.ingest),
        storage.clone(),
        loads("alone", args.edges, args.ingest, 256),
    )
    .await?;
    let ingest_alone = alone.stored as f64 / alone.seconds;

    // Purge while other edges ingest, from its start to its end.
    eprintln!(
        "signing {} reads for the edges to send during the purge…",
        args.pool
    );
    let during_loads = {
        let (edges, pool) = (args.edges, args.pool);
        tokio::task::spawn_blocking(move || loads("during", edges, pool, 256)).await?
    };
    let access = AccessLog::start(storage.clone(), alpr_hub::keys::throwaway()?)?;
    let retention = Arc::new(Retention::new(
        storage.clone(),
        access,
        Arc::new(Vec::new),
        Arc::new(UnixMillis::now),
    ));
    eprintln!("purging while the edges ingest…");
    let stop = CancellationToken::new();
    let purge = {
        let retention = retention.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = retention.run(365).await;
            let took = t.elapsed().as_secs_f64();
            stop.cancel();
            (r, took)
        })
    };
    let during = run_in_process_with(
        &ingest_args(args.edges, args.pool),
        storage.clone(),
        during_loads,
        Offer::Closed,
        Some(stop.clone()),
    )
    .await?;
    let covered =
        stop.is_cancelled() && (during.stored as usize) < args.pool / args.edges * args.edges;
    let (report, purge_s) = purge.await.context("the purge task")?;
    let report = report?;
    let ingest_during = during.acked_before_stop as f64 / purge_s;
    let out = RetentionBenchReport {
        path: dir.display().to_string(),
        fs,
        reads: per_node * OLD_NODES,
        crop_bytes: args.crop_bytes,
        overview_bytes: args.overview_bytes,
        db_bytes_before,
        db_bytes_after: file_bytes(&db),
        edges: args.edges,
        fill_s,
        purge_s,
        purged: report.purged,
        purged_per_s: report.purged as f64 / purge_s,
        images_deleted: report.images,
        ingest_alone_per_s: ingest_alone,
        ingest_during_purge_per_s: ingest_during,
        ingest_ratio: ingest_during / ingest_alone,
        ingest_covered_purge: covered,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table(&out, args.ingest);
    Ok(())
}

fn print_table(out: &RetentionBenchReport, ingest: usize) {
    println!(
        "alpr-bench hub retention: {} expired reads with images ({} B crop + {} B overview), \
         {} edges ingesting",
        out.reads, out.crop_bytes, out.overview_bytes, out.edges
    );
    println!(
        "database in {} ({}): {} MB after the fill, {} MB after the purge",
        out.path,
        out.fs,
        out.db_bytes_before >> 20,
        out.db_bytes_after >> 20
    );
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
        "{:<44} {:>12.0}   ({ingest} reads)",
        "ingest alone (reads/s)", out.ingest_alone_per_s
    );
    println!(
        "{:<44} {:>12.0}   (acknowledged during the purge ÷ its seconds)",
        "ingest during the purge (reads/s)", out.ingest_during_purge_per_s
    );
    println!("{:<44} {:>12.2}", "ingest_ratio", out.ingest_ratio);
    if !out.ingest_covered_purge {
        println!(
            "NOTE: the edges ran out of reads before the purge ended: raise --pool for a ratio \
             over the whole purge"
        );
    }
}
