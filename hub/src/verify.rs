//! `hub verify BUNDLE`: an offline check of exported logs. It needs only the
//! bundle and the deployment's CA certificate — no hub, no database.

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::log::bundle::{verify_bundle, BundleReport};
use alpr_shared::log::verify::{LogReport, VerifyOptions};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct OfflineVerifyArgs {
    /// The deployment's CA certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The bundle holds only part of each log (not from sequence 0).
    #[arg(long)]
    pub partial: bool,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
    /// Log bundle file(s) written by the hub or an edge.
    #[arg(required = true)]
    pub bundles: Vec<PathBuf>,
}

pub fn run(args: OfflineVerifyArgs) -> anyhow::Result<ExitCode> {
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let anchor = TrustAnchor::from_pem(&ca)
        .with_context(|| format!("{} is not a usable CA certificate", args.ca.display()))?;
    let opts = VerifyOptions {
        from_start: !args.partial,
    };
    let mut all_ok = true;
    for path in &args.bundles {
        let report = verify_file(path, &anchor, opts)?;
        all_ok &= !report.logs.is_empty() && report.authentic();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "bundle": path.display().to_string(),
                    "hub": report.hub,
                    "signed_at": report.signed_at,
                    "authentic": report.authentic(),
                    "faults": report.faults,
                    "logs": report.logs,
                })
            );
        } else {
            print_bundle(&path.display().to_string(), &report);
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Verify one bundle file, streaming it: only a regular file is read (a
/// directory, FIFO or device is refused before it is opened).
pub fn verify_file(
    path: &std::path::Path,
    anchor: &TrustAnchor,
    opts: VerifyOptions,
) -> anyhow::Result<BundleReport> {
    let meta = std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        anyhow::bail!("{} is a directory, not a bundle file", path.display());
    }
    if !kind.is_file() {
        anyhow::bail!(
            "{} is not a regular file (a FIFO, socket or device?): give the bundle file itself",
            path.display()
        );
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    verify_bundle(std::io::BufReader::new(file), anchor, opts)
        .with_context(|| format!("reading {}", path.display()))
}

/// A bundle's verdict: each node's log, then what is wrong with the whole.
pub fn print_bundle(source: &str, report: &BundleReport) {
    print_reports(source, &report.logs);
    match &report.hub {
        Some(hub) => println!("{source}: manifest signed by {hub} at {}", report.signed_at),
        None => println!("{source}: no valid hub signature"),
    }
    for f in &report.faults {
        println!("    - {f}");
    }
    println!(
        "{source}: {}",
        if report.authentic() && !report.logs.is_empty() {
            "bundle AUTHENTIC and complete"
        } else {
            "bundle NOT AUTHENTIC"
        }
    );
}

/// Human-readable verdicts, one block per device.
pub fn print_reports(source: &str, reports: &[LogReport]) {
    if reports.is_empty() {
        println!("{source}: no logs found");
    }
    for r in reports {
        let verdict = if r.authentic() {
            "AUTHENTIC"
        } else {
            "NOT AUTHENTIC"
        };
        let accesses = if r.accesses > 0 {
            format!(", {} accesses", r.accesses)
        } else {
            String::new()
        };
        println!(
            "{source}: {}: {verdict} — {} entries, {} reads, {} purged with record, {} purge records{accesses}",
            r.device, r.entries, r.reads, r.purged, r.purge_records
        );
        for f in &r.faults {
            println!("    - {f}");
        }
        for l in &r.losses {
            println!("    - {l}");
        }
        if r.faults_omitted > 0 {
            println!("    - … and {} more faults", r.faults_omitted);
        }
    }
}
