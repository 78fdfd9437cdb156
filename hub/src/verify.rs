//! `hub verify BUNDLE`: an offline check of exported logs. It needs only the
//! bundle and the deployment's CA certificate — no hub, no database.

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::log::bundle::Bundle;
use alpr_shared::log::verify::{LogReport, VerifyOptions};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
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

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let anchor = TrustAnchor::from_pem(&ca)
        .with_context(|| format!("{} is not a usable CA certificate", args.ca.display()))?;
    let opts = VerifyOptions {
        from_start: !args.partial,
    };
    let mut all_ok = true;
    for path in &args.bundles {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let bundle = Bundle::read(std::io::BufReader::new(file))
            .with_context(|| format!("reading {}", path.display()))?;
        let reports = bundle.verify(&anchor, opts);
        all_ok &= !reports.is_empty() && reports.iter().all(LogReport::authentic);
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "bundle": path.display().to_string(), "logs": reports })
            );
        } else {
            print_reports(&path.display().to_string(), &reports);
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
        println!(
            "{source}: {}: {verdict} — {} entries, {} reads, {} purged with record, {} purge records",
            r.device, r.entries, r.reads, r.purged, r.purge_records
        );
        for f in &r.faults {
            println!("    - {f}");
        }
        for l in &r.losses {
            println!("    - {l}");
        }
    }
}
