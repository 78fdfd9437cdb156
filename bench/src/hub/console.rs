//! `alpr-bench hub console`: how long the hub takes to render console pages
//! over a store of N signed reads (100 nodes, 30 days: the store of `hub
//! bench search`, signed under the bench hub's own CA).
//!
//! A real hub (`hub serve` in this process, on loopback) serves the
//! store; a supervisor logs in through the console like a browser
//! ([`ConsoleClient`]: cookies, CSRF field) and the bench times the dashboard
//! (`GET /console/`) and the search form (`POST /console/search`: exact
//! plate, wildcard, OCR-tolerant, canvass of 500 m × 1 h). The figure is
//! the server's time (`Server-Timing: app;dur=…`, set by the console's
//! middleware); the round trip is reported beside it. Warm-up requests
//! come first, and the timed dashboards start once the dashboard's
//! background retention count is done (it reads every stored read).
//!
//! The store, its PKI and the hub's data are kept in
//! `DIR/console-bench-N/` and reused by later runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alpr_shared::log::SignedEntry;
use alpr_shared::types::UnixMillis;
use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use alpr_hub::api::client::ApiClient;
use alpr_hub::config::HubConfig;
use alpr_hub::console::client::{Answer, ConsoleClient};
use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::ChainStore;

#[derive(Debug, clap::Args)]
pub struct ConsoleBenchArgs {
    /// Signed reads in the store.
    #[arg(long, default_value_t = 200_000)]
    pub reads: usize,
    /// Folder for the store and the hub's data (default: the current
    /// folder); a store this bench built there with the same --reads is
    /// reused.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Timed requests of each page (after a warm-up).
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The timings of one page.
#[derive(Debug, Clone, Serialize)]
pub struct PageTiming {
    pub page: String,
    /// `console` (the page's own route) or `api` (the search page was not
    /// served: the API's search was timed instead, round trip only).
    pub via: String,
    pub requests: usize,
    /// Server time (`Server-Timing`), ms.
    pub server_p50_ms: f64,
    pub server_p99_ms: f64,
    /// Round trip over loopback HTTPS, ms.
    pub round_trip_p50_ms: f64,
    pub round_trip_p99_ms: f64,
    /// Mean size of the answer (bytes).
    pub bytes_mean: u64,
}

/// What `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleBenchReport {
    pub reads: u64,
    pub nodes: usize,
    pub reused: bool,
    pub build_s: f64,
    /// Seconds the hub took to start on the store (it checks every page).
    pub start_s: f64,
    pub pages: Vec<PageTiming>,
    /// Seconds from the first dashboard until its background retention
    /// count was shown (the count reads every stored read).
    pub retention_count_s: f64,
    pub target_ms: f64,
}

/// Target of every page (server time, p99).
pub const TARGET_MS: f64 = 300.0;
const ADMIN: &str = "bench-admin";
const SUPERVISOR: &str = "bench-supervisor";
const PASSWORD: &str = "bench-console-password-0123";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A read of the store, to aim searches at.
struct Sample {
    plate: String,
    at: UnixMillis,
    place: Option<(f64, f64)>,
}

fn samples(db: &Path, n: usize) -> anyhow::Result<Vec<Sample>> {
    let storage = RedbStore::open(db)?;
    let nodes = storage.nodes()?;
    anyhow::ensure!(!nodes.is_empty(), "the store has no nodes");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let keys: Vec<_> = (0..n * 2)
        .filter_map(|_| {
            let (d, rec) = &nodes[rng.gen_range(0..nodes.len())];
            (rec.next_seq > 0).then(|| (d.clone(), rng.gen_range(0..rec.next_seq)))
        })
        .collect();
    let mut out = Vec::new();
    for bytes in storage.entries_at(&keys)?.into_iter().flatten() {
        let e = SignedEntry::decode(&bytes)?;
        if let Some(r) = e.read() {
            use alpr_shared::types::Location;
            let place = match r.location {
                Location::Gps { lat_e7, lon_e7, .. }
                | Location::Configured { lat_e7, lon_e7, .. } => {
                    Some((f64::from(lat_e7) / 1e7, f64::from(lon_e7) / 1e7))
                }
                _ => None,
            };
            out.push(Sample {
                plate: r.plate.clone(),
                at: e.header.captured_at,
                place,
            });
        }
    }
    anyhow::ensure!(out.len() >= n, "too few reads sampled");
    Ok(out)
}

/// A `datetime-local` value (UTC, to the minute).
fn local(t: UnixMillis) -> String {
    t.to_string().chars().take(16).collect()
}

/// Time `n` requests after `warm` untimed ones; each answer must be the
/// page (`marker` in it) without an error box.
async fn time_page<F, Fut>(
    page: &str,
    marker: &str,
    warm: usize,
    n: usize,
    mut request: F,
) -> anyhow::Result<PageTiming>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Answer>>,
{
    let (mut server, mut trip, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    for i in 0..warm + n {
        let a = request(i).await?;
        anyhow::ensure!(
            a.status == 200 && a.body.contains(marker) && !a.body.contains("id=\"error\""),
            "{page}: HTTP {} without {marker} or with an error: {}",
            a.status,
            a.body.chars().take(2000).collect::<String>()
        );
        if i >= warm {
            server.push(a.server_ms().unwrap_or(a.took_ms));
            trip.push(a.took_ms);
            bytes += a.body.len() as u64;
        }
    }
    server.sort_by(f64::total_cmp);
    trip.sort_by(f64::total_cmp);
    Ok(PageTiming {
        page: page.to_owned(),
        via: "console".into(),
        requests: n,
        server_p50_ms: percentile(&server, 0.5),
        server_p99_ms: percentile(&server, 0.99),
        round_trip_p50_ms: percentile(&trip, 0.5),
        round_trip_p99_ms: percentile(&trip, 0.99),
        bytes_mean: bytes / n.max(1) as u64,
    })
}

/// The search form's fields for one kind of search.
fn search_fields(kind: &str, s: &Sample) -> Vec<(&'static str, String)> {
    let p = s.plate.as_bytes();
    let c = |j: usize| char::from(p[j % p.len()]);
    // Every field of the form, as a browser sends it (empty when unused).
    let mut f = vec![
        ("purpose", "stolen-vehicle".to_owned()),
        ("case", "BENCH-1".to_owned()),
        ("node", String::new()),
    ];
    if kind != "canvass" {
        for k in ["from", "to", "lat", "lon", "radius_m"] {
            f.push((k, String::new()));
        }
    }
    match kind {
        "exact" => {
            f.push(("plate", s.plate.clone()));
            f.push(("mode", "exact".into()));
        }
        "wildcard" => {
            f.push(("plate", format!("{}{}*{}{}", c(0), c(1), c(5), c(6))));
            f.push(("mode", "wildcard".into()));
        }
        "tolerant" => {
            let confused: String = s
                .plate
                .chars()
                .map(|ch| match ch {
                    '0' => 'O',
                    '1' => 'I',
                    '5' => 'S',
                    '8' => 'B',
                    ch => ch,
                })
                .collect();
            f.push(("plate", confused));
            f.push(("mode", "tolerant".into()));
        }
        _ => {
            let (lat, lon) = s.place.unwrap_or_default();
            f.push(("plate", String::new()));
            f.push(("mode", "exact".into()));
            f.push(("from", local(UnixMillis(s.at.0.saturating_sub(1_800_000)))));
            f.push(("to", local(UnixMillis(s.at.0 + 1_800_000))));
            f.push(("lat", format!("{lat:.6}")));
            f.push(("lon", format!("{lon:.6}")));
            f.push(("radius_m", "500".into()));
        }
    }
    f
}

/// The same search through the API (before the console's search page).
fn api_search(kind: &str, s: &Sample) -> alpr_hub::api::search::SearchRequest {
    let fields = search_fields(kind, s);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let mut query = alpr_hub::search::SearchQuery {
        plate: get("plate"),
        tolerant: kind == "tolerant",
        ..alpr_hub::search::SearchQuery::default()
    };
    if kind == "canvass" {
        let (lat, lon) = s.place.unwrap_or_default();
        query.from = Some(UnixMillis(s.at.0.saturating_sub(1_800_000)));
        query.to = Some(UnixMillis(s.at.0 + 1_800_000));
        query.near = Some(alpr_hub::search::Near {
            lat,
            lon,
            radius_m: 500.0,
        });
    }
    alpr_hub::api::search::SearchRequest {
        query,
        reason: alpr_hub::api::search::Reason {
            purpose: get("purpose"),
            case: get("case"),
        },
    }
}

pub async fn run(args: ConsoleBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.reads >= 100, "need at least 100 reads");
    anyhow::ensure!(args.requests > 0, "need at least one request per page");
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = base.join(format!("console-bench-{}", args.reads));
    let (pki, data) = (dir.join("pki"), dir.join("hub-data"));
    let db = data.join("hub.redb");
    let built = dir.join("built");
    let reused = built.exists() && db.exists();
    let build_s = if reused {
        eprintln!("reusing {} (built earlier by this bench)", dir.display());
        0.0
    } else {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let ca = crate::hub::write_ca_and_hub(&pki, 3650)?;
        eprintln!(
            "building {} with {} signed reads…",
            db.display(),
            args.reads
        );
        let (db2, n) = (db.clone(), args.reads);
        let s = tokio::task::spawn_blocking(move || {
            crate::hub::search::build_under(&db2, &ca, crate::hub::search::Shape::plain(n))
        })
        .await??;
        std::fs::write(&built, b"")?;
        s
    };
    let warm = 5;
    let n = args.requests;
    let db2 = db.clone();
    let sample = tokio::task::spawn_blocking(move || samples(&db2, (warm + n) * 2)).await??;
    let placed: Vec<&Sample> = sample.iter().filter(|s| s.place.is_some()).collect();
    // Counted before the hub opens the store (it holds it until its
    // last task ends).
    let storage_reads = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            Ok(RedbStore::open(&db)?
                .nodes()?
                .iter()
                .map(|(_, r)| r.next_seq)
                .sum())
        })
        .await??
    };
    anyhow::ensure!(!placed.is_empty(), "no placed read sampled");

    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], api_port)),
        data_dir: data.clone(),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        login_failures: 1000,
        login_source_failures: 100_000,
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
    let bootstrap = data.join(alpr_hub::users::BOOTSTRAP_FILE);
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let t_start = Instant::now();
    let server = tokio::spawn(alpr_hub::serve::serve(config, cancel.clone(), Some(tx)));
    if rx.await.is_err() {
        let why = match server.await {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(())) => "it stopped".into(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("the hub did not start: {why}");
    }
    let start_s = t_start.elapsed().as_secs_f64();
    let url = format!("https://127.0.0.1:{api_port}");
    let result = measure(&url, &ca, &bootstrap, &sample, &placed, warm, n).await;
    cancel.cancel();
    let _ = server.await;
    let (pages, retention_count_s) = result?;
    let report = ConsoleBenchReport {
        reads: storage_reads,
        nodes: 100,
        reused,
        build_s,
        start_s,
        pages,
        retention_count_s,
        target_ms: TARGET_MS,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} reads, {} nodes; hub started in {:.1} s{}",
            report.reads,
            report.nodes,
            report.start_s,
            if reused { " (store reused)" } else { "" }
        );
        println!(
            "{:<12} {:<8} {:>5} {:>11} {:>11} {:>11} {:>11} {:>9}",
            "page", "via", "n", "server p50", "server p99", "trip p50", "trip p99", "bytes"
        );
        for p in &report.pages {
            println!(
                "{:<12} {:<8} {:>5} {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>9}",
                p.page,
                p.via,
                p.requests,
                p.server_p50_ms,
                p.server_p99_ms,
                p.round_trip_p50_ms,
                p.round_trip_p99_ms,
                p.bytes_mean
            );
        }
        println!(
            "(target: ≤ {TARGET_MS:.0} ms server time per page; the dashboard's retention \
             count took {retention_count_s:.1} s in the background)"
        );
    }
    Ok(())
}

/// Set up the users, log in, and time each page; and how long the
/// dashboard's background retention count took.
async fn measure(
    url: &str,
    ca: &[u8],
    bootstrap: &Path,
    sample: &[Sample],
    placed: &[&Sample],
    warm: usize,
    n: usize,
) -> anyhow::Result<(Vec<PageTiming>, f64)> {
    let login = |user: &'static str| crate::hub::served::login(url, ca, user, PASSWORD);
    if bootstrap.exists() {
        let b: alpr_hub::users::BootstrapFile = serde_json::from_slice(&std::fs::read(bootstrap)?)?;
        let user = |username: &str, role| crate::hub::served::user(username, role, PASSWORD);
        let _: alpr_hub::users::UserView = ApiClient::connect(url, ca)
            .await?
            .post(
                "/api/v1/bootstrap",
                &alpr_hub::api::users::BootstrapRequest {
                    token: b.token,
                    user: user(ADMIN, alpr_hub::users::Role::Administrator),
                },
            )
            .await?;
        let _: alpr_hub::users::UserView = login(ADMIN)
            .await?
            .post(
                "/api/v1/users",
                &user(SUPERVISOR, alpr_hub::users::Role::Supervisor),
            )
            .await?;
    }
    // The retention job runs once when the hub starts (it reads every
    // read): wait for it, so that it does not share the timed requests'
    // processor.
    let mut admin = login(ADMIN).await?;
    let waited = Instant::now();
    loop {
        let s: alpr_hub::api::retention::RetentionStatus = admin.get("/api/v1/retention").await?;
        if s.last.is_some() || waited.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut b = ConsoleClient::new(url, ca)?;
    let a = b.login(SUPERVISOR, PASSWORD).await?;
    anyhow::ensure!(a.status == 303, "console login: HTTP {}", a.status);
    // The dashboard counts what retention has due in the background:
    // wait for the count before timing.
    let waited = Instant::now();
    loop {
        let a = b.get("/console/").await?;
        if !a.body.contains("Counting the reads past retention")
            || waited.elapsed() > Duration::from_secs(600)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let retention_count_s = waited.elapsed().as_secs_f64();
    let mut pages = Vec::new();
    let browser = std::sync::Arc::new(tokio::sync::Mutex::new(b));
    {
        let br = browser.clone();
        pages.push(
            time_page("dashboard", "id=\"page-dashboard\"", warm, n, |_| {
                let br = br.clone();
                async move { br.lock().await.get("/console/").await }
            })
            .await?,
        );
    }
    let csrf = {
        let mut b = browser.lock().await;
        b.get("/console/")
            .await?
            .csrf()
            .context("no CSRF field on the dashboard")?
    };
    let probe = {
        let mut fields = search_fields("exact", &sample[0]);
        fields.push(("csrf", csrf.clone()));
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        browser
            .lock()
            .await
            .post_form("/console/search", &f)
            .await?
    };
    let console_search = !matches!(probe.status, 404 | 405);
    let mut api = login(SUPERVISOR).await?;
    for kind in ["exact", "wildcard", "tolerant", "canvass"] {
        let pick = |i: usize| -> &Sample {
            if kind == "canvass" {
                placed[i % placed.len()]
            } else {
                &sample[i % sample.len()]
            }
        };
        if console_search {
            let (br, csrf) = (browser.clone(), csrf.clone());
            pages.push(
                time_page(kind, "id=\"results\"", warm, n, |i| {
                    let (br, csrf) = (br.clone(), csrf.clone());
                    let mut fields = search_fields(kind, pick(i));
                    fields.push(("csrf", csrf));
                    async move {
                        let f: Vec<(&str, &str)> =
                            fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        br.lock().await.post_form("/console/search", &f).await
                    }
                })
                .await?,
            );
        } else {
            let mut trip = Vec::new();
            for i in 0..warm + n {
                let req = api_search(kind, pick(i));
                let t0 = Instant::now();
                let _: alpr_hub::search::SearchResults = api.post("/api/v1/search", &req).await?;
                if i >= warm {
                    trip.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            trip.sort_by(f64::total_cmp);
            pages.push(PageTiming {
                page: kind.to_owned(),
                via: "api".into(),
                requests: n,
                server_p50_ms: percentile(&trip, 0.5),
                server_p99_ms: percentile(&trip, 0.99),
                round_trip_p50_ms: percentile(&trip, 0.5),
                round_trip_p99_ms: percentile(&trip, 0.99),
                bytes_mean: 0,
            });
        }
    }
    Ok((pages, retention_count_s))
}
