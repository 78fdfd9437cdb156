//! `hub audit verify`: re-verify every node log the running hub holds, from
//! the deployment's CA certificate alone.
//!
//! The command asks the hub (over its admin API, like every operator
//! command) for each node's stored entries, every certificate the node has
//! held, the deployment's revocations and the node's latest signed
//! checkpoint, as one consistent snapshot of a log that may still grow; it
//! trusts none of them. It checks each certificate against the CA in the
//! configuration, then the log with the offline verifier (signatures under
//! a certificate valid at capture and not revoked by then, keys moving
//! only forward, chain from sequence 0, content commitments, purge
//! records, checkpoints), and ends with a one-line verdict. The exit
//! status is 0 only if every log is authentic.
//!
//! `--export` writes what was fetched as a bundle whose manifest the hub
//! signs (its key never leaves the hub).

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::{Revocation, TrustAnchor};
use alpr_shared::log::verify::{verify_node_log, LogReport, NodeKeys, VerifyOptions};
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use anyhow::Context;
use serde::Serialize;

use crate::cli::load_config;
use crate::sync::admin::{
    AdminClient, AdminRequest, NodeLogPage, NodesReport, SignedManifestReply, MAX_LOG_PAGE,
};

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
    /// Every certificate the node has held that vouches for its log
    /// (DER), oldest first.
    certificates: Vec<Vec<u8>>,
    revocations: Vec<Revocation>,
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
        .block_on(async {
            let client = AdminClient::connect(&config).await?;
            let result = async {
                let logs = fetch_all(&client).await?;
                if let Some(path) = &args.export {
                    export(&client, path, &logs)
                        .await
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                anyhow::Ok(logs)
            }
            .await;
            client.close().await;
            result
        })?;
    let report = audit(&anchor, logs);
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
        println!("{}", report.verdict);
    }
    Ok(if report.authentic {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Write the logs exactly as the hub served them into a bundle, and have
/// the hub sign its manifest.
async fn export(
    client: &AdminClient,
    path: &std::path::Path,
    logs: &[(String, FetchedLog)],
) -> anyhow::Result<()> {
    use alpr_shared::log::bundle::{BundleWriter, SignedManifest};
    // The hub's certificate comes first: ask the hub to sign an empty
    // manifest to learn which certificate its key belongs to.
    let probe = BundleWriter::new(Vec::new())?.manifest(alpr_shared::types::UnixMillis::now());
    let reply: SignedManifestReply = client
        .call(&AdminRequest::SignManifest {
            manifest: hex::encode(probe.encode()),
        })
        .await
        .context("asking the hub for its certificate")?;
    let hub_der = hex::decode(&reply.hub_certificate)?;

    let file = std::fs::File::create(path)?;
    let mut w = BundleWriter::new(std::io::BufWriter::new(file))?;
    w.hub_certificate(&hub_der)?;
    if let Some((_, first)) = logs.first() {
        for r in &first.revocations {
            w.revocation(r)?;
        }
    }
    for (_, log) in logs {
        for der in &log.certificates {
            w.certificate(der)?;
        }
        for c in &log.checkpoints {
            w.checkpoint_bytes(c)?;
        }
        for e in &log.entries {
            w.entry_bytes(e)?;
        }
    }
    let manifest = w.manifest(alpr_shared::types::UnixMillis::now());
    let reply: SignedManifestReply = client
        .call(&AdminRequest::SignManifest {
            manifest: hex::encode(manifest.encode()),
        })
        .await
        .context("asking the hub to sign the bundle's manifest")?;
    let signed = SignedManifest::decode(&hex::decode(&reply.signed)?)
        .context("the hub's signed manifest")?;
    anyhow::ensure!(
        signed.manifest == manifest,
        "the hub signed a different manifest"
    );
    w.finish(&signed)?;
    Ok(())
}

/// Every node's log, page by page, each as one snapshot.
async fn fetch_all(client: &AdminClient) -> anyhow::Result<Vec<(String, FetchedLog)>> {
    let nodes: NodesReport = client.call(&AdminRequest::Nodes).await?;
    let mut out = Vec::new();
    for n in nodes.nodes {
        let mut log = FetchedLog::default();
        let mut from = 0u64;
        let mut size = None;
        loop {
            let page: NodeLogPage = client
                .call(&AdminRequest::NodeLog {
                    node: n.name.clone(),
                    from,
                    limit: MAX_LOG_PAGE,
                    size,
                })
                .await
                .with_context(|| format!("fetching the log of {}", n.name))?;
            if size.is_none() {
                size = Some(page.acked);
                log.certificates = page
                    .certificates
                    .iter()
                    .filter(|c| c.effective_from.is_some())
                    .map(|c| hex::decode(&c.der))
                    .collect::<Result<_, _>>()?;
                if log.certificates.is_empty() {
                    // A hub that keeps only the last certificate.
                    log.certificates = page
                        .certificate
                        .as_deref()
                        .map(hex::decode)
                        .transpose()?
                        .into_iter()
                        .collect();
                }
                log.revocations = page.revocations.clone();
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
    Ok(out)
}

fn audit(anchor: &TrustAnchor, logs: Vec<(String, FetchedLog)>) -> AuditReport {
    let mut nodes = Vec::new();
    for (name, log) in logs {
        // A node that was only ever refused holds no log.
        if log.certificates.is_empty() && log.entries.is_empty() {
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
    }
}

fn audit_node(anchor: &TrustAnchor, name: &str, log: FetchedLog) -> NodeAudit {
    let mut problems = Vec::new();
    if log.certificates.is_empty() {
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
    }
    let mut accepted = Vec::new();
    let mut refusal = None;
    for der in &log.certificates {
        match anchor.check_device_der(der) {
            Ok(c) if c.name.as_str() == name => accepted.push(c),
            Ok(c) => problems.push(format!(
                "the hub files this log under {name} but certificate {} names {}",
                c.serial, c.name
            )),
            Err(e) => {
                problems.push(format!("a certificate of this node is refused: {e}"));
                refusal.get_or_insert(e);
            }
        }
    }
    if accepted.is_empty() {
        let err = refusal.unwrap_or(alpr_shared::cert::CertError::NotPem);
        return NodeAudit {
            report: LogReport::refused(name, log.entries.len(), &err),
            checkpoints: Vec::new(),
            problems: Vec::new(),
        };
    }
    let device = accepted[0].name.clone();
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
    let report = verify_node_log(
        device,
        NodeKeys::new(accepted, &log.revocations),
        &entries,
        &checkpoints,
        VerifyOptions { from_start: true },
    );
    if report.entries != log.acked {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::log::{Fault, LogWriter};
    use alpr_shared::pki::{new_ca, Authority};
    use alpr_shared::types::{
        DeviceId, DeviceKind, Hash32, Location, ReadContent, TimeSource, UnixMillis,
    };

    fn read(w: &mut LogWriter, at: u64) -> Vec<u8> {
        w.append_read(
            ReadContent {
                location: Location::Site {
                    site_id: "s".into(),
                },
                camera: "c".into(),
                plate: "7ABC123".into(),
                confidence: 9_000,
                char_confidence: vec![9_000; 7],
                region: None,
                detector_model: "d".into(),
                ocr_model: "o".into(),
                crop_hash: Hash32::ZERO,
                overview_hash: Hash32::ZERO,
            },
            UnixMillis(at),
            TimeSource::Ntp,
        )
        .expect("append")
        .encode()
    }

    /// A node renewed after 3 entries (new key), whose second certificate
    /// is revoked from the 5th entry's capture time on.
    fn renewed_and_revoked(revoke: bool) -> (TrustAnchor, FetchedLog, String) {
        let ca = new_ca("Test PD", 30).expect("ca");
        let authority = Authority::load(&ca.cert_pem, &ca.key_pem).expect("ca");
        let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
        let name = DeviceId::new("car-7").expect("name");
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let (issued, key) = authority
                .issue_device(&name, DeviceKind::Vehicle, 30)
                .expect("issue");
            certs.push(
                anchor
                    .check_device_pem(issued.cert_pem.as_bytes())
                    .expect("cert"),
            );
            keys.push(key);
        }
        let t0 = UnixMillis::now().0 - 60_000;
        let mut entries = Vec::new();
        let mut w = LogWriter::new(keys.remove(0), name.clone());
        for i in 0..3 {
            entries.push(read(&mut w, t0 + i));
        }
        let mut w = LogWriter::resume(keys.remove(0), name.clone(), 3, w.head());
        for i in 3..6 {
            entries.push(read(&mut w, t0 + i));
        }
        let serial = certs[1].serial.clone();
        let log = FetchedLog {
            certificates: certs.iter().map(|c| c.der.clone()).collect(),
            revocations: if revoke {
                vec![Revocation {
                    serial: serial.clone(),
                    effective_at: UnixMillis(t0 + 4),
                    reason: "stolen".into(),
                }]
            } else {
                Vec::new()
            },
            checkpoints: vec![w.checkpoint(UnixMillis::now()).encode()],
            acked: 6,
            entries,
        };
        (anchor, log, serial)
    }

    #[test]
    fn a_renewed_node_audits_authentic() {
        let (anchor, log, _) = renewed_and_revoked(false);
        let a = audit_node(&anchor, "car-7", log);
        assert!(a.authentic(), "{:?} {:?}", a.report.faults, a.problems);
        assert_eq!(a.report.reads, 6);
    }

    #[test]
    fn the_audit_reports_entries_signed_after_revocation() {
        let (anchor, log, serial) = renewed_and_revoked(true);
        let a = audit_node(&anchor, "car-7", log);
        assert!(!a.authentic());
        assert_eq!(
            a.report.faults,
            vec![
                Fault::SignedAfterRevocation {
                    seq: 4,
                    serial: serial.clone()
                },
                Fault::SignedAfterRevocation { seq: 5, serial }
            ]
        );
    }
}
