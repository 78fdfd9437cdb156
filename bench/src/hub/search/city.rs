//! The simulated city the search bench (and `alpr-bench hub console`) builds
//! its store from: ~100 nodes over ~20 km, each with a seeded sequence of
//! reads (plates with realistic repetition, places, times over the span,
//! photos of realistic size on every n-th read), signed and committed in
//! large batches straight through the storage. The same sequences replay
//! without signing, so queries are drawn without reading the store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::{LogWriter, SignedEntry};
use alpr_shared::sync::{NewKey, Verified};
use alpr_shared::types::{
    DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis, ACCURACY_UNKNOWN,
};
use anyhow::Context;
use rand::{Rng, SeedableRng};

use super::SearchBenchArgs;
use alpr_hub::store::redb::RedbStore;
use alpr_hub::store::{HubStorage, WriteOp, WriteResult};

pub(super) const NODES: usize = 100;
/// Where the city is (San Francisco), and its half-width in degrees of
/// latitude (~10 km).
const CITY: (f64, f64) = (37.7749, -122.4194);
const HALF_DEG: f64 = 0.09;
/// Most reads of one node signed per round (one commit holds half a
/// round); fewer when the reads carry many image bytes.
const ROUND: usize = 1000;
/// Most bytes of images in one commit.
const COMMIT_IMAGE_BYTES: usize = 64 << 20;

/// What the store holds besides the reads, and over how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) reads: usize,
    pub(crate) days: u64,
    /// Every n-th read of a node has its images (0: none).
    pub(crate) images_every: u64,
    pub(crate) crop_bytes: usize,
    pub(crate) overview_bytes: usize,
}

impl Shape {
    /// The console bench's: reads over 30 days, without images.
    pub(crate) fn plain(reads: usize) -> Shape {
        Shape {
            reads,
            days: 30,
            images_every: 0,
            crop_bytes: 0,
            overview_bytes: 0,
        }
    }

    pub(super) fn from_args(a: &SearchBenchArgs) -> Shape {
        Shape {
            reads: a.reads,
            days: a.days.max(1),
            images_every: a.images_every,
            crop_bytes: a.crop_bytes,
            overview_bytes: a.overview_bytes,
        }
    }

    /// Reads that carry images.
    pub(super) fn with_images(&self) -> u64 {
        if self.images_every == 0 {
            return 0;
        }
        (0..NODES)
            .map(|i| (node_reads(self.reads, i) as u64).div_ceil(self.images_every))
            .sum()
    }

    pub(super) fn image_bytes(&self) -> u64 {
        self.with_images() * (self.crop_bytes + self.overview_bytes) as u64
    }

    /// Reads of one node per round, so that a commit's images stay small.
    fn round(&self) -> usize {
        if self.images_every == 0 {
            return ROUND;
        }
        let per_read = (self.crop_bytes + self.overview_bytes).max(1) as u64;
        let per_commit = COMMIT_IMAGE_BYTES as u64 * self.images_every / per_read;
        usize::try_from(per_commit / (NODES as u64 / 2))
            .unwrap_or(ROUND)
            .clamp(1, ROUND)
    }
}

/// Reads of node `i` of [`NODES`].
fn node_reads(reads: usize, i: usize) -> usize {
    reads / NODES + usize::from(i < reads % NODES)
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

/// A read's crop and overview photo, when it carries them.
type Photos = Option<(Vec<u8>, Vec<u8>)>;

/// A read as a node makes it: its content, when, and the images it
/// carries (if any).
pub(crate) struct SimRead {
    content: ReadContent,
    at: UnixMillis,
    source: TimeSource,
    images: Photos,
}

impl SimNode {
    /// The next read of this node (time-ordered over the span). The
    /// sequence depends only on the node's seed, so it can be replayed
    /// without signing (to draw queries without reading the store).
    fn next_read(&mut self, start: u64, span: u64, pool: u64, shape: &Shape) -> SimRead {
        let step = span / self.reads.max(1);
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
        let images = (shape.images_every > 0 && i.is_multiple_of(shape.images_every)).then(|| {
            (
                crate::hub::retention::image_bytes(2 * seed, shape.crop_bytes),
                crate::hub::retention::image_bytes(2 * seed + 1, shape.overview_bytes),
            )
        });
        let (crop_hash, overview_hash) = match &images {
            Some((crop, overview)) => (sha256(crop), sha256(overview)),
            None => (
                sha256(&seed.to_be_bytes()),
                sha256(&(seed ^ u64::MAX).to_be_bytes()),
            ),
        };
        let content = ReadContent {
            location,
            camera: "cam-1".into(),
            char_confidence: vec![9500; plate.len()],
            plate,
            confidence: self.rng.gen_range(7000..9900),
            issuer: alpr_shared::types::Issuer::Region("US-CA".into()),
            detector_model: "plate-det-v1".into(),
            ocr_model: "plate-ocr-v1".into(),
            crop_hash,
            overview_hash,
        };
        let source = if self.kind >= 7 {
            TimeSource::Gps
        } else {
            TimeSource::Ntp
        };
        SimRead {
            content,
            at: UnixMillis(at),
            source,
            images,
        }
    }

    /// The next `n` reads of this node, signed, with their images.
    fn sign(
        &mut self,
        n: u64,
        start: u64,
        span: u64,
        pool: u64,
        shape: &Shape,
    ) -> Vec<(SignedEntry, Photos)> {
        let mut out = Vec::new();
        for _ in 0..n.min(self.reads - self.done) {
            let r = self.next_read(start, span, pool, shape);
            match self.writer.append_read(r.content, r.at, r.source) {
                Ok(e) => out.push((e, r.images)),
                Err(e) => tracing::error!("bench read refused: {e}"),
            }
        }
        out
    }
}

/// The city's nodes, as the build makes them (positions and seeds fixed;
/// keys fresh unless only replayed).
fn sim_nodes(reads: usize, keys: Vec<SecretKey>) -> anyhow::Result<Vec<SimNode>> {
    anyhow::ensure!(keys.len() == NODES, "a key for each node");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut nodes = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let name = DeviceId::new(format!("bench-node-{i:03}"))?;
        nodes.push(SimNode {
            writer: LogWriter::new(key, name.clone()),
            name,
            base: (
                e7(CITY.0 + rng.gen_range(-HALF_DEG..HALF_DEG)),
                e7(CITY.1 + rng.gen_range(-HALF_DEG..HALF_DEG) * 1.27),
            ),
            kind: (i % 10) as u8,
            reads: node_reads(reads, i) as u64,
            done: 0,
            rng: rand::rngs::StdRng::seed_from_u64(1000 + i as u64),
        });
    }
    Ok(nodes)
}

/// When the store's span starts, for a store built at `now` over `days`.
fn span_of(now: u64, days: u64) -> (u64, u64) {
    let span = days * 86_400_000;
    (now - 3_600_000 - span, span)
}

type Half = Vec<(DeviceId, Vec<(SignedEntry, Photos)>)>;

/// Build the store: sign in two threads, commit in large batches straight
/// through the storage (not QUIC).
pub(super) fn build(db: &Path, files: &BuiltFiles, shape: Shape) -> anyhow::Result<f64> {
    let ca = alpr_shared::pki::new_ca("Bench Agency", 3650)?;
    let (took, now) = build_into(&RedbStore::open(db)?, &ca, shape)?;
    files.write(&ca, now)?;
    Ok(took)
}

/// What a build leaves beside its store, for later runs: the CA that
/// issued its nodes, and when it was built (the reads' times count back
/// from then; queries are drawn by replaying the build).
#[derive(Clone)]
pub(super) struct BuiltFiles {
    ca: PathBuf,
    built_at: PathBuf,
}

impl BuiltFiles {
    pub(super) fn new(dir: &Path, stem: &str) -> BuiltFiles {
        BuiltFiles {
            ca: dir.join(format!("{stem}.ca.pem")),
            built_at: dir.join(format!("{stem}.built")),
        }
    }

    pub(super) fn exist(&self) -> bool {
        self.ca.exists() && self.built_at.exists()
    }

    pub(super) fn write(&self, ca: &alpr_shared::pki::Issued, built_at: u64) -> anyhow::Result<()> {
        std::fs::write(&self.ca, ca.cert_pem.as_bytes())?;
        std::fs::write(&self.built_at, built_at.to_string())?;
        Ok(())
    }

    pub(super) fn read(&self) -> anyhow::Result<(TrustAnchor, u64)> {
        let anchor = TrustAnchor::from_pem(&std::fs::read(&self.ca)?)?;
        let at = std::fs::read_to_string(&self.built_at)?
            .trim()
            .parse()
            .with_context(|| format!("{} is not a time", self.built_at.display()))?;
        Ok((anchor, at))
    }
}

/// The name of a store of this shape (a store of another shape is never
/// reused for it).
pub(super) fn stem(shape: &Shape) -> String {
    format!(
        "search-bench-{}-{}d-i{}-{}-{}",
        shape.reads, shape.days, shape.images_every, shape.crop_bytes, shape.overview_bytes
    )
}

/// [`build`] with the nodes' certificates issued by `ca` (`alpr-bench hub
/// console` signs them under its hub's CA); the seconds it took.
pub(crate) fn build_under(
    db: &Path,
    ca: &alpr_shared::pki::Issued,
    shape: Shape,
) -> anyhow::Result<f64> {
    Ok(build_into(&RedbStore::open(db)?, ca, shape)?.0)
}

/// [`build_under`] into `store` (redb or PostgreSQL); the seconds it
/// took and the time it counted back from.
pub(super) fn build_into(
    store: &dyn HubStorage,
    ca: &alpr_shared::pki::Issued,
    shape: Shape,
) -> anyhow::Result<(f64, u64)> {
    let reads = shape.reads;
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes())?;
    let now = UnixMillis::now().0;
    let (start, span) = span_of(now, shape.days);
    let pool = (reads as u64 / 20).max(100);
    let keys: Vec<SecretKey> = (0..NODES).map(|_| SecretKey::generate()).collect();
    let mut contacts = Vec::new();
    let mut serials = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let name = DeviceId::new(format!("bench-node-{i:03}"))?;
        let dkind = if (7..=8).contains(&(i % 10)) {
            DeviceKind::Vehicle
        } else {
            DeviceKind::Pole
        };
        let pem = authority.issue_device_for(key, &name, dkind, 3650)?;
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
    }
    let mut nodes = sim_nodes(reads, keys)?;
    store.commit(contacts)?;
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Half>(2);
    let round = shape.round();
    let rounds = (reads / NODES).div_ceil(round) + 1;
    let second = nodes.split_off(NODES / 2);
    let mut first_batch = [true; NODES];
    let stored = std::thread::scope(|s| -> anyhow::Result<u64> {
        for mut half in [nodes, second] {
            let tx = tx.clone();
            s.spawn(move || {
                for _ in 0..rounds {
                    let batch: Half = half
                        .iter_mut()
                        .map(|n| {
                            let signed = n.sign(round as u64, start, span, pool, &shape);
                            (n.name.clone(), signed)
                        })
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
                let mut images = Vec::new();
                let mut verified = Vec::with_capacity(entries.len());
                for (e, photos) in entries {
                    if let (Some((crop, overview)), Some(r)) = (photos, e.read()) {
                        for (hash, bytes) in [(r.crop_hash, crop), (r.overview_hash, overview)] {
                            images.push(WriteOp::Image {
                                device: device.clone(),
                                seq: e.seq(),
                                hash,
                                bytes,
                            });
                        }
                    }
                    verified.push(Verified {
                        bytes: e.encode(),
                        hash: e.hash(),
                        entry: e,
                    });
                }
                ops.push(WriteOp::Ingest {
                    device,
                    entries: verified,
                    checkpoint: None,
                    new_key,
                    at: UnixMillis(now),
                });
                ops.extend(images);
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
    Ok((t0.elapsed().as_secs_f64(), now))
}

/// A read of the store, to aim queries at.
pub(super) struct Sample {
    pub(super) plate: String,
    pub(super) at: UnixMillis,
    pub(super) place: Option<(i32, i32)>,
}

/// `n` reads of the store built at `built_at`, drawn by replaying its
/// nodes (their seeded sequences, without signing or images): nothing of
/// the store is read, so nothing the queries touch is warmed. Each plate
/// once, in a random order.
pub(super) fn draw(
    shape: &Shape,
    built_at: u64,
    n: usize,
    rng: &mut impl Rng,
) -> anyhow::Result<Vec<Sample>> {
    let (start, span) = span_of(built_at, shape.days);
    let pool = (shape.reads as u64 / 20).max(100);
    let plain = Shape {
        images_every: 0,
        ..*shape
    };
    let keys = (0..NODES).map(|_| SecretKey::generate()).collect();
    let mut nodes = sim_nodes(shape.reads, keys)?;
    let mut picks: Vec<Vec<u64>> = vec![Vec::new(); NODES];
    for _ in 0..n * 2 {
        let i = rng.gen_range(0..NODES);
        if nodes[i].reads > 0 {
            picks[i].push(rng.gen_range(0..nodes[i].reads));
        }
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (node, mut want) in nodes.iter_mut().zip(picks) {
        want.sort_unstable();
        want.dedup();
        for k in want {
            while node.done < k {
                node.next_read(start, span, pool, &plain);
            }
            let r = node.next_read(start, span, pool, &plain);
            if seen.insert(r.content.plate.clone()) {
                out.push(Sample {
                    place: alpr_hub::search::coordinates(&r.content.location),
                    plate: r.content.plate,
                    at: r.at,
                });
            }
        }
    }
    // Interleave the nodes.
    for i in (1..out.len()).rev() {
        out.swap(i, rng.gen_range(0..=i));
    }
    Ok(out)
}
