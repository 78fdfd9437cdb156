//! `hub export` and `hub audit exports`.
//!
//! `hub export --case C --to ORI --out FILE [--purpose P]`
//! asks the hub for the case's evidence bundle, writes it to FILE (through
//! `FILE.partial`, renamed once complete), verifies it offline with the
//! session's CA certificate, and writes the HTML report inside it to
//! `FILE.html` for a browser.

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::evidence::verify_evidence;
use anyhow::Context;

use crate::api::audit::{AccessAudit, AccessRow};
use crate::api::client::Session;
use crate::export::ExportRequest;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The case number.
    #[arg(long)]
    pub case: String,
    /// The recipient agency's ORI (an in-state public agency in the policy).
    #[arg(long)]
    pub to: String,
    /// The bundle file to write; the HTML report goes to FILE.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Purpose code from the policy.
    #[arg(long)]
    pub purpose: Option<String>,
}

/// `FILE.html` next to the bundle.
pub fn html_path(out: &std::path::Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".html");
    PathBuf::from(s)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let req = ExportRequest {
        case: args.case.clone(),
        to: args.to.clone(),
        purpose: args.purpose.clone(),
    };
    let session = Session::load()?;
    let mut partial = args.out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let result = crate::api::client::runtime()?.block_on(async {
        session
            .client()
            .await?
            .post_download("/api/v1/export", &req, &mut out)
            .await
    });
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().context("syncing the bundle")?;
    drop(file);
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    // Check what arrived, offline, and write the report for a browser.
    let ca =
        std::fs::read(&session.ca).with_context(|| format!("reading {}", session.ca.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).context("the session's CA certificate")?;
    let html = html_path(&args.out);
    let mut html_out = std::io::BufWriter::new(
        std::fs::File::create(&html).with_context(|| format!("creating {}", html.display()))?,
    );
    let input = std::io::BufReader::new(std::fs::File::open(&args.out)?);
    let report = verify_evidence(input, &anchor, Some(&mut html_out))
        .with_context(|| format!("checking {}", args.out.display()))?;
    std::io::Write::flush(&mut html_out)?;
    println!(
        "exported case {} to {}: {} reads, {bytes} bytes in {} (report: {})",
        args.case,
        args.to,
        report.reads.len(),
        args.out.display(),
        html.display()
    );
    if report.authentic() {
        println!("{}: evidence AUTHENTIC", args.out.display());
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &report.faults {
            println!("    - {f}");
        }
        println!("{}: evidence NOT AUTHENTIC", args.out.display());
        Ok(ExitCode::FAILURE)
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The recipient an export's access record names (`to=ORI`).
fn recipient_of(r: &AccessRow) -> String {
    r.query
        .split_whitespace()
        .find_map(|w| w.strip_prefix("to="))
        .unwrap_or("?")
        .to_owned()
}

/// `hub audit exports`: every export attempt, from the access log.
pub fn exports(args: ExportsArgs) -> anyhow::Result<ExitCode> {
    let a: AccessAudit = crate::api::client::api_get("/api/v1/audit/access")?;
    let rows: Vec<&AccessRow> = a
        .rows
        .iter()
        .filter(|r| r.action == alpr_shared::log::AccessAction::Export.as_str())
        .collect();
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "time": r.time,
                    "user": r.user,
                    "agency": r.agency,
                    "case": r.case,
                    "recipient": recipient_of(r),
                    "reads": r.results,
                    "purpose": r.purpose,
                    "outcome": r.outcome,
                    "query": r.query,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<12} {:<10} {:<12} {:<10} {:>6} OUTCOME",
        "TIME", "USER", "AGENCY", "CASE", "TO", "READS"
    );
    for r in &rows {
        println!(
            "{:<24} {:<12} {:<10} {:<12} {:<10} {:>6} {}",
            r.time.to_string(),
            r.user,
            r.agency,
            r.case.as_deref().unwrap_or("-"),
            recipient_of(r),
            r.results,
            r.outcome
        );
    }
    println!("\n{} exports", rows.len());
    Ok(ExitCode::SUCCESS)
}
