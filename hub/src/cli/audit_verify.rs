//! `hub audit verify`: re-verify every node log the running hub holds, and
//! its own access log, from the deployment's CA certificate alone.
//!
//! The command asks the hub (over its HTTPS API, as an auditor logged in
//! with `hub login`, like every command for people) for its log bundle:
//! every node's certificates, latest checkpoint and entries and the hub's
//! own log, as one consistent snapshot of logs that may still grow, built
//! and signed by the hub from its store ([`crate::audit::bundle`]). It trusts
//! none of it: the bundle is read as it arrives by the offline verifier of
//! `hub verify` ([`alpr_shared::log::bundle::verify_bundle`]: each
//! certificate against the CA, signatures under a certificate valid at
//! capture and not revoked by then, keys moving only forward, chain from
//! sequence 0, content commitments, purge records, checkpoints, the hub's
//! signature over the whole), so the command's memory does not grow with
//! the hub's data. It also checks that every node `hub nodes` lists is in
//! the bundle with at least the entries the hub acknowledged, and ends
//! with a one-line verdict. The exit status is 0 only if every log is
//! authentic.
//!
//! `--export FILE` keeps the bundle as it arrives, for `hub verify` on
//! another machine (0600: it holds plates).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::log::bundle::{verify_bundle, BundleReport};
use alpr_shared::log::verify::{LogReport, VerifyOptions};
use alpr_shared::types::UnixMillis;
use anyhow::Context;
use serde::Serialize;

use crate::api::audit::MissingImagesReport;
use crate::api::client::{ApiClient, Session};
use crate::api::nodes::NodesReport;

#[derive(Debug, clap::Args)]
pub struct AuditVerifyArgs {
    /// The trust anchor; the CA certificate of the session (`hub login
    /// --ca`) when absent.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Also keep the bundle the hub signed (every node log and the hub's)
    /// in this file, for `hub verify` on another machine.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// What the audit found for one log.
#[derive(Debug, Serialize)]
pub struct NodeAudit {
    #[serde(flatten)]
    pub report: LogReport,
    /// Problems outside the log itself (what the hub serves does not add up).
    pub problems: Vec<String>,
}

impl NodeAudit {
    pub fn authentic(&self) -> bool {
        self.report.authentic() && self.problems.is_empty()
    }
}

/// The whole audit.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub nodes: Vec<NodeAudit>,
    pub authentic: bool,
    pub reads: u64,
    pub verdict: String,
    /// The hub that signed the bundle (its certificate's name) and when.
    pub signed_by: Option<String>,
    pub signed_at: UnixMillis,
    /// What is wrong with the bundle as a whole (its signature, a node
    /// missing, a size that differs from what was signed).
    pub faults: Vec<String>,
    /// Reads whose images the hub is missing, per node that has any (the
    /// log can be authentic and still incomplete: a restore from a backup).
    pub missing_images: Vec<MissingImagesReport>,
    /// The hub's own access log, signed with the hub's key (its
    /// certificate checked against the CA).
    pub hub_access_log: Option<NodeAudit>,
}

pub fn run(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let session = Session::load()?;
    let ca_path = args.ca.clone().unwrap_or_else(|| session.ca.clone());
    let ca = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let anchor = TrustAnchor::from_pem(&ca)
        .with_context(|| format!("{} is not a usable CA certificate", ca_path.display()))?;
    let report = crate::api::client::runtime()?.block_on(async {
        let mut client = session.client().await?;
        // Listed before the bundle is built: every node here with its
        // entries must be in it.
        let listed: NodesReport = client.get("/api/v1/nodes").await?;
        let bundle = fetch_bundle(&mut client, &anchor, args.export.as_deref()).await?;
        let missing: Vec<MissingImagesReport> = client
            .get("/api/v1/audit/missing-images")
            .await
            .context("asking for the reads whose images the hub lacks")?;
        anyhow::Ok(audit_report(bundle, &listed, missing))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, args.export.as_deref());
    }
    Ok(if report.authentic {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print(report: &AuditReport, export: Option<&Path>) {
    for n in &report.nodes {
        crate::verify::print_reports("hub", std::slice::from_ref(&n.report));
        for size in &n.report.checkpoints {
            println!("    checked against the checkpoint the node signed at size {size}");
        }
        for p in &n.problems {
            println!("    - {p}");
        }
    }
    if let Some(h) = &report.hub_access_log {
        crate::verify::print_reports("access log", std::slice::from_ref(&h.report));
        for p in &h.problems {
            println!("    - {p}");
        }
    }
    match &report.signed_by {
        Some(hub) => println!("bundle built and signed by {hub} at {}", report.signed_at),
        None => println!("bundle: no valid hub signature"),
    }
    for f in &report.faults {
        println!("    - {f}");
    }
    for m in &report.missing_images {
        println!(
            "MISSING IMAGES: {}: {} reads whose images the hub does not hold ({} images; first at entry {})",
            m.node,
            m.reads,
            m.images,
            m.first.first().map_or(0, |(s, _)| *s)
        );
    }
    if let Some(path) = export {
        println!("bundle kept in {}", path.display());
    }
    println!("{}", report.verdict);
}

/// Stream the hub's bundle into the offline verifier (on its own thread,
/// through a bounded queue), keeping a copy in `export` if asked.
async fn fetch_bundle(
    client: &mut ApiClient,
    anchor: &TrustAnchor,
    export: Option<&Path>,
) -> anyhow::Result<BundleReport> {
    let partial = export.map(partial_path);
    let copy = match &partial {
        // An export holds plates: owner-only, like the database it came from.
        Some(p) => Some(std::io::BufWriter::new(
            alpr_shared::private::create_private_file(p)?,
        )),
        None => None,
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let anchor = anchor.clone();
    let verifier = std::thread::Builder::new()
        .name("verify-bundle".into())
        .spawn(move || {
            let mut input = Incoming {
                rx,
                chunk: Vec::new(),
                at: 0,
                copy,
            };
            let report = verify_bundle(&mut input, &anchor, VerifyOptions { from_start: true });
            // Whatever came after an error is kept too (the hub's bytes).
            while input.fill() {}
            (report, input.copy)
        })
        .context("starting the verifier")?;
    let fetched = client
        .get_download("/api/v1/audit/bundle", &mut Outgoing(tx))
        .await;
    let (report, copy) = verifier
        .join()
        .map_err(|_| anyhow::anyhow!("the verifier stopped"))?;
    let kept = finish_copy(copy, partial.as_deref(), export);
    fetched.context("fetching the hub's log bundle")?;
    let report = report.context("reading the hub's log bundle")?;
    kept?;
    Ok(report)
}

/// Chunks of the bundle waiting for the verifier, at most.
const QUEUE: usize = 16;

fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Close the copy and give it its name; remove what was written if any
/// step failed.
fn finish_copy(
    copy: Option<std::io::BufWriter<std::fs::File>>,
    partial: Option<&Path>,
    export: Option<&Path>,
) -> anyhow::Result<()> {
    let (Some(copy), Some(partial), Some(export)) = (copy, partial, export) else {
        return Ok(());
    };
    let done = copy
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(partial, export));
    if done.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    done.with_context(|| format!("writing {}", export.display()))
}

/// The download's side of the queue.
struct Outgoing(mpsc::SyncSender<Vec<u8>>);

impl Write for Outgoing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.send(data.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the verifier stopped")
        })?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The verifier's side: the bundle's bytes in order, copied as they are
/// read.
struct Incoming {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    copy: Option<std::io::BufWriter<std::fs::File>>,
}

impl Incoming {
    /// The next chunk, copied; false at the end.
    fn fill(&mut self) -> bool {
        let Ok(chunk) = self.rx.recv() else {
            return false;
        };
        if let Some(c) = self.copy.as_mut() {
            if c.write_all(&chunk).is_err() {
                self.copy = None;
            }
        }
        self.chunk = chunk;
        self.at = 0;
        true
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            if !self.fill() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The audit's findings: the bundle's verdict, each node `listed` (from
/// `hub nodes`, asked before the bundle) checked to be in it with the
/// entries the hub had acknowledged, and the missing images.
fn audit_report(
    bundle: BundleReport,
    listed: &NodesReport,
    missing_images: Vec<MissingImagesReport>,
) -> AuditReport {
    let hub_log_name = bundle.hub_log.clone();
    let mut faults: Vec<String> = bundle.faults.iter().map(ToString::to_string).collect();
    let mut nodes = Vec::new();
    let mut hub_access_log = None;
    for report in bundle.logs {
        let audit = NodeAudit {
            report,
            problems: Vec::new(),
        };
        if hub_log_name.as_deref() == Some(audit.report.device.as_str()) {
            hub_access_log = Some(audit);
        } else {
            nodes.push(audit);
        }
    }
    for row in &listed.nodes {
        let held = nodes.iter_mut().find(|n| n.report.device == row.name);
        match held {
            Some(n) if n.report.size < row.acked => n.problems.push(format!(
                "the hub acknowledged {} entries to the node but its bundle holds {}",
                row.acked, n.report.size
            )),
            Some(_) => {}
            None if row.acked > 0 => faults.push(format!(
                "node {} ({} entries acknowledged) is not in the hub's bundle",
                row.name, row.acked
            )),
            None => {}
        }
    }
    let authentic_nodes = nodes.iter().all(NodeAudit::authentic);
    let reads = nodes.iter().map(|n| n.report.reads).sum();
    let mut verdict = if authentic_nodes {
        format!("all {} node logs authentic: {reads} reads", nodes.len())
    } else {
        let bad: Vec<&str> = nodes
            .iter()
            .filter(|n| !n.authentic())
            .map(|n| n.report.device.as_str())
            .collect();
        format!(
            "NOT AUTHENTIC: {} of {} node logs ({})",
            bad.len(),
            nodes.len(),
            bad.join(", ")
        )
    };
    let hub_log_ok = hub_access_log.as_ref().is_none_or(NodeAudit::authentic);
    if !hub_log_ok {
        let name = hub_log_name.as_deref().unwrap_or("hub");
        verdict = format!("NOT AUTHENTIC: the hub's access log ({name}); {verdict}");
    }
    if !faults.is_empty() {
        verdict = format!(
            "NOT AUTHENTIC: the hub's bundle ({} faults); {verdict}",
            faults.len()
        );
    }
    AuditReport {
        authentic: authentic_nodes && hub_log_ok && faults.is_empty(),
        nodes,
        reads,
        verdict,
        signed_by: bundle.hub,
        signed_at: bundle.signed_at,
        faults,
        missing_images,
        hub_access_log,
    }
}
