//! `alpr-bench hub search`: a store of N signed reads from ~100 nodes over a
//! city (~20 km) and `--days` (default 395: thirteen months, a year kept
//! and the month being purged), plates with realistic repetition (a pool
//! of regulars seen often, most plates seen once or twice), each read (or
//! every `--images-every`-th) with its plate crop and overview photo of
//! realistic size, then timed searches of each kind — exact (present and
//! absent), wildcard with a leading or inner `*`, OCR-tolerant, and
//! canvasses of 500 m × 1 h — each first writing its access record
//! durably through the hub's [`AccessLog`], as the API does, and only then
//! searching.
//!
//! The queries are drawn from how the store was generated (the same
//! seeded nodes, replayed without signing), not by reading it, so nothing
//! they will touch is warmed by drawing them; the warm-up queries and each
//! kind's timed queries use plates of their own. The report says what
//! fits in the page cache: the store's size beside the machine's memory,
//! and how much of the store the page cache held when the queries began.
//!
//! A mid-size agency's year is *assumed* at 100 nodes × 1,000 reads a day:
//! 39.5 million reads over 395 days, about 32 GB of reads and 6.7 TB of
//! photos at the default sizes; `--reads` says how many are built here.
//!
//! The store is built once per folder, size, span and images
//! (`search-bench-N-Dd-iK.redb`, with its CA beside it) and reused by
//! later runs: building 10 million signed reads takes minutes. With
//! `--backend postgres`, the store is a PostgreSQL database: the one
//! `--database-url` names (built there if empty, reused if it holds the N
//! reads this bench built, its CA kept in the folder), else a throwaway
//! cluster's, built for the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use alpr_shared::types::UnixMillis;
use anyhow::Context;
use rand::SeedableRng;
use serde::Serialize;

use crate::hub::pg::{self, BenchDatabase};
use crate::hub::BenchBackend;
use alpr_hub::access::AccessLog;
use alpr_hub::search::{Near, SearchQuery, Searcher};
use alpr_hub::store::postgres::PgStore;
use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::{ChainStore, HubStorage};

mod city;

use city::{build, build_into, draw, stem, BuiltFiles, Sample, NODES};
pub(crate) use city::{build_under, Shape};

#[derive(Debug, clap::Args)]
pub struct SearchBenchArgs {
    /// Signed reads in the store.
    #[arg(long, default_value_t = 200_000)]
    pub reads: usize,
    /// Folder of the database (default: the current folder). A database
    /// this bench built there with the same --reads is reused.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run even if the folder is on tmpfs (the figures then say nothing
    /// about durable access records).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Timed queries of each kind (after a warm-up).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Days the reads span, up to now (395: a year kept and a month more).
    #[arg(long, default_value_t = 395)]
    pub days: u64,
    /// Every n-th read of a node carries its crop and overview photo (1:
    /// every read; a year of them does not fit on a small disk).
    #[arg(long, default_value_t = 1)]
    pub images_every: u64,
    /// Bytes of each plate crop.
    #[arg(long, default_value_t = 20_000)]
    pub crop_bytes: usize,
    /// Bytes of each overview photo.
    #[arg(long, default_value_t = 150_000)]
    pub overview_bytes: usize,
    /// Drop the store's file from the page cache before the queries
    /// (`posix_fadvise(DONTNEED)`): a store larger than memory, cold.
    #[arg(long)]
    pub drop_cache: bool,
    /// Where the store is: a redb file in --dir, or a PostgreSQL database.
    #[arg(long, value_enum, default_value = "redb")]
    pub backend: BenchBackend,
    /// PostgreSQL (--backend postgres): the database to build the store in
    /// (it must be empty) or to reuse (it holds the --reads this bench
    /// built; its CA is in --dir). Without it, a throwaway cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct SearchBenchReport {
    pub backend: BenchBackend,
    pub reads: u64,
    pub nodes: usize,
    pub distinct_plates: u64,
    pub db_bytes: u64,
    /// Days the reads span (up to the build).
    pub days: u64,
    /// Reads stored with their crop and overview, and those images' bytes.
    pub reads_with_images: u64,
    pub image_bytes: u64,
    /// What fits in the page cache when the queries began.
    pub cache: CacheView,
    /// Seconds to build the store (0 when reused).
    pub build_s: f64,
    pub reused: bool,
    pub build_reads_per_s: Option<f64>,
    /// Seconds to load the distinct plates into memory (first wildcard).
    pub index_load_s: f64,
    pub fs: String,
    pub path: String,
    pub queries: usize,
    /// Queries aimed at a stored read's plate or place (exact, wildcard,
    /// tolerant, canvass, warm-ups included), and the distinct plates
    /// they were drawn from: equal when no two queries share a plate.
    pub plate_queries: usize,
    pub query_plates: usize,
    pub exact_p50_ms: f64,
    pub exact_p99_ms: f64,
    pub exact_hits_mean: f64,
    pub absent_p50_ms: f64,
    pub absent_p99_ms: f64,
    pub wildcard_p50_ms: f64,
    pub wildcard_p99_ms: f64,
    pub wildcard_hits_mean: f64,
    pub tolerant_p50_ms: f64,
    pub tolerant_p99_ms: f64,
    pub tolerant_hits_mean: f64,
    pub canvass_p50_ms: f64,
    pub canvass_p99_ms: f64,
    pub canvass_hits_mean: f64,
    /// The access record alone (durable commit), p50 over every query.
    pub access_record_p50_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Swap characters for ones an OCR engine confuses them with.
fn confuse(plate: &str) -> String {
    plate
        .chars()
        .map(|c| match c {
            '0' => 'O',
            '1' => 'I',
            '2' => 'Z',
            '5' => 'S',
            '8' => 'B',
            '6' => 'G',
            c => c,
        })
        .collect()
}

pub async fn run(args: SearchBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.reads >= NODES, "need at least {NODES} reads");
    anyhow::ensure!(args.queries > 0, "need at least one query per kind");
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fs = crate::hub::on_disk(
        &dir,
        args.allow_tmpfs,
        "a durable access record would cost nothing, and no read would come from a disk",
    )?;
    let shape = Shape::from_args(&args);
    let mut opened = match args.backend {
        BenchBackend::Redb => open_redb(&args, &shape, &dir).await?,
        BenchBackend::Postgres => open_postgres(&args, &shape, &dir).await?,
    };
    let cleanup = opened.database.take();
    let result = measure(&args, &shape, fs, opened).await;
    if let Some(db) = cleanup {
        if let Err(e) = db.finish().await {
            tracing::warn!("the bench's database: {e:#}");
        }
    }
    result
}

/// The store to search, as [`run`] opened (and perhaps built) it.
struct Opened {
    storage: Arc<dyn HubStorage>,
    /// The same store, when it is PostgreSQL (for its size).
    pg: Option<Arc<PgStore>>,
    anchor: TrustAnchor,
    /// Where it is, for people.
    path: String,
    /// The redb file.
    file: Option<PathBuf>,
    /// When it was built (its reads' times count back from then).
    built_at: u64,
    /// Seconds it took to build; `None` when reused.
    build_s: Option<f64>,
    /// A database made for this run (dropped after it).
    database: Option<BenchDatabase>,
}

/// Refuse a build that would not fit on the disk.
fn check_room(shape: &Shape, dir: &Path) -> anyhow::Result<()> {
    // About 830 bytes a read without images (docs/scale.md); redb keeps a
    // photo of 150 KB in about 1.7 times its size.
    let need = shape.reads as u64 * 830 + 2 * shape.image_bytes();
    if let Some(free) = alpr_shared::health::disk_free(dir) {
        anyhow::ensure!(
            need < free / 10 * 9,
            "{} reads ({} of them with {} bytes of images) need about {} GB; {} has {} GB \
             free. Ask for fewer --reads or a larger --images-every",
            shape.reads,
            shape.with_images(),
            shape.crop_bytes + shape.overview_bytes,
            need >> 30,
            dir.display(),
            free >> 30
        );
    }
    Ok(())
}

/// The redb store in `dir`, built there if absent.
async fn open_redb(args: &SearchBenchArgs, shape: &Shape, dir: &Path) -> anyhow::Result<Opened> {
    let stem = stem(shape);
    let db = dir.join(format!("{stem}.redb"));
    let files = BuiltFiles::new(dir, &stem);
    let reused = db.exists() && files.exist();
    let build_s = if reused {
        eprintln!(
            "reusing {} (built earlier by this bench with {} reads)",
            db.display(),
            args.reads
        );
        None
    } else {
        let _ = std::fs::remove_file(&db);
        check_room(shape, dir)?;
        eprintln!(
            "building {} with {} signed reads over {} days, {} with images…",
            db.display(),
            shape.reads,
            shape.days,
            shape.with_images()
        );
        let (db2, shape, files) = (db.clone(), *shape, files.clone());
        Some(tokio::task::spawn_blocking(move || build(&db2, &files, shape)).await??)
    };
    let (anchor, built_at) = files.read()?;
    Ok(Opened {
        anchor,
        storage: Arc::new(RedbStore::open(&db)?),
        pg: None,
        path: db.display().to_string(),
        file: Some(db),
        built_at,
        build_s,
        database: None,
    })
}

/// The PostgreSQL store `--database-url` names (built there if empty,
/// reused if it holds what this bench built), else a throwaway cluster's.
async fn open_postgres(
    args: &SearchBenchArgs,
    shape: &Shape,
    dir: &Path,
) -> anyhow::Result<Opened> {
    let database = match &args.database_url {
        Some(_) => None,
        None => Some(BenchDatabase::fresh(None, "alpr_bench_search", dir, args.allow_tmpfs).await?),
    };
    let url = match (&database, &args.database_url) {
        (Some(d), _) => d.url.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => anyhow::bail!("no database"),
    };
    let described = match &database {
        Some(d) => d.described.clone(),
        None => pg::without_password(&url),
    };
    let files = BuiltFiles::new(dir, &format!("{}-{}", pg::database_of(&url), stem(shape)));
    let files2 = files.clone();
    let config = pg::config(&url, 8);
    let store = Arc::new(tokio::task::spawn_blocking(move || PgStore::open(&config)).await??);
    let held: u64 = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.nodes())
            .await??
            .iter()
            .map(|(_, r)| r.next_seq)
            .sum()
    };
    let build_s = if held == args.reads as u64 && files.exist() {
        eprintln!("reusing {described} (built earlier by this bench with {held} reads)");
        None
    } else {
        anyhow::ensure!(
            held == 0,
            "{described} holds {held} reads{}: give --database-url an empty database, or \
             one this bench built with the same --reads, --days and images from this --dir",
            if files.exist() {
                ""
            } else {
                " and its CA is not in --dir"
            }
        );
        eprintln!("building {described} with {} signed reads…", args.reads);
        let (s, shape) = (store.clone(), *shape);
        Some(
            tokio::task::spawn_blocking(move || {
                let ca = alpr_shared::pki::new_ca("Bench Agency", 3650)?;
                let (took, now) = build_into(s.as_ref(), &ca, shape)?;
                files2.write(&ca, now)?;
                anyhow::Ok(took)
            })
            .await??,
        )
    };
    let (anchor, built_at) = files.read()?;
    Ok(Opened {
        anchor,
        storage: store.clone(),
        pg: Some(store),
        path: described,
        file: None,
        built_at,
        build_s,
        database,
    })
}

/// What fits in the page cache, just before the queries.
#[derive(Debug, Serialize)]
pub struct CacheView {
    /// The machine's memory (MemTotal).
    pub ram_bytes: Option<u64>,
    /// The page cache of the whole machine (Cached).
    pub page_cache_bytes: Option<u64>,
    /// Of the store's file, in the page cache (fincore; redb only).
    pub store_cached_bytes: Option<u64>,
    /// Whether the store is smaller than the machine's memory (all of it
    /// could be cached).
    pub store_fits_in_ram: Option<bool>,
    /// Whether the store's file was dropped from the cache first
    /// (`--drop-cache`).
    pub dropped: bool,
}

/// The timed searches over the `opened` store, and the report.
async fn measure(
    args: &SearchBenchArgs,
    shape: &Shape,
    fs: String,
    opened: Opened,
) -> anyhow::Result<()> {
    let Opened {
        storage,
        pg,
        anchor,
        path,
        file,
        built_at,
        build_s,
        database: _,
    } = opened;
    let reused = build_s.is_none();
    let build_s = build_s.unwrap_or(0.0);
    let db_bytes = match pg.clone() {
        Some(pg) => tokio::task::spawn_blocking(move || pg::database_bytes(&pg)).await??,
        None => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
    };
    // The store is reused across runs, and its access log continues only
    // under the key that signed it: a fixed key, certified afresh.
    let log_key = alpr_shared::signer::dev::Deployment::new()
        .and_then(|d| {
            d.key_for(
                "hub",
                alpr_shared::crypto::SecretKey::from_bytes(&[0x5e; 32]),
            )
        })
        .map_err(anyhow::Error::msg)?;
    let access = AccessLog::start(storage.clone(), log_key)?;
    let searcher = Searcher::new(storage.clone(), anchor);
    let t = Instant::now();
    let s2 = searcher.clone();
    let distinct_plates = tokio::task::spawn_blocking(move || s2.refresh_plates()).await??;
    let index_load_s = t.elapsed().as_secs_f64();
    let dropped = match (&file, args.drop_cache) {
        (Some(f), true) => {
            alpr_shared::health::drop_from_page_cache(f)
                .with_context(|| format!("dropping {} from the page cache", f.display()))?;
            true
        }
        _ => false,
    };
    let ram_bytes = alpr_shared::health::meminfo_bytes("MemTotal");
    let cache = CacheView {
        ram_bytes,
        page_cache_bytes: alpr_shared::health::meminfo_bytes("Cached"),
        store_cached_bytes: file.as_deref().and_then(alpr_shared::health::cached_bytes),
        store_fits_in_ram: ram_bytes.map(|r| db_bytes < r),
        dropped,
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let warm = 20;
    let n = args.queries + warm;
    // Each kind its own plates (the first `warm` of each only warm up),
    // none read from the store to draw them.
    let drawn = draw(shape, built_at, n * 6, &mut rng)?;
    let (placed, unplaced): (Vec<Sample>, Vec<Sample>) =
        drawn.into_iter().partition(|s| s.place.is_some());
    anyhow::ensure!(placed.len() >= n, "too few placed reads drawn");
    let (canvass, rest) = placed.split_at(n);
    let others: Vec<&Sample> = rest.iter().chain(&unplaced).collect();
    anyhow::ensure!(others.len() >= 3 * n, "too few distinct plates drawn");
    let (exact, others) = others.split_at(n);
    let (wildcard, others) = others.split_at(n);
    let tolerant = &others[..n];
    let used: Vec<&str> = canvass
        .iter()
        .chain(exact.iter().copied())
        .chain(wildcard.iter().copied())
        .chain(tolerant.iter().copied())
        .map(|s| s.plate.as_str())
        .collect();
    let plate_queries = used.len();
    let query_plates = used.iter().collect::<std::collections::HashSet<_>>().len();
    let q = |plate: Option<String>, tolerant: bool| SearchQuery {
        plate,
        tolerant,
        ..SearchQuery::default()
    };
    let mut kinds: Vec<(&str, Vec<SearchQuery>)> = vec![
        (
            "exact",
            exact
                .iter()
                .map(|s| q(Some(s.plate.clone()), false))
                .collect(),
        ),
        (
            "absent",
            (0..n)
                .map(|i| q(Some(format!("QX{:06}", i * 7919)), false))
                .collect(),
        ),
        (
            "wildcard",
            wildcard
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let p = s.plate.as_bytes();
                    let c = |j: usize| char::from(p[j % p.len()]);
                    let pattern = if i % 2 == 0 {
                        // `*4?21*`: leading `*`, an unknown character.
                        format!("*{}?{}{}*", c(3), c(5), c(6))
                    } else {
                        // Inner `*`: the start and end are known.
                        format!("{}{}*{}{}", c(0), c(1), c(5), c(6))
                    };
                    q(Some(pattern), false)
                })
                .collect(),
        ),
        (
            "tolerant",
            tolerant
                .iter()
                .map(|s| q(Some(confuse(&s.plate)), true))
                .collect(),
        ),
        (
            "canvass",
            canvass
                .iter()
                .map(|s| {
                    let (lat, lon) = s.place.unwrap_or((0, 0));
                    SearchQuery {
                        from: Some(UnixMillis(s.at.0.saturating_sub(1_800_000))),
                        to: Some(UnixMillis(s.at.0 + 1_800_000)),
                        near: Some(Near {
                            lat: f64::from(lat) / 1e7,
                            lon: f64::from(lon) / 1e7,
                            radius_m: 500.0,
                        }),
                        ..SearchQuery::default()
                    }
                })
                .collect(),
        ),
    ];
    let mut results: Vec<(&str, Vec<f64>, f64)> = Vec::new();
    let mut access_ms = Vec::new();
    for (kind, queries) in kinds.drain(..) {
        let mut times = Vec::new();
        let mut hits = 0u64;
        for (i, query) in queries.into_iter().enumerate() {
            let t0 = Instant::now();
            let record = AccessRecord {
                user: "bench".into(),
                agency: "CA0000000".into(),
                action: AccessAction::Search,
                purpose: Some("benchmark".into()),
                case: None,
                query: query.describe()?,
                results: 0,
                outcome: AccessOutcome::Allowed,
                source: "alpr-bench hub search".into(),
            };
            access.record(record).await?;
            let a = t0.elapsed().as_secs_f64() * 1e3;
            let s = searcher.clone();
            let r = tokio::task::spawn_blocking(move || s.search(&query)).await??;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if i >= warm {
                times.push(ms);
                access_ms.push(a);
                hits += r.hits.len() as u64;
                anyhow::ensure!(
                    r.hits.iter().all(|h| h.signature),
                    "a bench read did not verify"
                );
            }
        }
        times.sort_by(f64::total_cmp);
        let mean = hits as f64 / times.len().max(1) as f64;
        results.push((kind, times, mean));
    }
    access_ms.sort_by(f64::total_cmp);
    let get = |k: &str| {
        results
            .iter()
            .find(|(n, _, _)| *n == k)
            .map(|(_, t, m)| (percentile(t, 0.5), percentile(t, 0.99), *m))
            .unwrap_or_default()
    };
    let (e, a, w, t, c) = (
        get("exact"),
        get("absent"),
        get("wildcard"),
        get("tolerant"),
        get("canvass"),
    );
    let reads: u64 = storage.nodes()?.iter().map(|(_, r)| r.next_seq).sum();
    let report = SearchBenchReport {
        backend: args.backend,
        reads,
        nodes: NODES,
        distinct_plates,
        db_bytes,
        days: shape.days,
        reads_with_images: shape.with_images(),
        image_bytes: shape.image_bytes(),
        cache,
        build_s,
        reused,
        build_reads_per_s: (!reused && build_s > 0.0).then(|| args.reads as f64 / build_s),
        index_load_s,
        fs,
        path,
        queries: args.queries,
        plate_queries,
        query_plates,
        exact_p50_ms: e.0,
        exact_p99_ms: e.1,
        exact_hits_mean: e.2,
        absent_p50_ms: a.0,
        absent_p99_ms: a.1,
        wildcard_p50_ms: w.0,
        wildcard_p99_ms: w.1,
        wildcard_hits_mean: w.2,
        tolerant_p50_ms: t.0,
        tolerant_p99_ms: t.1,
        tolerant_hits_mean: t.2,
        canvass_p50_ms: c.0,
        canvass_p99_ms: c.1,
        canvass_hits_mean: c.2,
        access_record_p50_ms: percentile(&access_ms, 0.5),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} signed reads from {} nodes, {} distinct plates, {} MiB at {} ({})",
        report.reads,
        report.nodes,
        report.distinct_plates,
        report.db_bytes >> 20,
        report.path,
        report.fs
    );
    println!(
        "over {} days; {} reads with their crop and overview ({} MiB of images)",
        report.days,
        report.reads_with_images,
        report.image_bytes >> 20
    );
    let mib = |b: Option<u64>| b.map_or_else(|| "?".to_string(), |b| (b >> 20).to_string());
    let c = &report.cache;
    println!(
        "page cache: the store is {} MiB, the machine has {} MiB of memory ({}), {} MiB cached \
         in all, {} MiB of the store cached as the queries began{}",
        report.db_bytes >> 20,
        mib(c.ram_bytes),
        match c.store_fits_in_ram {
            Some(true) => "the whole store fits",
            Some(false) => "the store does not fit",
            None => "?",
        },
        mib(c.page_cache_bytes),
        mib(c.store_cached_bytes),
        if c.dropped {
            " (dropped with --drop-cache first)"
        } else {
            ""
        }
    );
    println!(
        "(a mid-size agency's year, assumed at 100 nodes × 1,000 reads a day over 395 days: \
         39.5 million reads, about 32 GB of reads and 6.7 TB of photos — it fits no page cache)"
    );
    match report.build_reads_per_s {
        Some(r) => println!("built in {:.1} s ({r:.0} reads/s)", report.build_s),
        None => println!("store reused (built earlier by this bench)"),
    }
    println!(
        "plate index loaded in {:.2} s; access record (durable) p50 {:.2} ms",
        report.index_load_s, report.access_record_p50_ms
    );
    println!(
        "\n{:<10} {:>8} {:>9} {:>9} {:>10}",
        "QUERY", "COUNT", "P50 ms", "P99 ms", "HITS/QUERY"
    );
    for (kind, times, mean) in &results {
        println!(
            "{:<10} {:>8} {:>9.2} {:>9.2} {:>10.1}",
            kind,
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.99),
            mean
        );
    }
    println!("(each query: its access record committed durably, then the search)");
    Ok(())
}
