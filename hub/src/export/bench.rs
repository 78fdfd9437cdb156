//! `hub bench export`: write and verify the evidence bundle of a case of N
//! reads with photos, through files on disk, and print how long each took.
//!
//! The case is built in memory first (throwaway CA, hub and node, real
//! signatures; photos of `--photo-bytes`), so the figures are the bundle's
//! own cost: writing every record, the checks the writer runs, the HTML
//! report with inline photos and the manifest — then an offline
//! verification of the file from the CA certificate alone.

use std::path::PathBuf;
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::evidence::sample::sample_case;
use alpr_shared::evidence::{verify_evidence, CaseRead, EvidenceWriter};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct ExportBenchArgs {
    /// Reads in the case (the node's log holds as many others between them).
    #[arg(long, default_value_t = 1_000)]
    pub reads: usize,
    /// Size of each overview photo in bytes (the crop is an eighth of it).
    #[arg(long, default_value_t = 150_000)]
    pub photo_bytes: usize,
    /// Folder for the bundle (default: the system's temporary folder).
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
    .context("a folder for the bundle")?;
    let path = dir.path().join("case.alpr-evidence");

    let started = Instant::now();
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = EvidenceWriter::new(
        std::io::BufWriter::new(file),
        case.info.clone(),
        &case.ca_der,
        &case.hub_der,
    )?;
    w.hold(&case.hold)?;
    w.node(std::slice::from_ref(&case.node_der), &case.checkpoint)?;
    for (e, p) in case.entries.iter().zip(&case.photos) {
        match p {
            Some((crop, overview)) => w.read(CaseRead {
                entry: e,
                crop,
                overview,
            })?,
            None => w.header(e)?,
        }
    }
    w.access(&case.access)?;
    let (out, written) = w.finish(&case.hub_key, case.info.created_at)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().context("syncing the bundle")?;
    let export_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        written.faults.is_empty(),
        "the writer found faults: {:?}",
        written.faults
    );
    let bytes = std::fs::metadata(&path)?.len();

    let started = Instant::now();
    let anchor = TrustAnchor::from_pem(case.ca_pem.as_bytes())?;
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
