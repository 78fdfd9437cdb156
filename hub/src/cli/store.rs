//! The operator tools that open the hub's store themselves, without a
//! login: `hub migrate` and `hub store check`. They run on the hub's
//! machine as the hub's user — they read its configuration, its key and
//! its data folder or database credentials, which only the hub's
//! operators hold — and no person's command needs them. Every run is
//! sealed into the hub's own access log before the tool reads the store
//! (`store-tool`: the machine's account that ran it, what it did), in the
//! same signed chain as the hub's other accesses ([`crate::access`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use anyhow::Context;

use crate::api::client::runtime;
use crate::config::load_config;
use crate::config::HubConfig;
use crate::store::HubStorage;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The hub's configuration file (its `[store]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Verify every node's chain and the hub's access log as the store
    /// holds them, and that each node's record agrees with its chain.
    /// Exit 0 when all is consistent, 1 otherwise.
    Check {
        /// The hub's configuration file (its `[store]`, CA and certificate).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Who ran a tool: the machine's account (there is no login).
fn account() -> String {
    let name = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    printable(&name)
}

/// Where it ran: this machine.
fn machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    printable(&format!("hub machine {host}"))
}

/// At most 64 bytes, no control characters (an access record's bound).
fn printable(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    alpr_shared::log::access::cut(&mut out, 64);
    out
}

/// Seal the run of a tool into the hub's access log on `storage`; only
/// then may the tool read the store.
fn record_run(
    config: &HubConfig,
    storage: Arc<dyn HubStorage>,
    purpose: &str,
    query: String,
    results: u64,
) -> anyhow::Result<()> {
    let mut query = query;
    alpr_shared::log::access::cut(&mut query, alpr_shared::log::access::MAX_QUERY_LEN);
    let record = AccessRecord {
        user: account(),
        agency: String::new(),
        action: AccessAction::StoreTool,
        purpose: Some(purpose.into()),
        case: None,
        query,
        results: u32::try_from(results).unwrap_or(u32::MAX),
        outcome: AccessOutcome::Allowed,
        source: machine(),
    };
    runtime()?
        .block_on(async {
            let log = config.start_access_log(storage)?;
            log.record(record).await?;
            anyhow::Ok(())
        })
        .context("recording this run in the hub's access log (nothing was read)")
}

/// `hub migrate`: bring the store's schema to this binary's version.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let (storage, done) = match config.store.backend {
        crate::config::StoreBackend::Redb => {
            // The embedded store upgrades its tables when opened.
            let (storage, _) = config.open_storage()?;
            let done = format!(
                "redb store {}: up to date (it upgrades itself when opened)",
                config.db_path().display()
            );
            println!("{done}");
            (storage, done)
        }
        crate::config::StoreBackend::Postgres => {
            let m = crate::store::postgres::migrate(&config.postgres()?)?;
            for (version, name) in &m.applied {
                println!("applied migration {version}: {name}");
            }
            let done = if m.applied.is_empty() {
                format!("schema version {}: up to date", m.to)
            } else {
                format!("schema version {} → {}", m.from, m.to)
            };
            println!("{done}");
            let (storage, _) = config.open_storage()?;
            (storage, done)
        }
    };
    record_run(
        &config,
        storage,
        "store-migrate",
        format!("hub migrate: {done}"),
        0,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `hub store …`.
pub fn store(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Check { config, json } = cmd;
    let config = load_config(config.as_deref())?;
    let anchor = config.anchor()?;
    let log_cert = config.log_certificate()?;
    let (storage, _) = config.open_storage()?;
    // Every read and access entry is about to be read: sealed first.
    let entries = storage
        .nodes()?
        .iter()
        .map(|(_, r)| r.next_seq)
        .sum::<u64>()
        .saturating_add(storage.hub_access_head()?.0);
    record_run(
        &config,
        storage.clone(),
        "store-check",
        "hub store check: every node log and the hub access log".into(),
        entries,
    )?;
    let report = crate::store::check::check(&*storage, &anchor, &log_cert)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:<28} {:>10} {:>10}  VERDICT", "CHAIN", "ENTRIES", "NEXT");
        for c in &report.chains {
            let verdict = if c.ok() { "consistent" } else { "PROBLEMS" };
            println!(
                "{:<28} {:>10} {:>10}  {verdict}",
                c.chain, c.entries, c.next_seq
            );
            for p in &c.problems {
                println!("    {p}");
            }
        }
        let bad = report.chains.iter().filter(|c| !c.ok()).count();
        println!(
            "{} chains checked: {}",
            report.chains.len(),
            if bad == 0 {
                "all consistent".to_owned()
            } else {
                format!("{bad} with problems")
            }
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
