//! `hub bench hotlist`: import a generated N-row NCIC extract into a real
//! store (parse, check, build, sign, store durably, publish: `import_s`),
//! then the next day's extract with `--changes` rows replaced (its import
//! time, and the size of the delta edges get: `delta_bytes`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::hotlist::import::Format;
use alpr_shared::hotlist::{sample, Category};
use anyhow::Context;
use serde::Serialize;

use super::{HotlistConfig, HotlistService, ImportRequest, SourceConfig, StrategyName};
use crate::store::redb::RedbStore;
use crate::store::HubStorage;

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
    /// First import: parse + build + sign + durable store + publish.
    pub import_s: f64,
    /// Of which parsing the file.
    pub parse_s: f64,
    /// Second import (the changed file), delta included.
    pub reimport_s: f64,
    pub added: u64,
    pub removed: u64,
    pub delta_bytes: u64,
}

pub async fn run(args: HotlistBenchArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hotlist-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("a temporary folder in {}", base.display()))?;
    let n = args.entries;
    let changes = args.changes;
    eprintln!("generating {n} rows…");
    let (file, next) = tokio::task::spawn_blocking(move || {
        let rows = sample::entries(n, 1);
        let next = sample::change(&rows, changes, 2);
        (sample::ncic(&rows), sample::ncic(&next))
    })
    .await?;
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.path().join("hub.redb"))?);
    let config = HotlistConfig {
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
    let service = HotlistService::open(storage, crate::hotlist::HotlistKeys::throwaway()?, config)?;
    let request = || ImportRequest {
        source: "ncic".into(),
        format: Some(Format::Ncic),
        columns: Default::default(),
        category: None,
        force: false,
        user: "bench".into(),
        excluded: vec![Category::Immigration],
    };
    let parse_file = file.clone();
    let t = Instant::now();
    tokio::task::spawn_blocking(move || {
        alpr_shared::hotlist::import::parse(Format::Ncic, &parse_file, &Default::default())
    })
    .await??;
    let parse_s = t.elapsed().as_secs_f64();
    let file_bytes = file.len();
    eprintln!("importing {file_bytes} bytes…");
    let t = Instant::now();
    let first = service.import(request(), file).await?;
    let import_s = t.elapsed().as_secs_f64();
    eprintln!("importing the changed file…");
    let t = Instant::now();
    let second = service.import(request(), next).await?;
    let reimport_s = t.elapsed().as_secs_f64();
    let report = HotlistBenchReport {
        entries: n,
        changes,
        file_bytes,
        generation_bytes: first.record.bytes,
        import_s,
        parse_s,
        reimport_s,
        added: second.record.added,
        removed: second.record.removed,
        delta_bytes: second.delta_bytes.unwrap_or(0),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("hotlist import, {n} rows ({file_bytes} bytes of NCIC extract)");
        println!(
            "  import_s      {:>10.2}  (parse {:.2} s; target ≤ 10 s)",
            import_s, parse_s
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
