//! `hub verify BUNDLE`: an offline check of exported logs. It needs only the
//! bundle and the deployment's CA certificate — no hub, no database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::evidence::{is_evidence, verify_evidence, EvidenceError, EvidenceReport};
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
    /// Log bundle file(s) written by the hub or an edge, or evidence
    /// bundles written by `hub export` (recognised by their magic).
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
        if is_evidence_file(path)? {
            let report = verify_evidence_file(path, &anchor);
            all_ok &= report.as_ref().is_ok_and(EvidenceReport::authentic);
            print_evidence(&path.display().to_string(), &report, args.json);
            continue;
        }
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

/// Whether the file starts with the evidence bundle's magic.
fn is_evidence_file(path: &Path) -> anyhow::Result<bool> {
    check_regular(path)?;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = std::io::Read::read(&mut f, &mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(is_evidence(&head[..n]))
}

/// Verify an evidence bundle (`hub export`), streaming it.
pub fn verify_evidence_file(
    path: &Path,
    anchor: &TrustAnchor,
) -> Result<EvidenceReport, EvidenceError> {
    let file = std::fs::File::open(path)?;
    verify_evidence(std::io::BufReader::new(file), anchor, None)
}

/// An evidence bundle's verdict: the export, each read, then what is wrong.
pub fn print_evidence(source: &str, report: &Result<EvidenceReport, EvidenceError>, json: bool) {
    let r = match report {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"bundle": source, "authentic": false, "error": e.to_string()})
                );
            } else {
                println!("{source}: evidence bundle NOT AUTHENTIC: {e}");
            }
            return;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": source,
                "evidence": true,
                "authentic": r.authentic(),
                "export": r.info,
                "hub": r.hub,
                "signed_at": r.signed_at,
                "nodes": r.nodes,
                "holds": r.holds.len(),
                "accesses": r.accesses,
                "reads": r.reads,
                "faults": r.faults,
            })
        );
        return;
    }
    if let Some(i) = &r.info {
        println!(
            "{source}: evidence of case {} for {} ({}), exported by {} ({}) at {}",
            i.case, i.recipient_name, i.recipient_ori, i.exported_by, i.agency, i.created_at
        );
    }
    match (&r.hub, r.signed_at) {
        (Some(hub), Some(at)) => println!("{source}: manifest signed by {hub} at {at}"),
        _ => println!("{source}: no valid hub signature"),
    }
    let ok = r.reads.iter().filter(|x| x.ok()).count();
    println!(
        "{source}: {} reads ({ok} verified) from {} node(s), {} hold(s), {} access entr{}",
        r.reads.len(),
        r.nodes.len(),
        r.holds.len(),
        r.accesses,
        if r.accesses == 1 { "y" } else { "ies" }
    );
    for f in r.faults.iter().take(50) {
        println!("    - {f}");
    }
    if r.faults.len() > 50 {
        println!("    - … and {} more faults", r.faults.len() - 50);
    }
    println!(
        "{source}: {}",
        if r.authentic() {
            "evidence AUTHENTIC"
        } else {
            "evidence NOT AUTHENTIC"
        }
    );
}

fn check_regular(path: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// Verify one bundle file, streaming it: only a regular file is read (a
/// directory, FIFO or device is refused before it is opened).
pub fn verify_file(
    path: &std::path::Path,
    anchor: &TrustAnchor,
    opts: VerifyOptions,
) -> anyhow::Result<BundleReport> {
    check_regular(path)?;
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
