//! `hub hotlist import|list|show|generations`: bulk hotlists through the
//! hub's API, as the logged-in user (imports: operators and supervisors);
//! `hub hotlist add|edit|remove` and `list --local`: local entries
//! ([`crate::cli::hotlist_local`]).

use std::path::PathBuf;
use std::process::ExitCode;

use alpr_shared::hotlist::import::Format;
use alpr_shared::hotlist::{Category, HotEntry};
use alpr_shared::types::UnixMillis;
use anyhow::Context;

use crate::api::client::{api_get, runtime};
use crate::api::client::{query, Session};
use crate::api::hotlists::SourceDetail;
use crate::hotlist::{GenerationView, ImportReport, SourceView};

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum HotlistCommand {
    /// Import a list file as the next generation of a source: parsed,
    /// checked, signed and pushed to every edge.
    Import(ImportArgs),
    /// The sources: latest generation, its age, rows, categories (with
    /// --local: the local entries).
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// The local entries instead of the bulk lists.
        #[arg(long)]
        local: bool,
        /// With --local: removed and expired entries too.
        #[arg(long, requires = "local")]
        all: bool,
    },
    /// Local entries: add, edit, remove.
    #[command(flatten)]
    Local(crate::cli::hotlist_local::LocalCommand),
    /// One source; with PLATE, the rows its latest generation lists for it.
    Show {
        source: String,
        plate: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every generation of a source: when, by whom, rows, changes.
    Generations {
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a realistic generated list file (seeded) for tests and demos,
    /// with given plates in it. Works on files only (no login).
    Sample(SampleArgs),
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Where to write it.
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Ncic)]
    pub format: Format,
    /// Generated rows (besides the planted ones).
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A plate to list: `PLATE[:STATE[:CATEGORY]]` (state CA, category
    /// stolen-vehicle when absent). Repeatable.
    #[arg(long)]
    pub plant: Vec<String>,
    /// Replace this many generated rows, as the next day's extract would
    /// (the same --seed gives the day before).
    #[arg(long, default_value_t = 0)]
    pub changes: usize,
}

/// `PLATE[:STATE[:CATEGORY]]`.
fn planted(spec: &str, seed: u64) -> anyhow::Result<HotEntry> {
    let mut parts = spec.split(':');
    let plate = parts.next().unwrap_or_default();
    anyhow::ensure!(
        !alpr_shared::hotlist::import::normalise_plate(plate).is_empty(),
        "--plant {spec:?}: no plate"
    );
    let state = parts.next().filter(|s| !s.is_empty()).unwrap_or("CA");
    anyhow::ensure!(
        state.len() == 2 && state.bytes().all(|b| b.is_ascii_alphabetic()),
        "--plant {spec:?}: the state is two letters"
    );
    let category = match parts.next() {
        Some(c) => Category::from_name(c)
            .with_context(|| format!("--plant {spec:?}: no category {c:?}"))?,
        None => Category::StolenVehicle,
    };
    Ok(alpr_shared::hotlist::sample::planted(
        plate, state, category, seed,
    ))
}

fn sample_file(a: &SampleArgs) -> anyhow::Result<()> {
    use alpr_shared::hotlist::sample;
    let mut rows = sample::entries(a.rows, a.seed);
    if a.format == Format::CaDoj {
        rows.retain(|e| e.plate.len() <= 8);
    }
    if a.changes > 0 {
        rows = sample::change(&rows, a.changes, a.seed.wrapping_add(1));
    }
    let plants = a
        .plant
        .iter()
        .enumerate()
        .map(|(i, p)| planted(p, a.seed.wrapping_add(100 + i as u64)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    sample::plant(&mut rows, plants, a.seed);
    let bytes = match a.format {
        Format::Ncic => sample::ncic(&rows),
        Format::Csv => sample::csv(&rows),
        Format::CaDoj => sample::ca_doj(&rows, "11/27/2026 23:05"),
    };
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{} rows ({}) written to {}",
        rows.len(),
        a.format,
        a.out.display()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The list file.
    pub file: PathBuf,
    /// The source it is a generation of (`[[hotlist.sources]]` in hub.toml).
    #[arg(long)]
    pub source: String,
    /// Its format (the source's when absent).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// CSV headers to NCIC field codes: `PLATE=LIC,ST=LIS`.
    #[arg(long)]
    pub columns: Option<String>,
    /// Category of every row of a ca-doj file (`stolen-vehicle`, …); from
    /// the file name (svs, slr, sfr) or the source when absent.
    #[arg(long)]
    pub category: Option<String>,
    /// Take a file whose footer count is wrong, or that changes more of the
    /// list than hub.toml allows.
    #[arg(long)]
    pub force: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The category a California DOJ file's name says (`…svs…` stolen
/// vehicles, `…slr…` stolen plates, `…sfr…` felonies).
pub fn category_of_file(name: &str) -> Option<Category> {
    let n = name.to_ascii_lowercase();
    if n.contains("svs") {
        Some(Category::StolenVehicle)
    } else if n.contains("slr") {
        Some(Category::StolenPlate)
    } else if n.contains("sfr") {
        Some(Category::Felony)
    } else {
        None
    }
}

fn age(at: UnixMillis) -> String {
    let ms = UnixMillis::now().0.saturating_sub(at.0);
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    }
}

fn categories(c: &[(Category, u64)]) -> String {
    if c.is_empty() {
        return "-".into();
    }
    c.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a person reads after an import.
pub fn render_import(r: &ImportReport) -> String {
    let rec = &r.record;
    let i = &rec.info;
    let mut out = format!(
        "{} generation {} ({}): {} rows listed of {} in the file; {} bad, {} excluded\n",
        i.source,
        i.number,
        rec.format,
        i.rows,
        i.source_rows,
        rec.bad_rows,
        rec.excluded.iter().map(|(_, n)| n).sum::<u64>()
    );
    if !rec.excluded.is_empty() {
        out.push_str(&format!(
            "  excluded by policy: {}\n",
            categories(&rec.excluded)
        ));
    }
    out.push_str(&format!(
        "  changes: +{} -{}{}\n",
        rec.added,
        rec.removed,
        r.delta_bytes
            .map(|d| format!(" (delta {d} bytes)"))
            .unwrap_or_default()
    ));
    out.push_str(&format!("  categories: {}\n", categories(&i.categories)));
    out.push_str(&format!(
        "  file sha256 {}; signed generation {} bytes; took {} ms\n",
        i.source_sha256.to_hex(),
        rec.bytes,
        r.took_ms
    ));
    for w in &rec.warnings {
        out.push_str(&format!("  WARNING (forced): {w}\n"));
    }
    if !r.bad.is_empty() {
        out.push_str(&format!(
            "bad rows (skipped; first {} of {}):\n",
            r.bad.len(),
            rec.bad_rows
        ));
        for b in &r.bad {
            out.push_str(&format!("  line {}: {}\n", b.line, b.reason));
        }
    }
    out
}

fn render_sources(sources: &[SourceView]) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>5} {:>9} {:>9}  {}\n",
        "SOURCE", "FORMAT", "GEN", "AGE", "ROWS", "CATEGORIES"
    );
    for s in sources {
        match &s.current {
            Some(i) => out.push_str(&format!(
                "{:<16} {:<7} {:>5} {:>9} {:>9}  {}\n",
                s.name,
                s.format.name(),
                i.number,
                age(i.issued_at),
                i.rows,
                categories(&i.categories)
            )),
            None => out.push_str(&format!(
                "{:<16} {:<7} {:>5} {:>9} {:>9}  never imported\n",
                s.name,
                s.format.name(),
                "-",
                "-",
                "-"
            )),
        }
    }
    out
}

fn render_entry(e: &HotEntry) -> String {
    format!(
        "  {} {}  {}  {} {} {} {}  NIC {} ORI {}  entered {}{}",
        e.plate,
        if e.state.is_empty() { "??" } else { &e.state },
        e.category,
        e.vehicle_year,
        e.make,
        e.model,
        e.colour,
        e.nic,
        e.ori,
        e.entered,
        if e.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", e.note)
        }
    )
}

fn render_generations(gens: &[GenerationView]) -> String {
    let mut out = format!(
        "{:>5} {:<20} {:>9} {:>7} {:>8} {:>8} {:<12} {}\n",
        "GEN", "ISSUED", "ROWS", "BAD", "ADDED", "REMOVED", "BY", "NOTE"
    );
    for g in gens {
        let r = &g.record;
        let mut note = Vec::new();
        if g.kept {
            note.push("kept");
        }
        if r.forced {
            note.push("forced");
        }
        out.push_str(&format!(
            "{:>5} {:<20} {:>9} {:>7} {:>8} {:>8} {:<12} {}\n",
            r.info.number,
            r.info.issued_at.to_string(),
            r.info.rows,
            r.bad_rows,
            r.added,
            r.removed,
            r.imported_by,
            note.join(", ")
        ));
    }
    out
}

/// A source name as a URL path segment.
fn segment(source: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        crate::hotlist::valid_source_name(source),
        "{source:?} is not a source name (a-z, 0-9, -)"
    );
    Ok(source)
}

pub fn run(cmd: HotlistCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HotlistCommand::Import(a) => {
            let file =
                std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
            let category = a.category.clone().or_else(|| {
                (a.format == Some(Format::CaDoj))
                    .then(|| {
                        a.file
                            .file_name()
                            .and_then(|n| category_of_file(&n.to_string_lossy()))
                    })
                    .flatten()
                    .map(|c| c.name().to_owned())
            });
            let path = format!(
                "/api/v1/hotlists/{}/import{}",
                segment(&a.source)?,
                query(&[
                    ("format", a.format.map(|f| f.name().to_owned())),
                    ("columns", a.columns.clone()),
                    ("category", category),
                    ("force", a.force.then(|| "true".to_owned())),
                ])
            );
            let ask = format!("/api/v1/hotlists/{}/import", segment(&a.source)?);
            let report: ImportReport = runtime()?.block_on(async {
                let mut client = Session::load()?.client().await?;
                // Refused before the upload, with the reason.
                let ready: crate::api::hotlists::ImportReady = client.get(&ask).await?;
                anyhow::ensure!(
                    file.len() as u64 <= ready.max_file_bytes,
                    "{} is {} bytes; the hub takes at most {} (hotlist.max_file_bytes)",
                    a.file.display(),
                    file.len(),
                    ready.max_file_bytes
                );
                client.post_bytes(&path, file).await
            })?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_import(&report));
            }
        }
        HotlistCommand::Local(cmd) => return crate::cli::hotlist_local::run(cmd),
        HotlistCommand::List {
            local: true,
            all,
            json,
        } => return crate::cli::hotlist_local::list(all, json),
        HotlistCommand::List { json, .. } => {
            let sources: Vec<SourceView> = api_get("/api/v1/hotlists")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sources)?);
            } else {
                print!("{}", render_sources(&sources));
            }
        }
        HotlistCommand::Show {
            source,
            plate,
            json,
        } => {
            let d: SourceDetail = api_get(&format!(
                "/api/v1/hotlists/{}{}",
                segment(&source)?,
                query(&[("plate", plate)])
            ))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", render_sources(std::slice::from_ref(&d.source)));
                let s = &d.source.settings;
                println!(
                    "  match {:?}; alert level {:?}; covert {}; skip [{}]",
                    s.strategy,
                    s.alert_level,
                    s.covert,
                    s.skip.join(", ")
                );
                if let Some(p) = &d.plate {
                    if d.entries.is_empty() {
                        println!("{p}: not listed");
                    } else {
                        println!("{p}: {} row(s)", d.entries.len());
                        for e in &d.entries {
                            println!("{}", render_entry(e));
                        }
                    }
                }
            }
        }
        HotlistCommand::Sample(a) => sample_file(&a)?,
        HotlistCommand::Generations { source, json } => {
            let gens: Vec<GenerationView> = api_get(&format!(
                "/api/v1/hotlists/{}/generations",
                segment(&source)?
            ))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&gens)?);
            } else {
                print!("{}", render_generations(&gens));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
