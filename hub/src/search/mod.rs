//! Searching stored reads (issue 10, item 4, at the hub): by plate —
//! exact, wildcard (`*`, `?`) or OCR-tolerant ([`alpr_shared::search`]) —
//! by place (a canvass: a radius around a point), by time and by node.
//!
//! No search scans reads:
//! - an exact plate is one range scan of `plate-time-v1` (plate, time);
//! - a wildcard or tolerant pattern is matched against the distinct plates
//!   (`plate-order-v1`), held in memory by the [`Searcher`] with n-gram postings
//!   ([`index::PlateIndex`]), and each matching plate is then an exact
//!   range scan;
//! - a canvass reads only the geo cells around the point over the time
//!   window (`geo-time-v1`); reads without coordinates (a site, an unknown
//!   position) cannot be placed, and the answer says how many there were.
//!
//! Every hit says whether the read's signature verifies *now*: its header
//! under the node's certificate in force for that sequence number, and its
//! content against the header's commitment.
//!
//! Searches are blocking storage work: async callers run
//! [`Searcher::search`] and [`Searcher::read`] in
//! `tokio::task::spawn_blocking`. The caller records the access
//! ([`crate::access::AccessLog::record`], with [`SearchResults::query`] as the
//! data elements queried) and returns nothing before that entry is durable.

pub mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::PublicKey;
use alpr_shared::log::SignedEntry;
use alpr_shared::search::{distance_m, PatternError, PlatePattern};
use alpr_shared::types::{
    Confidence, DeviceId, Hash32, Location, StateReading, TimeSource, UnixMillis,
};
use serde::{Deserialize, Serialize};

use crate::store::{GeoBox, HubStorage, IndexedRead, StoreError};
use index::PlateIndex;

mod plan;
use plan::*;

/// Hits returned when the query names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most hits one search returns.
pub const MAX_LIMIT: usize = 1000;
/// Largest canvass radius: a canvass is of the area of a crime, not a city.
pub const MAX_RADIUS_M: f64 = 10_000.0;
/// Most index rows one search looks at; beyond, `matched` is a lower bound
/// and the answer says so.
pub const MAX_SCANNED: usize = 1_000_000;
/// With a place, a plate pattern matching more reads than this is
/// searched by place first (then each read's plate is matched).
pub const PLATE_FIRST_MAX: usize = 20_000;
/// Distinct plates loaded from storage per page.
const PLATE_PAGE: usize = 100_000;

/// A canvass: reads within `radius_m` of a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Near {
    /// Degrees.
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

/// What a person asks for (JSON for the API). At least a plate pattern or
/// a place: a node and a time range alone are a dump of reads, not a
/// search for a vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Plate, exact or with `*` (any run) and `?` (one character).
    #[serde(default)]
    pub plate: Option<String>,
    /// Confusable characters match each other (0/O/D/Q, 1/I, 2/Z, 5/S, 8/B, 6/G).
    #[serde(default)]
    pub tolerant: bool,
    /// Captured at or after (Unix milliseconds).
    #[serde(default)]
    pub from: Option<UnixMillis>,
    /// Captured at or before (Unix milliseconds).
    #[serde(default)]
    pub to: Option<UnixMillis>,
    #[serde(default)]
    pub near: Option<Near>,
    /// Only reads of this node.
    #[serde(default)]
    pub node: Option<String>,
    /// Most hits to return ([`DEFAULT_LIMIT`] if absent, at most [`MAX_LIMIT`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query is wrong (400-class): the message says what to change.
    #[error("{0}")]
    BadQuery(String),
    #[error("bad plate pattern: {0}")]
    Pattern(#[from] PatternError),
    /// The store failed (500-class).
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl SearchError {
    /// Whether the person asked for something wrong (answer 400), rather
    /// than the hub failing (answer 500).
    pub fn is_bad_query(&self) -> bool {
        matches!(self, SearchError::BadQuery(_) | SearchError::Pattern(_))
    }
}

/// Where a read's position came from. A configured position is never
/// shown as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceSource {
    /// A GPS fix measured when the read was taken.
    Gps,
    /// A position written in the node's configuration.
    Configured,
    /// A surveyed site, named, without coordinates in the read.
    Site,
    Unknown,
}

impl PlaceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaceSource::Gps => "gps",
            PlaceSource::Configured => "configured",
            PlaceSource::Site => "site",
            PlaceSource::Unknown => "unknown",
        }
    }
}

/// One read found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub node: String,
    pub seq: u64,
    pub plate: String,
    pub captured_at: UnixMillis,
    /// Where the capture time came from (GPS, NTP, the local clock, …).
    pub time_source: TimeSource,
    pub location: Location,
    pub place_source: PlaceSource,
    /// Metres from the canvass point, in a canvass.
    pub distance_m: Option<f64>,
    pub camera: String,
    /// Plate confidence, 0–10000.
    pub confidence: Confidence,
    /// Whether the hub holds the plate crop ([`Searcher::read`] returns it).
    pub crop_held: bool,
    /// Whether the read's signature and content commitment verify under
    /// the node's certificate in force for this sequence number.
    pub signature: bool,
    /// Why not, when `signature` is false.
    pub signature_problem: Option<String>,
}

/// The answer to a [`SearchQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// The query in one line, for the access log's "data elements queried"
    /// (e.g. `plate=*4?21* mode=wildcard from=… to=… near=… r=500m`).
    pub query: String,
    /// Reads that matched (before `limit`).
    pub matched: u64,
    /// `matched` is a lower bound: the search stopped at [`MAX_SCANNED`].
    pub matched_capped: bool,
    /// Fewer hits returned than matched.
    pub truncated: bool,
    /// In a canvass: reads of the time window (and node) that carry no
    /// coordinates, so could not be placed.
    pub unplaced: Option<u64>,
    /// Distinct plates the pattern matched (wildcard and tolerant).
    pub plates_matched: Option<u64>,
    /// Newest first.
    pub hits: Vec<SearchHit>,
}

/// One read in full, for a view: its hit, its content and its images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadDetail {
    pub hit: SearchHit,
    pub region: Option<String>,
    /// The state reading, when the edge's state reader looked.
    pub state: Option<StateReading>,
    pub char_confidence: Vec<Confidence>,
    pub detector_model: String,
    pub ocr_model: String,
    /// The plate crop JPEG, base64 in JSON, if held.
    #[serde(with = "b64")]
    pub crop_jpeg: Option<Vec<u8>>,
    /// The overview JPEG, base64 in JSON, if held.
    #[serde(with = "b64")]
    pub overview_jpeg: Option<Vec<u8>>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// Searches the hub's reads. Cheap to clone; every clone shares the
/// in-memory plate index (loaded on the first wildcard or tolerant search,
/// then kept up to date with plates stored since, on each such search).
#[derive(Clone)]
pub struct Searcher {
    storage: Arc<dyn HubStorage>,
    anchor: Arc<TrustAnchor>,
    plates: Arc<RwLock<PlateIndex>>,
    /// With a place, a plate that matches more reads than this is
    /// searched by place first.
    plate_first_max: usize,
    /// Certificate serial → its key (`None`: it no longer checks).
    keys: Arc<Mutex<HashMap<String, Option<PublicKey>>>>,
}

impl std::fmt::Debug for Searcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searcher").finish_non_exhaustive()
    }
}

impl Searcher {
    /// A searcher over `storage`; node certificates are checked against
    /// the deployment's `anchor` before their keys vouch for a read.
    pub fn new(storage: Arc<dyn HubStorage>, anchor: TrustAnchor) -> Self {
        Searcher {
            storage,
            anchor: Arc::new(anchor),
            plates: Arc::new(RwLock::new(PlateIndex::default())),
            plate_first_max: PLATE_FIRST_MAX,
            keys: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// As [`Searcher::new`], searching a plate with a place by place first
    /// when the plate matches more than `max` reads (tests use a small one).
    pub fn with_plate_first_max(mut self, max: usize) -> Self {
        self.plate_first_max = max.max(1);
        self
    }

    /// Load the distinct plates stored since the last call (all of them the
    /// first time); returns how many the index holds.
    pub fn refresh_plates(&self) -> Result<u64, SearchError> {
        loop {
            let (next, len) = {
                let idx = self.plates.read().map_err(|_| poisoned())?;
                (idx.next_ordinal(), idx.len())
            };
            let page = self.storage.plates_from(next, PLATE_PAGE)?;
            if page.is_empty() {
                return Ok(len);
            }
            let mut idx = self.plates.write().map_err(|_| poisoned())?;
            for (ordinal, plate) in &page {
                // Another caller may have loaded this page meanwhile;
                // ordinals have gaps where retention dropped plates.
                idx.load(*ordinal, plate);
            }
            if page.len() < PLATE_PAGE {
                return Ok(idx.len());
            }
        }
    }

    /// Run a query (blocking: see the module docs).
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResults, SearchError> {
        let description = query.describe()?;
        let plan = query.plan()?;
        let mut found: Vec<(IndexedRead, Option<f64>)> = Vec::new();
        let mut capped;
        let mut unplaced = None;
        let mut plates_matched = None;
        // Which plates: exact, or those of the distinct plates that match.
        let plates: Option<Vec<String>> = match &plan.pattern {
            None => None,
            Some(p) => match p.exact() {
                Some(exact) => Some(vec![exact.to_owned()]),
                None => {
                    self.refresh_plates()?;
                    let m = self.plates.read().map_err(|_| poisoned())?.matching(p);
                    plates_matched = Some(m.len() as u64);
                    Some(m)
                }
            },
        };
        match (&plates, &plan.near) {
            (Some(plates), near) => {
                // With a place too, the plate narrows first unless it
                // matches many reads: then the place does.
                let most = if near.is_some() {
                    self.plate_first_max
                } else {
                    MAX_SCANNED
                };
                let reads = self
                    .storage
                    .reads_of_plates(plates, plan.from, plan.to, most)?;
                capped = reads.len() >= MAX_SCANNED;
                match near {
                    Some(n) if reads.len() >= most => {
                        let pattern = plan.pattern.as_ref().ok_or_else(|| {
                            SearchError::BadQuery("a plate search without a pattern".into())
                        })?;
                        let (f, u, c) = self.plate_near(pattern, n, &plan)?;
                        found = f;
                        unplaced = Some(u);
                        capped = c;
                    }
                    _ => {
                        for r in reads {
                            if plan.node.as_ref().is_some_and(|n| *n != r.device) {
                                continue;
                            }
                            found.push((r, None));
                        }
                    }
                }
                if let (Some(n), false) = (near, unplaced.is_some()) {
                    // Plate and place: the plate narrowed most; place each
                    // candidate from its entry.
                    let keys: Vec<(DeviceId, u64)> = found
                        .iter()
                        .map(|(r, _)| (r.device.clone(), r.seq))
                        .collect();
                    let entries = self.storage.entries_at(&keys)?;
                    let mut kept = Vec::new();
                    let mut not_placed = 0;
                    for ((r, _), bytes) in found.into_iter().zip(entries) {
                        let loc = bytes
                            .and_then(|b| SignedEntry::decode(&b).ok())
                            .and_then(|e| e.read().map(|c| c.location.clone()));
                        match loc.as_ref().and_then(coordinates) {
                            Some((lat, lon)) => {
                                let d = distance_m(e7(n.lat), e7(n.lon), lat, lon);
                                if d <= n.radius_m {
                                    kept.push((r, Some(d)));
                                }
                            }
                            None => not_placed += 1,
                        }
                    }
                    found = kept;
                    unplaced = Some(not_placed);
                }
            }
            (None, Some(n)) => {
                let area = bounding_box(n);
                let placed = self.storage.reads_in_box(
                    &area,
                    plan.from,
                    plan.to,
                    plan.node.as_ref(),
                    MAX_SCANNED,
                    false,
                )?;
                capped = !placed.complete;
                unplaced = Some(placed.unplaced);
                let (lat0, lon0) = (e7(n.lat), e7(n.lon));
                for p in placed.placed {
                    let d = distance_m(lat0, lon0, p.lat_e7, p.lon_e7);
                    if d <= n.radius_m {
                        found.push((p.read, Some(d)));
                    }
                }
            }
            (None, None) => {
                return Err(SearchError::BadQuery(
                    "give a plate pattern or a place".into(),
                ))
            }
        }
        let matched = found.len() as u64;
        found.sort_by(|a, b| {
            b.0.captured_at
                .cmp(&a.0.captured_at)
                .then_with(|| a.0.device.as_str().cmp(b.0.device.as_str()))
                .then(a.0.seq.cmp(&b.0.seq))
        });
        let truncated = found.len() > plan.limit;
        found.truncate(plan.limit);
        let hits = self.hits(&found)?;
        Ok(SearchResults {
            query: description,
            matched,
            matched_capped: capped,
            truncated,
            unplaced,
            plates_matched,
            hits,
        })
    }

    /// A plate pattern that matches many reads, near a place: the reads of
    /// the place and window (placed or not), whose content is read and
    /// matched. Returns the hits with their distance, the unplaced reads
    /// that match, and whether a limit cut the scan.
    #[allow(clippy::type_complexity)]
    fn plate_near(
        &self,
        pattern: &PlatePattern,
        n: &Near,
        plan: &Plan,
    ) -> Result<(Vec<(IndexedRead, Option<f64>)>, u64, bool), SearchError> {
        let placed = self.storage.reads_in_box(
            &bounding_box(n),
            plan.from,
            plan.to,
            plan.node.as_ref(),
            MAX_SCANNED,
            true,
        )?;
        let (lat0, lon0) = (e7(n.lat), e7(n.lon));
        let near: Vec<(IndexedRead, f64)> = placed
            .placed
            .into_iter()
            .map(|p| {
                let d = distance_m(lat0, lon0, p.lat_e7, p.lon_e7);
                (p.read, d)
            })
            .filter(|(_, d)| *d <= n.radius_m)
            .collect();
        let matches = |reads: &[&IndexedRead]| -> Result<Vec<bool>, SearchError> {
            let keys: Vec<(DeviceId, u64)> =
                reads.iter().map(|r| (r.device.clone(), r.seq)).collect();
            Ok(self
                .storage
                .entries_at(&keys)?
                .into_iter()
                .map(|b| {
                    b.and_then(|b| SignedEntry::decode(&b).ok())
                        .and_then(|e| e.read().map(|c| pattern.matches(&c.plate)))
                        .unwrap_or(false)
                })
                .collect())
        };
        let refs: Vec<&IndexedRead> = near.iter().map(|(r, _)| r).collect();
        let keep = matches(&refs)?;
        let found = near
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|((r, d), _)| (r, Some(d)))
            .collect();
        let refs: Vec<&IndexedRead> = placed.unplaced_reads.iter().collect();
        let unplaced = matches(&refs)?.into_iter().filter(|k| *k).count() as u64;
        Ok((found, unplaced, !placed.complete))
    }

    /// The state a read's recogniser gave (only when sure), from its
    /// signed content (blocking). `None` also when purged or not held.
    pub fn read_state(&self, node: &str, seq: u64) -> Result<Option<String>, SearchError> {
        let device = DeviceId::new(node)
            .map_err(|e| SearchError::BadQuery(format!("node {node:?}: {e}")))?;
        Ok(self
            .entry(&device, seq)?
            .and_then(|e| e.read().and_then(|c| c.issuer.state().map(str::to_owned))))
    }

    /// One read in full, with its images if held (blocking). `None`: no
    /// such read, or its content has been purged.
    pub fn read(&self, node: &str, seq: u64) -> Result<Option<ReadDetail>, SearchError> {
        let device = DeviceId::new(node)
            .map_err(|e| SearchError::BadQuery(format!("node {node:?}: {e}")))?;
        let Some(entry) = self.entry(&device, seq)? else {
            return Ok(None);
        };
        let Some(content) = entry.read().cloned() else {
            return Ok(None);
        };
        let mut certs = HashMap::new();
        let key = self.key_for(&device, seq, &mut certs)?;
        let crop_jpeg = self.storage.image(&content.crop_hash)?;
        let problem = problem(&device, &entry, &key);
        let hit = self.hit(&device, &entry, None, problem, crop_jpeg.is_some())?;
        let overview_jpeg = self.storage.image(&content.overview_hash)?;
        Ok(Some(ReadDetail {
            hit,
            region: content.issuer.region().map(str::to_owned),
            state: content.issuer.state_reading().cloned(),
            char_confidence: content.char_confidence,
            detector_model: content.detector_model,
            ocr_model: content.ocr_model,
            crop_jpeg,
            overview_jpeg,
        }))
    }

    fn entry(&self, device: &DeviceId, seq: u64) -> Result<Option<SignedEntry>, SearchError> {
        let bytes = self
            .storage
            .entries_at(&[(device.clone(), seq)])?
            .into_iter()
            .next()
            .flatten();
        Ok(bytes.and_then(|b| SignedEntry::decode(&b).ok()))
    }

    /// Hits for `found`, fetched in one transaction; reads whose content
    /// is gone (purged since indexed) are left out. Signatures are checked
    /// on two threads: they are most of a search's work.
    fn hits(&self, found: &[(IndexedRead, Option<f64>)]) -> Result<Vec<SearchHit>, SearchError> {
        let reads: Vec<IndexedRead> = found.iter().map(|(r, _)| r.clone()).collect();
        let entries = self.storage.entries_of_reads(&reads)?;
        // Every node's certificates and every crop's presence in one
        // question each, not one per hit.
        let mut devices: Vec<DeviceId> = reads.iter().map(|r| r.device.clone()).collect();
        devices.sort_unstable();
        devices.dedup();
        let mut certs: HashMap<DeviceId, KeyRanges> = HashMap::new();
        for (device, held) in devices.iter().zip(self.storage.certificates_of(&devices)?) {
            let ranges = self.key_ranges_of(device, held)?;
            certs.insert(device.clone(), ranges);
        }
        let mut work = Vec::with_capacity(found.len());
        for ((r, d), bytes) in found.iter().zip(entries) {
            let Some(entry) = bytes.and_then(|b| SignedEntry::decode(&b).ok()) else {
                continue;
            };
            if entry.read().is_none() {
                continue;
            }
            let key = self.key_for(&r.device, entry.header.seq, &mut certs)?;
            work.push((&r.device, entry, *d, key));
        }
        let check = |w: &[Checking<'_>]| {
            w.iter()
                .map(|(device, entry, _, key)| problem(device, entry, key))
                .collect::<Vec<_>>()
        };
        let problems: Vec<Option<String>> = if work.len() >= 16 {
            let (a, b) = work.split_at(work.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| check(b));
                let mut p = check(a);
                match other.join() {
                    Ok(q) => p.extend(q),
                    // A panic while checking a signature: check again here.
                    Err(_) => p.extend(check(b)),
                }
                p
            })
        } else {
            check(&work)
        };
        let crops: Vec<Hash32> = work
            .iter()
            .filter_map(|(_, e, _, _)| e.read().map(|r| r.crop_hash))
            .collect();
        let held = self.storage.images_held(&crops)?;
        let mut out = Vec::with_capacity(work.len());
        for (((device, entry, distance, _), problem), crop_held) in
            work.into_iter().zip(problems).zip(held)
        {
            out.push(self.hit(device, &entry, distance, problem, crop_held)?);
        }
        Ok(out)
    }

    /// The key in force for entry `seq` of `device`, or why there is none.
    fn key_for(
        &self,
        device: &DeviceId,
        seq: u64,
        certs: &mut HashMap<DeviceId, KeyRanges>,
    ) -> Result<Result<PublicKey, String>, SearchError> {
        if !certs.contains_key(device) {
            let ranges = self.key_ranges_of(device, self.storage.certificates(device)?)?;
            certs.insert(device.clone(), ranges);
        }
        let ranges = certs.get(device).map(Vec::as_slice).unwrap_or(&[]);
        Ok(match ranges.iter().rev().find(|(from, _)| *from <= seq) {
            None => Err("no certificate of the node is in force for this entry".to_owned()),
            Some((_, None)) => {
                Err("the certificate in force no longer checks against the CA".to_owned())
            }
            Some((_, Some(key))) => Ok(*key),
        })
    }

    fn hit(
        &self,
        device: &DeviceId,
        entry: &SignedEntry,
        distance: Option<f64>,
        problem: Option<String>,
        crop_held: bool,
    ) -> Result<SearchHit, SearchError> {
        let content = entry
            .read()
            .ok_or_else(|| SearchError::BadQuery("the read's content is gone".into()))?;
        Ok(SearchHit {
            node: device.to_string(),
            seq: entry.header.seq,
            plate: content.plate.clone(),
            captured_at: entry.header.captured_at,
            time_source: entry.header.time_source,
            place_source: place_source(&content.location),
            location: content.location.clone(),
            distance_m: distance,
            camera: content.camera.clone(),
            confidence: content.confidence,
            crop_held,
            signature: problem.is_none(),
            signature_problem: problem,
        })
    }

    /// Of the node's certificates `held`, those that took effect, as
    /// (first seq, key).
    fn key_ranges_of(
        &self,
        device: &DeviceId,
        held: Vec<crate::store::NodeCert>,
    ) -> Result<KeyRanges, SearchError> {
        let mut out = Vec::new();
        for c in held {
            let Some(from) = c.effective_from else {
                continue;
            };
            let cached = self
                .keys
                .lock()
                .map_err(|_| poisoned())?
                .get(&c.serial)
                .copied();
            let key = match cached {
                Some(k) => k,
                None => {
                    let k = self
                        .anchor
                        .check_device_der(&c.der)
                        .ok()
                        .filter(|d| d.name == *device)
                        .map(|d| d.key);
                    self.keys
                        .lock()
                        .map_err(|_| poisoned())?
                        .insert(c.serial.clone(), k);
                    k
                }
            };
            out.push((from, key));
        }
        out.sort_by_key(|(from, _)| *from);
        Ok(out)
    }
}

/// Why `entry` does not verify under `key` as entry of `device`; `None`
/// when it does (header signature and content commitment).
fn problem(
    device: &DeviceId,
    entry: &SignedEntry,
    key: &Result<PublicKey, String>,
) -> Option<String> {
    if entry.header.device != *device {
        return Some(format!("the entry names node {}", entry.header.device));
    }
    match key {
        Err(why) => Some(why.clone()),
        Ok(key) if !entry.signature_valid(key) => {
            Some("the header signature does not verify".to_owned())
        }
        Ok(_) if !entry.body_matches() => {
            Some("the content does not match the signed commitment".to_owned())
        }
        Ok(_) => None,
    }
}

fn poisoned() -> SearchError {
    SearchError::Store(StoreError::Panicked("a search lock was poisoned".into()))
}

fn e7(deg: f64) -> i32 {
    (deg * 1e7).round() as i32
}

/// A read's place as 1e-7 degree integers (lat, lon), if it has coordinates.
pub fn coordinates(loc: &Location) -> Option<(i32, i32)> {
    match loc {
        Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
            Some((*lat_e7, *lon_e7))
        }
        Location::Site { .. } | Location::Unknown => None,
    }
}

fn place_source(loc: &Location) -> PlaceSource {
    match loc {
        Location::Gps { .. } => PlaceSource::Gps,
        Location::Configured { .. } => PlaceSource::Configured,
        Location::Site { .. } => PlaceSource::Site,
        Location::Unknown => PlaceSource::Unknown,
    }
}

/// The rectangle around a canvass circle (a little larger: rounding).
fn bounding_box(n: &Near) -> GeoBox {
    const M_PER_DEG: f64 = 111_320.0;
    let dlat = n.radius_m / M_PER_DEG * 1.01;
    let cos = n.lat.to_radians().cos().max(0.01);
    let dlon = (n.radius_m / (M_PER_DEG * cos) * 1.01).min(180.0);
    GeoBox {
        lat_min_e7: e7((n.lat - dlat).max(-90.0)),
        lat_max_e7: e7((n.lat + dlat).min(90.0)),
        lon_min_e7: e7((n.lon - dlon).max(-180.0)),
        lon_max_e7: e7((n.lon + dlon).min(180.0)),
    }
}

#[cfg(test)]
mod tests;
