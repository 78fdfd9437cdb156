//! `alpr-bench hub hotlist`: an operator imports a generated N-row NCIC
//! extract through the hub's HTTPS API (`hub serve`'s code in this
//! process; parse, check, build, sign, store durably, publish), timed
//! from the operator's request to the answer (`import_s`); then the next
//! day's extract with `--changes` rows replaced (its import time, and the
//! size of the delta edges get: `delta_bytes`). The hub's own figure for
//! the work inside it (`hub_import_s`, from its answer) is shown beside.

use std::path::PathBuf;
use std::time::Instant;

use alpr_shared::hotlist::import::Format;
use alpr_shared::hotlist::sample;
use anyhow::Context;
use serde::Serialize;

use crate::hub::served::{loopback_config, ServedHub};
use alpr_hub::config::HubConfig;
use alpr_hub::hotlist::{HotlistConfig, ImportReport, SourceConfig, StrategyName};

#[derive(Debug, clap::Args)]
pub struct HotlistBenchArgs {
    /// Rows of the generated list.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Rows replaced in the second file.
    #[arg(long, default_value_t = 5_000)]
    pub changes: usize,
    /// Folder for the database (a temporary folder in it; default: the
    /// current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct HotlistBenchReport {
    pub entries: usize,
    pub changes: usize,
    pub file_bytes: usize,
    pub generation_bytes: u64,
    /// First import, from the operator's request to the API's answer:
    /// upload + parse + build + sign + durable store + publish.
    pub import_s: f64,
    /// The same as the hub timed it inside (from the file received).
    pub hub_import_s: f64,
    /// Of which parsing the file (timed alone, in this process).
    pub parse_s: f64,
    /// Second import (the changed file) from the request, delta included.
    pub reimport_s: f64,
    pub added: u64,
    pub removed: u64,
    pub delta_bytes: u64,
    /// The filesystem of the hub's database.
    pub fs: String,
}

pub async fn run(args: HotlistBenchArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hotlist-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("a temporary folder in {}", base.display()))?;
    let fs = crate::hub::on_disk(
        dir.path(),
        args.allow_tmpfs,
        "the import's durable store would cost nothing",
    )?;
    let n = args.entries;
    let changes = args.changes;
    eprintln!("generating {n} rows…");
    let (file, next) = tokio::task::spawn_blocking(move || {
        let rows = sample::entries(n, 1);
        let next = sample::change(&rows, changes, 2);
        (sample::ncic(&rows), sample::ncic(&next))
    })
    .await?;
    let pki = dir.path().join("pki");
    crate::hub::write_pki(&pki)?;
    let hotlist = HotlistConfig {
        sources: vec![SourceConfig {
            name: "ncic".into(),
            format: Format::Ncic,
            category: None,
            strategy: StrategyName::OcrEquivalent,
            max_substitutions: 1,
            skip: vec!["0".into(), "000".into()],
            alert_level: Default::default(),
            covert: false,
        }],
        ..HotlistConfig::default()
    };
    let config = HubConfig {
        hotlist,
        ..loopback_config(&dir.path().join("hub-data"), &pki)
    };
    let parse_file = file.clone();
    let t = Instant::now();
    tokio::task::spawn_blocking(move || {
        alpr_shared::hotlist::import::parse(Format::Ncic, &parse_file, &Default::default())
    })
    .await??;
    let parse_s = t.elapsed().as_secs_f64();
    let file_bytes = file.len();
    let hub = ServedHub::start(config).await?;
    let imports = async {
        let mut op = hub.operator().await?;
        let path = "/api/v1/hotlists/ncic/import?format=ncic";
        eprintln!("importing {file_bytes} bytes through the API…");
        let t = Instant::now();
        let first: ImportReport = op.post_bytes(path, file).await?;
        let import_s = t.elapsed().as_secs_f64();
        eprintln!("importing the changed file…");
        let t = Instant::now();
        let second: ImportReport = op.post_bytes(path, next).await?;
        let reimport_s = t.elapsed().as_secs_f64();
        anyhow::Ok((first, import_s, second, reimport_s))
    }
    .await;
    let stopped = hub.stop().await;
    let (first, import_s, second, reimport_s) = imports?;
    stopped?;
    let report = HotlistBenchReport {
        entries: n,
        changes,
        file_bytes,
        generation_bytes: first.record.bytes,
        import_s,
        hub_import_s: first.took_ms as f64 / 1e3,
        parse_s,
        reimport_s,
        added: second.record.added,
        removed: second.record.removed,
        delta_bytes: second.delta_bytes.unwrap_or(0),
        fs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "hotlist import, {n} rows ({file_bytes} bytes of NCIC extract), through the API; \
             the database on {}",
            report.fs
        );
        println!(
            "  import_s      {:>10.2}  (from the operator's request; the hub's own {:.2} s; \
             parse alone {:.2} s; target ≤ 10 s)",
            import_s, report.hub_import_s, parse_s
        );
        println!("  generation    {:>10} bytes", report.generation_bytes);
        println!(
            "  reimport_s    {:>10.2}  ({changes} rows replaced: +{} -{})",
            reimport_s, report.added, report.removed
        );
        println!(
            "  delta_bytes   {:>10}  (target ≤ 100 KB)",
            report.delta_bytes
        );
    }
    Ok(())
}
