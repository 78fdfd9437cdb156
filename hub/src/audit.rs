//! `hub audit verify`: re-verify every node log the running hub holds, and
//! its own access log, from the deployment's CA certificate alone.
//!
//! The command asks the hub (over its HTTPS API, as an auditor logged in
//! with `hub login`, like every command for people) for each node's stored
//! entries, every certificate the node has
//! held, the deployment's revocations and the node's latest signed
//! checkpoint, as one consistent snapshot of a log that may still grow; it
//! trusts none of them. It checks each certificate against the CA (the
//! session's, or `--ca`), then the log with the offline verifier (signatures under
//! a certificate valid at capture and not revoked by then, keys moving
//! only forward, chain from sequence 0, content commitments, purge
//! records, checkpoints), and ends with a one-line verdict. The exit
//! status is 0 only if every log is authentic.
//!
//! Logs are read one node and one page at a time and verified as they
//! arrive, so the command's memory does not grow with the hub's data.
//! `--export` writes what was fetched, as it arrives, into a bundle whose
//! manifest the hub signs (its key never leaves the hub).
//!
//! The hub's own access log is verified the same way, under the hub's
//! certificate (checked against the CA for server authentication), and
//! exported with the node logs so `hub verify` checks it offline.
//!
//! `hub audit access` and `hub audit training` ask the hub for who
//! accessed what, when and why ([`crate::api::audit`]).

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::cert::{KeyPurpose, Revocation, TrustAnchor};
use alpr_shared::log::bundle::{BundleWriter, SignedManifest};
use alpr_shared::log::verify::{LogReport, LogVerifier, NodeKeys, VerifyOptions};
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use alpr_shared::types::{DeviceId, UnixMillis};
use anyhow::Context;
use serde::Serialize;

use crate::api::client::{ApiClient, Session};
use crate::api::nodes::{
    MissingImagesReport, NodeLogPage, NodesReport, SignManifestRequest, SignedManifestReply,
    MAX_LOG_PAGE,
};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-verify every node log the hub holds, and the hub's own access
    /// log, from the CA certificate alone.
    Verify(AuditVerifyArgs),
    /// Who accessed what, when and why (auditors; supervisors: their agency).
    Access(AccessArgs),
    /// Users whose training lapsed, what they did before, and any access
    /// after a lapse (a violation).
    Training(TrainingArgs),
    /// Every evidence export (and refused attempt): who, which case, to
    /// which agency, how many reads (from the access log).
    Exports(crate::export::cli::ExportsArgs),
    /// Purges retention did (node, sequence ranges, when) and reads overdue.
    Retention {
        #[arg(long)]
        json: bool,
    },
    /// Every legal hold: who placed it and when, what it covers, who
    /// released it, when and why.
    Holds {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// From (RFC 3339 UTC or YYYY-MM-DD); the beginning if absent.
    #[arg(long)]
    pub from: Option<String>,
    /// To (RFC 3339 UTC or YYYY-MM-DD); now if absent.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Accesses whose query names this plate.
    #[arg(long)]
    pub plate: Option<String>,
    #[arg(long)]
    pub purpose: Option<String>,
    #[arg(long)]
    pub case: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrainingArgs {
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditVerifyArgs {
    /// The trust anchor; the CA certificate of the session (`hub login
    /// --ca`) when absent.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Also write every node log as fetched (certificates, entries,
    /// checkpoints) to this bundle file, for `hub verify` on another machine.
    #[arg(long)]
    pub export: Option<PathBuf>,
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
    pub missing_images: Vec<MissingImagesReport>,
    /// The hub's own access log, signed with the hub's key (its
    /// certificate checked against the CA).
    pub hub_access_log: Option<NodeAudit>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Access(args) => access(args),
        AuditCommand::Training(args) => training(args),
        AuditCommand::Exports(args) => crate::export::cli::exports(args),
        AuditCommand::Retention { json } => crate::retention::cli::audit(json),
        AuditCommand::Holds { json } => crate::holds::cli::audit(json),
    }
}

fn time_arg(s: Option<&str>) -> anyhow::Result<Option<String>> {
    s.map(|s| {
        crate::users::parse_date(s)
            .map(|t| t.0.to_string())
            .map_err(|e| anyhow::anyhow!(e))
    })
    .transpose()
}

fn access(args: AccessArgs) -> anyhow::Result<ExitCode> {
    use crate::api::audit::AccessAudit;
    use crate::api::client::query;
    let q = query(&[
        ("from", time_arg(args.from.as_deref())?),
        ("to", time_arg(args.to.as_deref())?),
        ("user", args.user),
        ("plate", args.plate),
        ("purpose", args.purpose),
        ("case", args.case),
    ]);
    let a: AccessAudit = crate::cli::api_get(&format!("/api/v1/audit/access{q}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<12} {:<12} {:<10} {:<17} {:<16} {:<12} {:>7} {:<15} {:<40} OUTCOME",
        "TIME", "NODE", "USER", "AGENCY", "ACTION", "PURPOSE", "CASE", "RESULTS", "SOURCE", "QUERY"
    );
    for r in &a.rows {
        println!(
            "{:<24} {:<12} {:<12} {:<10} {:<17} {:<16} {:<12} {:>7} {:<15} {:<40} {}",
            r.time.to_string(),
            r.node,
            r.user,
            r.agency,
            r.action,
            r.purpose.as_deref().unwrap_or("-"),
            r.case.as_deref().unwrap_or("-"),
            r.results,
            r.source,
            r.query,
            r.outcome
        );
    }
    println!(
        "\n{} accesses from {} to {}{}",
        a.rows.len(),
        a.from,
        a.to,
        if a.truncated { " (more not shown)" } else { "" }
    );
    println!(
        "searches without a case number: {}",
        a.searches_without_case.len()
    );
    for r in &a.searches_without_case {
        println!(
            "  {}  {} ({})  purpose {}  {}",
            r.time,
            r.user,
            r.agency,
            r.purpose.as_deref().unwrap_or("-"),
            r.query
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn training(args: TrainingArgs) -> anyhow::Result<ExitCode> {
    use crate::api::audit::TrainingAudit;
    use crate::api::client::query;
    let q = query(&[
        ("from", time_arg(args.from.as_deref())?),
        ("to", time_arg(args.to.as_deref())?),
    ]);
    let a: TrainingAudit = crate::cli::api_get(&format!("/api/v1/audit/training{q}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        if a.users.is_empty() {
            println!("no user's training lapsed in the window or is lapsed now");
        }
        for u in &a.users {
            println!(
                "{} ({}, {}): training expired {}{}; {} accesses before, {} after the lapse",
                u.username,
                u.role,
                u.agency,
                u.training_expires,
                if u.lapsed_now { " (lapsed now)" } else { "" },
                u.before.len(),
                u.after_lapse.len()
            );
            for r in &u.before {
                println!("    {}  {}  {}  {}", r.time, r.action, r.outcome, r.query);
            }
            for r in &u.after_lapse {
                println!(
                    "    VIOLATION: {}  {} on {}  {}",
                    r.time, r.action, r.node, r.query
                );
            }
        }
        println!("violations (accesses after a lapse): {}", a.violations);
    }
    Ok(if a.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let session = Session::load()?;
    let ca_path = args.ca.clone().unwrap_or_else(|| session.ca.clone());
    let ca = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let anchor = TrustAnchor::from_pem(&ca)
        .with_context(|| format!("{} is not a usable CA certificate", ca_path.display()))?;
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let mut client = session.client().await?;
            let mut report = audit_hub(&mut client, &anchor, args.export.as_deref()).await?;
            report.missing_images = fetch_missing_images(&mut client, &report).await?;
            anyhow::Ok(report)
        })?;
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
        if let Some(h) = &report.hub_access_log {
            crate::verify::print_reports("access log", std::slice::from_ref(&h.report));
            for p in &h.problems {
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

type Export = BundleWriter<std::io::BufWriter<std::fs::File>>;

/// Audit every node the hub holds, one node and one page at a time (memory
/// does not grow with the logs), writing the export as pages arrive.
async fn audit_hub(
    client: &mut ApiClient,
    anchor: &TrustAnchor,
    export: Option<&std::path::Path>,
) -> anyhow::Result<AuditReport> {
    let nodes: NodesReport = client.get("/api/v1/nodes").await?;
    let mut out = match export {
        Some(path) => Some(
            start_export(client, path)
                .await
                .with_context(|| format!("writing {}", path.display()))?,
        ),
        None => None,
    };
    let mut revocations_written = false;
    let mut audits = Vec::new();
    let hub_purges = hub_purge_records(client, anchor).await?;
    for n in nodes.nodes {
        let mut from = 0u64;
        let page: NodeLogPage = client
            .get(&format!(
                "/api/v1/nodes/{}/log?from={from}&limit={MAX_LOG_PAGE}",
                n.name
            ))
            .await
            .with_context(|| format!("fetching the log of {}", n.name))?;
        let snapshot = Snapshot::from_page(&page)?;
        if let Some(w) = out.as_mut() {
            if !revocations_written {
                for r in &snapshot.revocations {
                    w.revocation(r)?;
                }
                revocations_written = true;
            }
        }
        // A node that was only ever refused holds no log.
        if snapshot.certificates.is_empty() && snapshot.acked == 0 {
            continue;
        }
        if let Some(w) = out.as_mut() {
            for der in &snapshot.certificates {
                w.certificate(der)?;
            }
            for c in &snapshot.checkpoints {
                w.checkpoint_bytes(c)?;
            }
        }
        let size = snapshot.acked;
        let mut auditor = NodeAuditor::new(anchor, &n.name, snapshot);
        if let Some(v) = auditor.verifier.as_mut() {
            if let Some(ranges) = DeviceId::new(&n.name).ok().and_then(|d| hub_purges.get(&d)) {
                v.hub_purged(ranges);
            }
        }
        let mut page = page;
        loop {
            for e in &page.entries {
                let bytes = hex::decode(e)?;
                if let Some(w) = out.as_mut() {
                    w.entry_bytes(&bytes)?;
                }
                auditor.entry(&bytes);
            }
            match page.next {
                Some(next) if next > from => from = next,
                _ => break,
            }
            page = client
                .get(&format!(
                    "/api/v1/nodes/{}/log?from={from}&limit={MAX_LOG_PAGE}&size={size}",
                    n.name
                ))
                .await
                .with_context(|| format!("fetching the log of {}", n.name))?;
        }
        audits.push(auditor.finish());
    }
    let hub_log = audit_hub_log(client, anchor, out.as_mut()).await?;
    if let Some(w) = out {
        finish_export(client, w)
            .await
            .context("closing the exported bundle")?;
    }
    let mut report = verdict(audits);
    if !hub_log.authentic() {
        report.authentic = false;
        report.verdict = format!(
            "NOT AUTHENTIC: the hub's access log ({}); {}",
            hub_log.report.device, report.verdict
        );
    }
    report.hub_access_log = Some(hub_log);
    Ok(report)
}

/// The ranges of each node's log the hub signed that it purged (its
/// [`alpr_shared::log::EntryKind::NodePurge`] records, each checked
/// against the hub's certificate from the CA): a read purged at the hub is
/// recorded only by these. The hub's log itself is verified in full by
/// [`audit_hub_log`].
async fn hub_purge_records(
    client: &mut ApiClient,
    anchor: &TrustAnchor,
) -> anyhow::Result<std::collections::BTreeMap<DeviceId, Vec<alpr_shared::log::SeqRange>>> {
    use crate::api::audit::{HubLogPage, MAX_PAGE};
    let mut out: std::collections::BTreeMap<DeviceId, Vec<alpr_shared::log::SeqRange>> =
        std::collections::BTreeMap::new();
    let mut from = 0u64;
    loop {
        let page: HubLogPage = client
            .get(&format!(
                "/api/v1/audit/hub-log?from={from}&limit={MAX_PAGE}"
            ))
            .await
            .context("fetching the hub's log")?;
        let der = hex::decode(&page.hub_certificate)?;
        // A refused log certificate is reported by `audit_hub_log`; its
        // records vouch for nothing.
        let Ok(hub) = anchor.check_signer_der(&der, KeyPurpose::Log) else {
            return Ok(out);
        };
        let key = hub.key;
        for e in &page.entries {
            let Ok(e) = SignedEntry::decode(&hex::decode(e)?) else {
                continue;
            };
            if let alpr_shared::log::EntryKind::NodePurge { node, ranges, .. } = &e.header.kind {
                if e.signature_valid(&key) {
                    out.entry(node.clone()).or_default().extend(ranges);
                }
            }
        }
        match page.next {
            Some(next) if next > from && next < page.size => from = next,
            _ => return Ok(out),
        }
    }
}

/// Verify the hub's own access log, page by page, from the CA: the hub's
/// log key's certificate must be issued by it for the log alone, and every
/// entry signed with its key in one chain from entry 0.
async fn audit_hub_log(
    client: &mut ApiClient,
    anchor: &TrustAnchor,
    mut out: Option<&mut Export>,
) -> anyhow::Result<NodeAudit> {
    use crate::api::audit::{HubLogPage, MAX_PAGE};
    let mut page: HubLogPage = client
        .get(&format!("/api/v1/audit/hub-log?from=0&limit={MAX_PAGE}"))
        .await
        .context("fetching the hub's access log")?;
    let der = hex::decode(&page.hub_certificate)?;
    let name = alpr_shared::cert::claimed_name(&der).context("the hub's log certificate")?;
    let size = page.size;
    let mut problems = Vec::new();
    let signer = anchor
        .check_signer_der(&der, KeyPurpose::Log)
        .and_then(|c| c.as_log_signer());
    let mut verifier = match signer {
        Ok(c) => LogVerifier::new(
            name.clone(),
            NodeKeys::single(&c),
            VerifyOptions { from_start: true },
        ),
        Err(e) => {
            problems.push(format!("the hub's log certificate is refused: {e}"));
            let mut v = LogVerifier::new(
                name.clone(),
                NodeKeys::new(Vec::new(), &[]),
                VerifyOptions { from_start: true },
            );
            v.refuse_certificate(e);
            v
        }
    };
    if let Some(w) = out.as_deref_mut() {
        if size > 0 {
            w.certificate(&der)?;
        }
    }
    let mut from = 0u64;
    loop {
        for e in &page.entries {
            let bytes = hex::decode(e)?;
            let entry = SignedEntry::decode(&bytes);
            if entry.as_ref().is_ok_and(|e| e.seq() >= size) {
                break;
            }
            if let Some(w) = out.as_deref_mut() {
                w.entry_bytes(&bytes)?;
            }
            match entry {
                Ok(e) => verifier.entry(&e),
                Err(e) => problems.push(format!("an entry cannot be decoded: {e}")),
            }
        }
        match page.next {
            Some(next) if next > from && next < size => from = next,
            _ => break,
        }
        page = client
            .get(&format!(
                "/api/v1/audit/hub-log?from={from}&limit={MAX_PAGE}"
            ))
            .await
            .context("fetching the hub's access log")?;
    }
    let report = verifier.finish();
    if report.entries < size {
        problems.push(format!(
            "the hub served {} of the {size} entries of its access log",
            report.entries
        ));
    }
    Ok(NodeAudit {
        report,
        checkpoints: Vec::new(),
        problems,
    })
}

/// Open the export and write the hub's export certificate, asked of the
/// hub (it answers with the certificate of the key that signs manifests).
async fn start_export(client: &mut ApiClient, path: &std::path::Path) -> anyhow::Result<Export> {
    let probe = BundleWriter::new(Vec::new())?.manifest(UnixMillis::now());
    let reply: SignedManifestReply = client
        .post(
            "/api/v1/bundle/sign",
            &SignManifestRequest {
                manifest: hex::encode(probe.encode()),
            },
        )
        .await
        .context("asking the hub for its certificate")?;
    let hub_der = hex::decode(&reply.hub_certificate)?;
    // An export holds plates: owner-only, like the database it came from.
    let file = alpr_shared::private::create_private_file(path)?;
    let mut w = BundleWriter::new(std::io::BufWriter::new(file))?;
    w.hub_certificate(&hub_der)?;
    Ok(w)
}

/// Have the hub sign the manifest (its key never leaves it) and close.
async fn finish_export(client: &mut ApiClient, w: Export) -> anyhow::Result<()> {
    let manifest = w.manifest(UnixMillis::now());
    let reply: SignedManifestReply = client
        .post(
            "/api/v1/bundle/sign",
            &SignManifestRequest {
                manifest: hex::encode(manifest.encode()),
            },
        )
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

/// For each audited node, the reads whose images the hub lacks.
async fn fetch_missing_images(
    client: &mut ApiClient,
    report: &AuditReport,
) -> anyhow::Result<Vec<MissingImagesReport>> {
    let mut out = Vec::new();
    for n in &report.nodes {
        let m: MissingImagesReport = client
            .get(&format!("/api/v1/nodes/{}/missing-images", n.report.device))
            .await
            .with_context(|| format!("asking for the missing images of {}", n.report.device))?;
        if m.images > 0 {
            out.push(m);
        }
    }
    Ok(out)
}

/// What the first page of a node's log fixes.
#[derive(Debug, Default)]
struct Snapshot {
    /// Every certificate that vouches for the log (DER), oldest first.
    certificates: Vec<Vec<u8>>,
    revocations: Vec<Revocation>,
    checkpoints: Vec<Vec<u8>>,
    /// The snapshot holds entries `0..acked`.
    acked: u64,
}

impl Snapshot {
    fn from_page(page: &NodeLogPage) -> anyhow::Result<Snapshot> {
        let mut certificates: Vec<Vec<u8>> = page
            .certificates
            .iter()
            .filter(|c| c.effective_from.is_some())
            .map(|c| hex::decode(&c.der))
            .collect::<Result<_, _>>()?;
        if certificates.is_empty() {
            // A hub that keeps only the last certificate.
            certificates.extend(page.certificate.as_deref().map(hex::decode).transpose()?);
        }
        Ok(Snapshot {
            certificates,
            revocations: page.revocations.clone(),
            checkpoints: page
                .checkpoints
                .iter()
                .map(hex::decode)
                .collect::<Result<_, _>>()?,
            acked: page.acked,
        })
    }
}

fn verdict(nodes: Vec<NodeAudit>) -> AuditReport {
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
        hub_access_log: None,
    }
}

/// One node's audit, fed entry by entry.
struct NodeAuditor {
    name: String,
    /// `None` when no certificate of the node is accepted.
    verifier: Option<LogVerifier>,
    refusal: Option<alpr_shared::cert::CertError>,
    acked: u64,
    served: u64,
    checkpoints: Vec<u64>,
    problems: Vec<String>,
}

impl NodeAuditor {
    fn new(anchor: &TrustAnchor, name: &str, snapshot: Snapshot) -> Self {
        let mut problems = Vec::new();
        let mut accepted = Vec::new();
        let mut refusal = None;
        if snapshot.certificates.is_empty() {
            problems.push("the hub holds no certificate for this node".to_owned());
            refusal = Some(alpr_shared::cert::CertError::Malformed(
                "no certificate".into(),
            ));
        }
        for der in &snapshot.certificates {
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
        let mut checkpoints = Vec::new();
        let verifier = accepted.first().map(|c| c.name.clone()).map(|device| {
            let mut v = LogVerifier::new(
                device,
                NodeKeys::new(accepted, &snapshot.revocations),
                VerifyOptions { from_start: true },
            );
            for b in &snapshot.checkpoints {
                match SignedCheckpoint::decode(b) {
                    Ok(c) => {
                        checkpoints.push(c.checkpoint.size);
                        v.checkpoint(&c);
                    }
                    Err(e) => problems.push(format!("stored checkpoint cannot be decoded: {e}")),
                }
            }
            v
        });
        NodeAuditor {
            name: name.to_owned(),
            verifier,
            refusal,
            acked: snapshot.acked,
            served: 0,
            checkpoints,
            problems,
        }
    }

    fn entry(&mut self, bytes: &[u8]) {
        let i = self.served;
        self.served += 1;
        let Some(v) = self.verifier.as_mut() else {
            return;
        };
        match SignedEntry::decode(bytes) {
            Ok(e) => v.entry(&e),
            Err(e) => {
                if self.problems.len() < alpr_shared::log::verify::MAX_FAULTS {
                    self.problems
                        .push(format!("stored entry #{i} cannot be decoded: {e}"));
                }
            }
        }
    }

    fn finish(mut self) -> NodeAudit {
        let Some(v) = self.verifier else {
            let err = self.refusal.unwrap_or(alpr_shared::cert::CertError::NotPem);
            return NodeAudit {
                report: LogReport::refused(&self.name, self.served as usize, &err),
                checkpoints: Vec::new(),
                problems: self.problems,
            };
        };
        let report = v.finish();
        // Entries the node signed as lost were never held, by design.
        let lost: u64 = report.losses.iter().map(|l| l.last + 1 - l.first).sum();
        if self.served + lost != self.acked || report.entries + lost != self.acked {
            self.problems.push(format!(
                "the hub acknowledged {} entries to the node but serves {}",
                self.acked, self.served
            ));
        }
        NodeAudit {
            report,
            checkpoints: self.checkpoints,
            problems: self.problems,
        }
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
    fn renewed_and_revoked(revoke: bool) -> (TrustAnchor, Snapshot, Vec<Vec<u8>>, String) {
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
        let snapshot = Snapshot {
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
        };
        (anchor, snapshot, entries, serial)
    }

    fn audit_node(anchor: &TrustAnchor, snapshot: Snapshot, entries: &[Vec<u8>]) -> NodeAudit {
        let mut a = NodeAuditor::new(anchor, "car-7", snapshot);
        for e in entries {
            a.entry(e);
        }
        a.finish()
    }

    #[test]
    fn a_renewed_node_audits_authentic() {
        let (anchor, snapshot, entries, _) = renewed_and_revoked(false);
        let a = audit_node(&anchor, snapshot, &entries);
        assert!(a.authentic(), "{:?} {:?}", a.report.faults, a.problems);
        assert_eq!(a.report.reads, 6);
    }

    #[test]
    fn the_audit_reports_entries_signed_after_revocation() {
        let (anchor, snapshot, entries, serial) = renewed_and_revoked(true);
        let a = audit_node(&anchor, snapshot, &entries);
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
