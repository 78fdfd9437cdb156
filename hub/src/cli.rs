//! The hub's sync-related subcommands: `serve`, `nodes`, `bench ingest`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::sync::admin::{self, AdminRequest};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without it, `hub.toml` if present, else defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// The running hub's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The running hub's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// Serial number of the node certificate (hex, as `hub pki enroll` prints it).
    pub serial: String,
    /// When revocation takes effect (RFC 3339 UTC, e.g. 2026-11-28T16:00:00Z); now if absent.
    #[arg(long)]
    pub at: Option<String>,
    /// Why (kept with the revocation and shown to auditors).
    #[arg(long, default_value = "revoked by the operator")]
    pub reason: String,
    /// The running hub's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Verified, durably stored reads per second from many edges.
    Ingest(crate::bench::IngestArgs),
    /// Searches over a store of N signed reads, each after its durable
    /// access record: exact, wildcard, OCR-tolerant, canvass.
    Search(crate::search::bench::SearchBenchArgs),
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<HubConfig> {
    match path {
        Some(p) => HubConfig::load(p),
        None if Path::new("hub.toml").exists() => HubConfig::load(Path::new("hub.toml")),
        None => Ok(HubConfig::default()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    runtime()?.block_on(async move {
        let cancel = CancellationToken::new();
        alpr_shared::cli::cancel_on_signals(cancel.clone());
        crate::sync::serve(config, cancel, None).await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let report = runtime()?.block_on(admin::request(&config, &AdminRequest::Nodes))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<9} {:<24} {:>10} {:>8} {:>8} {:>8}",
        "NODE", "LINK", "LAST CONTACT", "ACKED", "BACKLOG", "REFUSED", "REPLAYS"
    );
    for n in &report.nodes {
        println!(
            "{:<20} {:<9} {:<24} {:>10} {:>8} {:>8} {:>8}",
            n.name,
            if n.connected { "online" } else { "offline" },
            n.last_contact.to_string(),
            n.acked,
            n.backlog
                .map_or_else(|| "unknown".to_string(), |b| b.to_string()),
            n.refusals,
            n.duplicates
        );
        if let Some(c) = &n.identity_conflict {
            println!(
                "  ! IDENTITY CONFLICT ({} recorded; a person must resolve it): {}  {}",
                n.identity_conflicts, c.at, c.detail
            );
        } else if n.identity_conflicts > 0 {
            println!(
                "  {} identity conflict(s) recorded earlier",
                n.identity_conflicts
            );
        }
    }
    println!(
        "\n{} entries stored since start; {} refusals ({} at the TLS handshake)",
        report.entries_stored, report.refusals, report.refused_handshakes
    );
    if let Some(b) = report.disk_free {
        println!("disk free: {} MiB", b / (1 << 20));
    }
    for p in &report.problems {
        println!("PROBLEM: {p}");
    }
    if !report.refusals_by_kind.is_empty() {
        let kinds: Vec<String> = report
            .refusals_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("refusals by kind: {}", kinds.join(", "));
    }
    if !report.recent_refusals.is_empty() {
        println!("\nrecent refusals:");
        for r in &report.recent_refusals {
            println!(
                "  {}  {:<16} {:<22} {:<14} {}",
                r.at,
                r.device.as_deref().unwrap_or("?"),
                r.peer,
                r.code,
                r.detail
            );
        }
    }
    if !report.unauthenticated_refusals.is_empty() {
        println!("\nunauthenticated sources (one line per source per minute at most):");
        for r in &report.unauthenticated_refusals {
            println!(
                "  {}  {:<22} {:>6}x {:<18} {}",
                r.at, r.source, r.count, r.code, r.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For a service manager: exit 0 when the hub answers and is healthy, 1
/// with the reason otherwise.
pub fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    match runtime()?.block_on(admin::request(&config, &AdminRequest::Nodes)) {
        Err(e) => {
            println!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Ok(r) if r.problems.is_empty() => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            println!("unhealthy: {}", r.problems.join("; "));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Revoke a certificate on the running hub: recorded, in force at once
/// (or from `--at`), and the node's live connection closed.
pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let at = args
        .at
        .as_deref()
        .map(crate::config::parse_time)
        .transpose()?;
    let req = AdminRequest::Revoke {
        serial: args.serial,
        at,
        reason: args.reason,
    };
    let report: admin::RevokeReport = runtime()?.block_on(async {
        let client = admin::AdminClient::connect(&config).await?;
        let r = client.call(&req).await;
        client.close().await;
        r
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "revoked {} from {} ({}); connections closed: {}",
            report.revocation.serial,
            report.revocation.effective_at,
            report.revocation.reason,
            if report.closed.is_empty() {
                "none".to_string()
            } else {
                report.closed.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bench(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Ingest(a) => runtime()?.block_on(crate::bench::ingest(a))?,
        BenchCommand::Search(a) => runtime()?.block_on(crate::search::bench::run(a))?,
    }
    Ok(ExitCode::SUCCESS)
}
