//! `alpr-bench hub export`: write and verify the evidence bundle of a case of N
//! reads with photos, through files on disk, and print how long each took.
//!
//! The case is built first (throwaway CA, hub and node, real signatures;
//! photos of `--photo-bytes`) and stored in a real redb hub store (the
//! node's log, its checkpoint, the photos). Timed: choosing the case's
//! reads by its hold, reading entries and photos from the store, writing
//! every record with the writer's checks, the HTML report with inline
//! photos and the signed manifest, syncing the file — then an offline
//! verification of the file from the CA certificate alone. (The API adds
//! the access record and the HTTPS transfer.)

use std::path::PathBuf;
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::evidence::sample::sample_case;
use alpr_shared::evidence::verify_evidence;
use alpr_shared::sync::{NewKey, Verified};
use alpr_shared::types::UnixMillis;
use anyhow::Context;

use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::{HubStorage, WriteOp, WriteResult};

#[derive(Debug, clap::Args)]
pub struct ExportBenchArgs {
    /// Reads in the case (the node's log holds as many others between them).
    #[arg(long, default_value_t = 1_000)]
    pub reads: usize,
    /// Size of each overview photo in bytes (the crop is an eighth of it).
    #[arg(long, default_value_t = 150_000)]
    pub photo_bytes: usize,
    /// Folder for the store and the bundle (default: the system's
    /// temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExportBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.reads > 0, "need at least one read");
    let case = sample_case(args.reads, args.photo_bytes).map_err(anyhow::Error::msg)?;
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("a folder for the store and the bundle")?;
    let anchor = TrustAnchor::from_pem(case.ca_pem.as_bytes())?;

    // The hub's store, holding the node's log, checkpoint and photos.
    let store = RedbStore::open(&dir.path().join("hub.redb"))?;
    let device = case.entries[0].header.device.clone();
    let serial = anchor.check_device_der(&case.node_der)?.serial;
    store.commit(vec![WriteOp::Contact {
        device: device.clone(),
        serial: serial.clone(),
        cert_der: case.node_der.clone(),
        reported_size: 0,
        at: UnixMillis::now(),
    }])?;
    let mut ops = vec![WriteOp::Ingest {
        device: device.clone(),
        entries: case
            .entries
            .iter()
            .map(|e| Verified {
                bytes: e.encode(),
                hash: e.hash(),
                entry: e.clone(),
            })
            .collect(),
        checkpoint: Some(case.checkpoint.clone()),
        new_key: Some(NewKey {
            serial,
            first_seq: 0,
        }),
        at: UnixMillis::now(),
    }];
    for (e, p) in case.entries.iter().zip(&case.photos) {
        if let (Some((crop, overview)), Some(c)) = (p, e.read()) {
            for (hash, bytes) in [(c.crop_hash, crop), (c.overview_hash, overview)] {
                ops.push(WriteOp::Image {
                    device: device.clone(),
                    seq: e.seq(),
                    hash,
                    bytes: bytes.clone(),
                });
            }
        }
    }
    for r in store.commit(ops)? {
        if let WriteResult::Ingested(Err(refusal)) = r {
            anyhow::bail!("the bench's own reads were refused: {refusal:?}");
        }
    }

    // Timed: choose the case's reads by its hold, check them, write the
    // bundle (reading entries and photos from the store) and sync it.
    let path = dir.path().join("case.alpr-evidence");
    let started = Instant::now();
    let holds = vec![case.hold.clone()];
    let chosen = alpr_hub::export::select(&store, &holds).map_err(anyhow::Error::msg)?;
    alpr_hub::export::check_ready(&store, &chosen)?;
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let out = alpr_hub::export::write_bundle(
        &store,
        alpr_hub::export::Signer {
            ca_der: &case.ca_der,
            export_key: &case.export_key,
            log_cert_der: &case.log_der,
        },
        (
            std::io::BufWriter::new(file),
            tempfile::tempfile_in(dir.path())?,
        ),
        case.info.clone(),
        &holds,
        &chosen,
        &case.access,
    )?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().context("syncing the bundle")?;
    let export_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();

    let started = Instant::now();
    let file = std::fs::File::open(&path)?;
    let report = verify_evidence(std::io::BufReader::new(file), &anchor, None)?;
    let verify_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.authentic(),
        "the bundle did not verify: {:?}",
        report.faults
    );
    anyhow::ensure!(report.reads.len() == args.reads, "reads lost");

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "reads": args.reads,
                "entries": case.entries.len(),
                "photo_bytes": args.photo_bytes,
                "bundle_bytes": bytes,
                "export_s": export_s,
                "verify_s": verify_s,
            })
        );
    } else {
        println!(
            "case of {} reads ({} log entries), photos of {} bytes",
            args.reads,
            case.entries.len(),
            args.photo_bytes
        );
        println!("  bundle     {:>10.1} MB", bytes as f64 / 1e6);
        println!("  export     {export_s:>10.3} s");
        println!("  verify     {verify_s:>10.3} s");
    }
    Ok(())
}
