//! `hub bench search`: a store of N signed reads from ~100 nodes over a
//! city (~20 km) and 30 days, plates with realistic repetition (a pool of
//! regulars seen often, most plates seen once or twice), then timed
//! searches of each kind — exact (present and absent), wildcard with a
//! leading or inner `*`, OCR-tolerant, and canvasses of 500 m × 1 h — each
//! first writing its access record durably through the hub's
//! [`AccessLog`], as the API does, and only then searching.
//!
//! The store is built once per folder and size (`search-bench-N.redb`,
//! with its CA beside it) and reused by later runs: building 10 million
//! signed reads takes minutes. With `--backend postgres`, the store is a
//! PostgreSQL database: the one `--database-url` names (built there if
//! empty, reused if it holds the N reads this bench built, its CA kept in
//! the folder), else a throwaway cluster's, built for the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord, LogWriter, SignedEntry};
use alpr_shared::sync::{NewKey, Verified};
use alpr_shared::types::{
    DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis, ACCURACY_UNKNOWN,
};
use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{Near, SearchQuery, Searcher};
use crate::access::AccessLog;
use crate::bench::pg::{self, BenchDatabase};
use crate::bench::BenchBackend;
use crate::store::postgres::PgStore;
use crate::store::redb::RedbStore;
use crate::store::{HubStorage, WriteOp, WriteResult};

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

const NODES: usize = 100;
/// Where the city is (San Francisco), and its half-width in degrees of
/// latitude (~10 km).
const CITY: (f64, f64) = (37.7749, -122.4194);
const HALF_DEG: f64 = 0.09;
const DAYS: u64 = 30;
/// Reads of one node signed per round (one commit holds half a round).
const ROUND: usize = 1000;

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct SearchBenchReport {
    pub backend: BenchBackend,
    pub reads: u64,
    pub nodes: usize,
    pub distinct_plates: u64,
    pub db_bytes: u64,
    /// Seconds to build the store (0 when reused).
    pub build_s: f64,
    pub reused: bool,
    pub build_reads_per_s: Option<f64>,
    /// Seconds to load the distinct plates into memory (first wildcard).
    pub index_load_s: f64,
    pub fs: String,
    pub path: String,
    pub queries: usize,
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

fn plate_of(x: u64) -> String {
    const L: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let d = |n: u64| char::from(b'0' + (n % 10) as u8);
    let l = |n: u64| char::from(L[(n % L.len() as u64) as usize]);
    let mut s = String::with_capacity(7);
    s.push(d(x));
    s.push(l(x / 10));
    s.push(l(x / 230));
    s.push(l(x / 5290));
    s.push(d(x / 121_670));
    s.push(d(x / 1_216_700));
    s.push(d(x / 12_167_000));
    s
}

/// A node of the simulated city.
struct SimNode {
    name: DeviceId,
    writer: LogWriter,
    /// Position (degrees × 10⁷).
    base: (i32, i32),
    kind: u8,
    reads: u64,
    done: u64,
    rng: rand::rngs::StdRng,
}

fn e7(deg: f64) -> i32 {
    (deg * 1e7).round() as i32
}

impl SimNode {
    /// The next `n` reads of this node (time-ordered over the 30 days).
    fn sign(&mut self, n: u64, start: u64, span: u64, pool: u64) -> Vec<SignedEntry> {
        let mut out = Vec::new();
        let step = span / self.reads.max(1);
        for _ in 0..n.min(self.reads - self.done) {
            let i = self.done;
            self.done += 1;
            let at = start + i * step + self.rng.gen_range(0..step.max(1));
            let plate = if self.rng.gen_bool(0.5) {
                // A regular: a few are seen very often.
                let v: f64 = self.rng.gen();
                let idx = (pool as f64 * v.powf(1.5)) as u64;
                plate_of(idx.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20)
            } else {
                plate_of(self.rng.gen::<u64>() >> 8)
            };
            let location = match self.kind {
                // Pole with a surveyed position in its configuration.
                0..=6 => Location::Configured {
                    lat_e7: self.base.0,
                    lon_e7: self.base.1,
                    accuracy_cm: 500,
                },
                // Vehicle: GPS around its beat, sometimes without a fix.
                7 | 8 => {
                    if self.rng.gen_bool(0.03) {
                        Location::Unknown
                    } else {
                        Location::Gps {
                            lat_e7: self.base.0 + self.rng.gen_range(-150_000..150_000),
                            lon_e7: self.base.1 + self.rng.gen_range(-190_000..190_000),
                            accuracy_cm: if self.rng.gen_bool(0.1) {
                                ACCURACY_UNKNOWN
                            } else {
                                400
                            },
                        }
                    }
                }
                _ => Location::Site {
                    site_id: format!("site-{}", self.name),
                },
            };
            let seed = (u64::from(self.base.0 as u32) << 32) ^ i;
            let content = ReadContent {
                location,
                camera: "cam-1".into(),
                char_confidence: vec![9500; plate.len()],
                plate,
                confidence: self.rng.gen_range(7000..9900),
                region: Some("US-CA".into()),
                detector_model: "plate-det-v1".into(),
                ocr_model: "plate-ocr-v1".into(),
                crop_hash: sha256(&seed.to_be_bytes()),
                overview_hash: sha256(&(seed ^ u64::MAX).to_be_bytes()),
            };
            let source = if self.kind >= 7 {
                TimeSource::Gps
            } else {
                TimeSource::Ntp
            };
            match self.writer.append_read(content, UnixMillis(at), source) {
                Ok(e) => out.push(e),
                Err(e) => tracing::error!("bench read refused: {e}"),
            }
        }
        out
    }
}

type Half = Vec<(DeviceId, Vec<SignedEntry>)>;

/// Build the store: sign in two threads, commit in large batches straight
/// through the storage (not QUIC).
fn build(db: &Path, ca_file: &Path, reads: usize) -> anyhow::Result<f64> {
    let ca = alpr_shared::pki::new_ca("Bench Agency", 3650)?;
    let took = build_under(db, &ca, reads)?;
    std::fs::write(ca_file, ca.cert_pem.as_bytes())?;
    Ok(took)
}

/// [`build`] with the nodes' certificates issued by `ca` (`hub bench
/// console` signs them under its hub's CA); the seconds it took.
pub(crate) fn build_under(
    db: &Path,
    ca: &alpr_shared::pki::Issued,
    reads: usize,
) -> anyhow::Result<f64> {
    build_into(&RedbStore::open(db)?, ca, reads)
}

/// [`build_under`] into `store` (redb or PostgreSQL).
fn build_into(
    store: &dyn HubStorage,
    ca: &alpr_shared::pki::Issued,
    reads: usize,
) -> anyhow::Result<f64> {
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes())?;
    let now = UnixMillis::now().0;
    let span = DAYS * 86_400_000;
    let start = now - 3_600_000 - span;
    let pool = (reads as u64 / 20).max(100);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut nodes = Vec::new();
    let mut contacts = Vec::new();
    let mut serials = Vec::new();
    for i in 0..NODES {
        let name = DeviceId::new(format!("bench-node-{i:03}"))?;
        let key = SecretKey::generate();
        let kind = (i % 10) as u8;
        let dkind = if (7..=8).contains(&kind) {
            DeviceKind::Vehicle
        } else {
            DeviceKind::Pole
        };
        let pem = authority.issue_device_for(&key, &name, dkind, 3650)?;
        let der = alpr_shared::cert::pem_certificates(pem.as_bytes())?
            .into_iter()
            .next()
            .context("an issued certificate")?;
        let serial = anchor.check_device_der(&der)?.serial;
        contacts.push(WriteOp::Contact {
            device: name.clone(),
            serial: serial.clone(),
            cert_der: der,
            reported_size: 0,
            at: UnixMillis(now),
        });
        serials.push(serial);
        let count = reads / NODES + usize::from(i < reads % NODES);
        nodes.push(SimNode {
            writer: LogWriter::new(key, name.clone()),
            name,
            base: (
                e7(CITY.0 + rng.gen_range(-HALF_DEG..HALF_DEG)),
                e7(CITY.1 + rng.gen_range(-HALF_DEG..HALF_DEG) * 1.27),
            ),
            kind,
            reads: count as u64,
            done: 0,
            rng: rand::rngs::StdRng::seed_from_u64(1000 + i as u64),
        });
    }
    store.commit(contacts)?;
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Half>(2);
    let rounds = (reads / NODES).div_ceil(ROUND) + 1;
    let second = nodes.split_off(NODES / 2);
    let mut first_batch = [true; NODES];
    let stored = std::thread::scope(|s| -> anyhow::Result<u64> {
        for mut half in [nodes, second] {
            let tx = tx.clone();
            s.spawn(move || {
                for _ in 0..rounds {
                    let batch: Half = half
                        .iter_mut()
                        .map(|n| (n.name.clone(), n.sign(ROUND as u64, start, span, pool)))
                        .filter(|(_, e)| !e.is_empty())
                        .collect();
                    if batch.is_empty() || tx.send(batch).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut stored = 0u64;
        let mut next_report = reads as u64 / 10;
        for half in rx {
            let mut ops = Vec::new();
            for (device, entries) in half {
                let idx = device
                    .as_str()
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .context("bench node name")?;
                let new_key = std::mem::replace(&mut first_batch[idx], false).then(|| NewKey {
                    serial: serials[idx].clone(),
                    first_seq: 0,
                });
                stored += entries.len() as u64;
                ops.push(WriteOp::Ingest {
                    device,
                    entries: entries
                        .into_iter()
                        .map(|e| Verified {
                            bytes: e.encode(),
                            hash: e.hash(),
                            entry: e,
                        })
                        .collect(),
                    checkpoint: None,
                    new_key,
                    at: UnixMillis(now),
                });
            }
            for r in store.commit(ops)? {
                if let WriteResult::Ingested(Err(refusal)) = r {
                    anyhow::bail!("the bench's own reads were refused: {refusal:?}");
                }
            }
            if stored >= next_report {
                eprintln!(
                    "  {stored} reads stored ({:.0}/s)",
                    stored as f64 / t0.elapsed().as_secs_f64()
                );
                next_report += reads as u64 / 10;
            }
        }
        Ok(stored)
    })?;
    anyhow::ensure!(stored == reads as u64, "stored {stored} of {reads} reads");
    Ok(t0.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A read of the store, to aim queries at.
struct Sample {
    plate: String,
    at: UnixMillis,
    place: Option<(i32, i32)>,
}

fn samples(storage: &dyn HubStorage, n: usize, rng: &mut impl Rng) -> anyhow::Result<Vec<Sample>> {
    let nodes = storage.nodes()?;
    anyhow::ensure!(!nodes.is_empty(), "the store has no nodes");
    let mut keys = Vec::new();
    for _ in 0..n * 2 {
        let (d, rec) = &nodes[rng.gen_range(0..nodes.len())];
        if rec.next_seq > 0 {
            keys.push((d.clone(), rng.gen_range(0..rec.next_seq)));
        }
    }
    let mut out = Vec::new();
    for bytes in storage.entries_at(&keys)?.into_iter().flatten() {
        let e = SignedEntry::decode(&bytes)?;
        if let Some(r) = e.read() {
            out.push(Sample {
                plate: r.plate.clone(),
                at: e.header.captured_at,
                place: super::coordinates(&r.location),
            });
        }
    }
    Ok(out)
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
    let fs = crate::bench::filesystem_of(&dir);
    anyhow::ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs: a durable access record there costs nothing, so the figures would \
         mislead. Choose a folder on disk with --dir, or pass --allow-tmpfs",
        dir.display()
    );
    let opened = match args.backend {
        BenchBackend::Redb => open_redb(&args, &dir).await?,
        BenchBackend::Postgres => open_postgres(&args, &dir).await?,
    };
    let cleanup = opened.database;
    let result = measure(
        &args,
        fs,
        opened.storage,
        opened.pg,
        opened.anchor,
        opened.path,
        opened.build_s,
    )
    .await;
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
    /// Seconds it took to build; `None` when reused.
    build_s: Option<f64>,
    /// A database made for this run (dropped after it).
    database: Option<BenchDatabase>,
}

/// The redb store in `dir`, built there if absent.
async fn open_redb(args: &SearchBenchArgs, dir: &Path) -> anyhow::Result<Opened> {
    let db = dir.join(format!("search-bench-{}.redb", args.reads));
    let ca_file = dir.join(format!("search-bench-{}.ca.pem", args.reads));
    let reused = db.exists() && ca_file.exists();
    let build_s = if reused {
        eprintln!(
            "reusing {} (built earlier by this bench with {} reads)",
            db.display(),
            args.reads
        );
        None
    } else {
        let _ = std::fs::remove_file(&db);
        eprintln!(
            "building {} with {} signed reads…",
            db.display(),
            args.reads
        );
        let (db2, ca2, n) = (db.clone(), ca_file.clone(), args.reads);
        Some(tokio::task::spawn_blocking(move || build(&db2, &ca2, n)).await??)
    };
    Ok(Opened {
        anchor: TrustAnchor::from_pem(&std::fs::read(&ca_file)?)?,
        storage: Arc::new(RedbStore::open(&db)?),
        pg: None,
        path: db.display().to_string(),
        build_s,
        database: None,
    })
}

/// The PostgreSQL store `--database-url` names (built there if empty,
/// reused if it holds what this bench built), else a throwaway cluster's.
async fn open_postgres(args: &SearchBenchArgs, dir: &Path) -> anyhow::Result<Opened> {
    let database = match &args.database_url {
        Some(_) => None,
        None => Some(BenchDatabase::fresh(None, "alpr_bench_search").await?),
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
    let ca_file = dir.join(format!(
        "search-bench-{}-{}.ca.pem",
        pg::database_of(&url),
        args.reads
    ));
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
    let build_s = if held == args.reads as u64 && ca_file.exists() {
        eprintln!("reusing {described} (built earlier by this bench with {held} reads)");
        None
    } else {
        anyhow::ensure!(
            held == 0,
            "{described} holds {held} reads{}: give --database-url an empty database, or \
             one this bench built with --reads {held} from this --dir",
            if ca_file.exists() {
                ""
            } else {
                " and its CA is not in --dir"
            }
        );
        eprintln!("building {described} with {} signed reads…", args.reads);
        let (s, ca2, n) = (store.clone(), ca_file.clone(), args.reads);
        Some(
            tokio::task::spawn_blocking(move || {
                let ca = alpr_shared::pki::new_ca("Bench Agency", 3650)?;
                let took = build_into(s.as_ref(), &ca, n)?;
                std::fs::write(&ca2, ca.cert_pem.as_bytes())?;
                anyhow::Ok(took)
            })
            .await??,
        )
    };
    Ok(Opened {
        anchor: TrustAnchor::from_pem(&std::fs::read(&ca_file)?)?,
        storage: store.clone(),
        pg: Some(store),
        path: described,
        build_s,
        database,
    })
}

/// The timed searches over `storage`, and the report.
async fn measure(
    args: &SearchBenchArgs,
    fs: String,
    storage: Arc<dyn HubStorage>,
    pg: Option<Arc<PgStore>>,
    anchor: TrustAnchor,
    path: String,
    build_s: Option<f64>,
) -> anyhow::Result<()> {
    let reused = build_s.is_none();
    let build_s = build_s.unwrap_or(0.0);
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

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let warm = 20;
    let n = args.queries + warm;
    let sample = samples(storage.as_ref(), n * 3, &mut rng)?;
    anyhow::ensure!(sample.len() >= n, "too few reads sampled");
    let placed: Vec<&Sample> = sample.iter().filter(|s| s.place.is_some()).collect();
    let q = |plate: Option<String>, tolerant: bool| SearchQuery {
        plate,
        tolerant,
        ..SearchQuery::default()
    };
    let mut kinds: Vec<(&str, Vec<SearchQuery>)> = vec![
        (
            "exact",
            sample[..n]
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
            sample[..n]
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
            sample[..n]
                .iter()
                .map(|s| q(Some(confuse(&s.plate)), true))
                .collect(),
        ),
        (
            "canvass",
            (0..n)
                .map(|i| {
                    let s = placed[i % placed.len().max(1)];
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
    anyhow::ensure!(!placed.is_empty(), "no placed reads sampled");
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
                source: "hub bench search".into(),
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
        db_bytes: match pg {
            Some(pg) => tokio::task::spawn_blocking(move || pg::database_bytes(&pg)).await??,
            None => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        },
        build_s,
        reused,
        build_reads_per_s: (!reused && build_s > 0.0).then(|| args.reads as f64 / build_s),
        index_load_s,
        fs,
        path,
        queries: args.queries,
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
