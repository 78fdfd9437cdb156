//! `hub audit verify`: re-verify every node log the running hub holds, from
//! the deployment's CA certificate alone.
//!
//! The command asks the hub (over its admin API, like every operator
//! command) for each node's stored entries, the certificate the node
//! connected with and its latest signed checkpoint; it trusts none of them.
//! It checks the certificate against the CA in the configuration, then the
//! log with the offline verifier (signatures, chain from sequence 0,
//! content commitments, purge records, capture times within the
//! certificate, checkpoints), and ends with a one-line verdict. The exit
//! status is 0 only if every log is authentic.

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::log::verify::{verify_log, LogReport, VerifyOptions};
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use anyhow::Context;
use serde::Serialize;

use crate::cli::load_config;
use crate::sync::admin::{AdminClient, AdminRequest, NodeLogPage, NodesReport, MAX_LOG_PAGE};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-verify every node log the hub holds, from the CA certificate alone.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The running hub's configuration file (its `ca_cert` is the trust anchor).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Also write every node log as fetched (certificates, entries,
    /// checkpoints) to this bundle file, for `hub verify` on another machine.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// One node's log as fetched from the hub.
#[derive(Debug, Default)]
struct FetchedLog {
    certificate: Option<Vec<u8>>,
    checkpoints: Vec<Vec<u8>>,
    acked: u64,
    entries: Vec<Vec<u8>>,
}

/// What the audit found for one node.
#[derive(Debug, Serialize)]
pub struct NodeAudit {
    #[serde(flatten)]
    pub report: LogReport,
    /// Sizes of the checkpoints the node signed, checked against the log.
    pub checkpoints: Vec<u64>,
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
    /// Reads whose images the hub is missing, per node that has any (the
    /// log can be authentic and still incomplete: a restore from a backup).
    pub missing_images: Vec<crate::sync::admin::MissingImagesReport>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).with_context(|| {
        format!(
            "{} is not a usable CA certificate",
            config.ca_cert.display()
        )
    })?;
    let logs = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fetch_all(&config))?;
    if let Some(path) = &args.export {
        export(path, &logs).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut report = audit(&anchor, logs);
    report.missing_images = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fetch_missing_images(&config, &report))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for n in &report.nodes {
            crate::verify::print_reports("hub", std::slice::from_ref(&n.report));
            for size in &n.checkpoints {
                println!("    checked against the checkpoint the node signed at size {size}");
            }
            for p in &n.problems {
                println!("    - {p}");
            }
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
        println!("{}", report.verdict);
    }
    Ok(if report.authentic {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Write the logs exactly as the hub served them into a bundle.
fn export(path: &std::path::Path, logs: &[(String, FetchedLog)]) -> anyhow::Result<()> {
    use alpr_shared::log::bundle::BundleWriter;
    let file = std::fs::File::create(path)?;
    let mut w = BundleWriter::new(std::io::BufWriter::new(file))?;
    for (_, log) in logs {
        if let Some(der) = &log.certificate {
            w.certificate(der)?;
        }
        for e in &log.entries {
            w.entry_bytes(e)?;
        }
        for c in &log.checkpoints {
            w.checkpoint_bytes(c)?;
        }
    }
    w.finish()?;
    Ok(())
}

/// For each audited node, the reads whose images the hub lacks.
async fn fetch_missing_images(
    config: &crate::config::HubConfig,
    report: &AuditReport,
) -> anyhow::Result<Vec<crate::sync::admin::MissingImagesReport>> {
    let client = AdminClient::connect(config).await?;
    let result = async {
        let mut out = Vec::new();
        for n in &report.nodes {
            let m: crate::sync::admin::MissingImagesReport = client
                .call(&AdminRequest::MissingImages {
                    node: n.report.device.clone(),
                })
                .await
                .with_context(|| format!("asking for the missing images of {}", n.report.device))?;
            if m.images > 0 {
                out.push(m);
            }
        }
        anyhow::Ok(out)
    }
    .await;
    client.close().await;
    result
}

/// Every node's log, page by page, over one admin connection.
async fn fetch_all(config: &crate::config::HubConfig) -> anyhow::Result<Vec<(String, FetchedLog)>> {
    let client = AdminClient::connect(config).await?;
    let result = async {
        let nodes: NodesReport = client.call(&AdminRequest::Nodes).await?;
        let mut out = Vec::new();
        for n in nodes.nodes {
            let mut log = FetchedLog::default();
            let mut from = 0u64;
            loop {
                let page: NodeLogPage = client
                    .call(&AdminRequest::NodeLog {
                        node: n.name.clone(),
                        from,
                        limit: MAX_LOG_PAGE,
                    })
                    .await
                    .with_context(|| format!("fetching the log of {}", n.name))?;
                if from == 0 {
                    log.certificate = page.certificate.as_deref().map(hex::decode).transpose()?;
                    log.checkpoints = page
                        .checkpoints
                        .iter()
                        .map(hex::decode)
                        .collect::<Result<_, _>>()?;
                    log.acked = page.acked;
                }
                for e in &page.entries {
                    log.entries.push(hex::decode(e)?);
                }
                match page.next {
                    Some(next) if next > from => from = next,
                    _ => break,
                }
            }
            out.push((n.name, log));
        }
        anyhow::Ok(out)
    }
    .await;
    client.close().await;
    result
}

fn audit(anchor: &TrustAnchor, logs: Vec<(String, FetchedLog)>) -> AuditReport {
    let mut nodes = Vec::new();
    for (name, log) in logs {
        // A node that was only ever refused holds no log.
        if log.certificate.is_none() && log.entries.is_empty() {
            continue;
        }
        nodes.push(audit_node(anchor, &name, log));
    }
    let authentic = nodes.iter().all(NodeAudit::authentic);
    let reads = nodes.iter().map(|n| n.report.reads).sum();
    let verdict = if authentic {
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
    AuditReport {
        nodes,
        authentic,
        reads,
        verdict,
        missing_images: Vec::new(),
    }
}

fn audit_node(anchor: &TrustAnchor, name: &str, log: FetchedLog) -> NodeAudit {
    let mut problems = Vec::new();
    let Some(der) = &log.certificate else {
        problems.push("the hub holds no certificate for this node".to_owned());
        return NodeAudit {
            report: LogReport::refused(
                name,
                log.entries.len(),
                &alpr_shared::cert::CertError::Malformed("no certificate".into()),
            ),
            checkpoints: Vec::new(),
            problems,
        };
    };
    let cert = match anchor.check_device_der(der) {
        Ok(c) => c,
        Err(e) => {
            return NodeAudit {
                report: LogReport::refused(name, log.entries.len(), &e),
                checkpoints: Vec::new(),
                problems,
            }
        }
    };
    if cert.name.as_str() != name {
        problems.push(format!(
            "the hub files this log under {name} but the certificate names {}",
            cert.name
        ));
    }
    let mut entries = Vec::with_capacity(log.entries.len());
    for (i, b) in log.entries.iter().enumerate() {
        match SignedEntry::decode(b) {
            Ok(e) => entries.push(e),
            Err(e) => problems.push(format!("stored entry #{i} cannot be decoded: {e}")),
        }
    }
    let mut checkpoints: Vec<SignedCheckpoint> = Vec::new();
    for b in &log.checkpoints {
        match SignedCheckpoint::decode(b) {
            Ok(c) => checkpoints.push(c),
            Err(e) => problems.push(format!("stored checkpoint cannot be decoded: {e}")),
        }
    }
    let report = verify_log(
        &cert,
        &entries,
        &checkpoints,
        VerifyOptions { from_start: true },
    );
    // Entries the node signed as lost were never held, by design.
    let lost: u64 = report.losses.iter().map(|l| l.last + 1 - l.first).sum();
    if report.entries + lost != log.acked {
        problems.push(format!(
            "the hub acknowledged {} entries to the node but serves {}",
            log.acked, report.entries
        ));
    }
    NodeAudit {
        report,
        checkpoints: checkpoints.iter().map(|c| c.checkpoint.size).collect(),
        problems,
    }
}
