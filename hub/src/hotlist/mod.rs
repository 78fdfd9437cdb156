//! Bulk hotlists at the hub: list files in, signed generations out.
//!
//! Each bulk list is a *source* configured in `hub.toml`
//! (`[[hotlist.sources]]`: its name, file format, match settings); files
//! for unknown sources are refused. [`HotlistService::import`] parses a
//! file ([`alpr_shared::hotlist::import`]), drops the categories the policy
//! excludes, refuses a file that would change more than `max_change` of
//! the list (unless forced), builds and signs a new immutable
//! [`Generation`] with the hub's key, stores it through [`HubStorage`]
//! (table `hotlist-gen-v1`, the last `keep` of each source, plus an
//! import record per generation in `hotlist-import-v1`), and only then
//! publishes the latest generation of every source on
//! [`HotlistService::watch`]: the sync side pushes it (or a
//! [`HotlistService::delta`] from what a node holds) to every edge.
//!
//! Invariant: what is published is durable, and numbers of a source only
//! grow (a number is never reused, even after its bytes are dropped, or
//! after a restore from a backup: a node that holds a newer generation
//! shows its signed header, [`HotlistService::learn`], and the next import
//! goes past it).
//!
//! The entries people add by hand (often partial plates) are not a bulk
//! list: they live in an automerge document, [`local`].

pub mod local;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::PublicKey;
use alpr_shared::hotlist::generation::{Generation, GenerationError, GenerationInfo, MAGIC_V1};
use alpr_shared::hotlist::import::{self, BadRow, Format, ImportError, ParseOptions, Parsed};
use alpr_shared::hotlist::{AlertLevel, Category, HotEntry, ListSettings, MatchStrategy};
use alpr_shared::signer::{HotlistSigning, HubKey};
use alpr_shared::types::UnixMillis;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, OnceCell};

use crate::store::{HubStorage, StoreError, WriteOp};

mod config;
pub use config::{valid_source_name, HotlistConfig, SourceConfig, StrategyName};

/// The latest generation of each configured source (sources never
/// imported are absent), in configuration order.
pub type Current = Arc<Vec<Arc<Generation>>>;

/// Bad rows an import report lists (all are counted).
pub const REPORTED_BAD_ROWS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HotlistError {
    #[error("no hotlist source {0:?} is configured (hub.toml [[hotlist.sources]])")]
    UnknownSource(String),
    #[error("the file is {size} bytes; at most {max} are accepted (hotlist.max_file_bytes)")]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    Parse(#[from] ImportError),
    /// Refused as it stands; `--force` would take it.
    #[error("{0} (import with --force to take it anyway)")]
    Refused(String),
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored import record does not decode: {0}")]
    Corrupt(String),
    #[error("the import did not finish: {0}")]
    Join(String),
    /// A generation header a node showed is not one this hub signed.
    #[error("the list header the node shows is not this hub's: {0}")]
    NotOurs(GenerationError),
}

/// What a person asks to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub source: String,
    /// The file's format; the source's when `None`.
    pub format: Option<Format>,
    pub columns: import::Columns,
    /// Category of every row for `ca-doj` (else the source's).
    pub category: Option<Category>,
    /// Take a file whose footer count is wrong or that changes more than
    /// `max_change` of the list.
    pub force: bool,
    /// Who imports (username).
    pub user: String,
    /// Categories the policy excludes: their rows are dropped and counted.
    pub excluded: Vec<Category>,
}

/// What is kept about each generation (table `hotlist-import-v1`) and
/// answered for an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub info: GenerationInfo,
    pub format: Format,
    pub imported_by: String,
    /// Size of the signed generation.
    pub bytes: u64,
    /// Rows skipped as bad (the first ones are in the import report).
    pub bad_rows: u64,
    /// Rows dropped for an excluded category, by category.
    pub excluded: Vec<(Category, u64)>,
    /// Changes against the previous generation.
    pub added: u64,
    pub removed: u64,
    /// Whether `--force` took it past a check.
    pub forced: bool,
    /// Warnings the parser gave (a wrong footer, when forced).
    pub warnings: Vec<String>,
}

/// The answer to an import.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub record: GenerationRecord,
    /// The first [`REPORTED_BAD_ROWS`] bad rows, with their line numbers.
    pub bad: Vec<BadRow>,
    /// Size of the delta from the previous generation, if there was one.
    pub delta_bytes: Option<u64>,
    /// Time to parse, build, sign and store.
    pub took_ms: u64,
}

/// A generation as `hub hotlist generations` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationView {
    pub record: GenerationRecord,
    /// Whether its bytes are still kept (deltas from it exist).
    pub kept: bool,
}

/// One source as `hub hotlist list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceView {
    pub name: String,
    pub format: Format,
    pub settings: ListSettings,
    /// Its latest generation, if any was imported.
    pub current: Option<GenerationInfo>,
}

type DeltaKey = (String, u64, u64);
/// A delta being computed or computed (`None`: cannot be made).
type DeltaCell = Arc<OnceCell<Option<Arc<Vec<u8>>>>>;

/// What the hub's generations are signed and checked with.
#[derive(Clone)]
pub struct HotlistKeys {
    /// Signs new generations.
    pub key: Arc<HubKey<HotlistSigning>>,
    /// Stored generations count if a hotlist key it certified signed them
    /// (another hub's on the same database too).
    pub anchor: TrustAnchor,
    /// The key that signed format-1 generations (the hub's TLS key before
    /// it had a key per purpose): those found stored are checked under it
    /// and signed again with `key` as they load. `None`: refused.
    pub legacy: Option<PublicKey>,
}

impl HotlistKeys {
    /// A hotlist key and its CA made in memory (benchmarks and tests).
    #[doc(hidden)]
    pub fn throwaway() -> anyhow::Result<Self> {
        let d = alpr_shared::signer::dev::Deployment::new().map_err(anyhow::Error::msg)?;
        Ok(HotlistKeys {
            key: Arc::new(d.key("hub").map_err(anyhow::Error::msg)?),
            anchor: d.anchor.clone(),
            legacy: None,
        })
    }

    /// A stored generation, checked: under the CA, or (format 1) under the
    /// legacy key and then signed again with the hotlist key, unchanged
    /// but for its header (what edges get; the stored bytes stay as they
    /// were).
    pub fn open(&self, bytes: Vec<u8>) -> Result<Generation, GenerationError> {
        match &self.legacy {
            Some(legacy) if bytes.starts_with(MAGIC_V1) => {
                let g = Generation::resign_format1(&bytes, legacy, &self.key)?;
                tracing::warn!(
                    source = %g.info().source,
                    generation = g.info().number,
                    "a generation signed with the hub's single key: checked under it and signed again with the hotlist key"
                );
                Ok(g)
            }
            _ => Generation::open(bytes, &self.anchor),
        }
    }
}

struct Inner {
    storage: Arc<dyn HubStorage>,
    keys: HotlistKeys,
    config: HotlistConfig,
    tx: watch::Sender<Current>,
    /// One import at a time: numbers and change checks see the previous
    /// import's result.
    importing: Mutex<()>,
    /// Deltas computed (or being computed: concurrent askers wait for one
    /// computation), to the current generation of their source only.
    deltas: std::sync::Mutex<HashMap<DeltaKey, DeltaCell>>,
}

/// The hub's bulk hotlists. Cheap to clone.
#[derive(Clone)]
pub struct HotlistService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HotlistService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HotlistService({} lists)", self.current().len())
    }
}

impl HotlistService {
    /// Load the latest generation of each configured source (checked
    /// against the CA, [`HotlistKeys`]). Blocking (reads the store).
    pub fn open(
        storage: Arc<dyn HubStorage>,
        keys: HotlistKeys,
        config: HotlistConfig,
    ) -> Result<Self, HotlistError> {
        config
            .validate()
            .map_err(|e| HotlistError::Parse(ImportError::Invalid(e)))?;
        let mut current = Vec::new();
        for s in &config.sources {
            let records = storage.generation_records(&s.name)?;
            if let Some((n, _, true)) = records.last() {
                if let Some(bytes) = storage.generation_bytes(&s.name, *n)? {
                    current.push(Arc::new(keys.open(bytes)?));
                }
            }
        }
        let (tx, _) = watch::channel(Arc::new(current));
        Ok(HotlistService {
            inner: Arc::new(Inner {
                storage,
                keys,
                config,
                tx,
                importing: Mutex::new(()),
                deltas: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration (sources and limits).
    pub fn config(&self) -> &HotlistConfig {
        &self.inner.config
    }

    /// The CA generations verify under.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.inner.keys.anchor
    }

    /// The latest generation of each source.
    pub fn current(&self) -> Current {
        self.inner.tx.borrow().clone()
    }

    /// The latest generations after each durable import (the current ones
    /// first).
    pub fn watch(&self) -> watch::Receiver<Current> {
        self.inner.tx.subscribe()
    }

    /// The latest generation of `source`.
    pub fn latest(&self, source: &str) -> Option<Arc<Generation>> {
        self.current()
            .iter()
            .find(|g| g.info().source == source)
            .cloned()
    }

    /// Generation `number` of `source`, if still kept (the current one from
    /// memory, older ones read from the store and checked).
    pub async fn generation(
        &self,
        source: &str,
        number: u64,
    ) -> Result<Option<Arc<Generation>>, HotlistError> {
        if let Some(g) = self.latest(source) {
            if g.info().number == number {
                return Ok(Some(g));
            }
        }
        if self.inner.config.source(source).is_none() {
            return Ok(None);
        }
        let storage = self.inner.storage.clone();
        let keys = self.inner.keys.clone();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || match storage.generation_bytes(&source, number)? {
            Some(bytes) => Ok(Some(Arc::new(keys.open(bytes)?))),
            None => Ok(None),
        })
        .await
        .map_err(|e| HotlistError::Join(e.to_string()))?
    }

    /// The delta that takes generation `from` of `source` to `to`; `None`
    /// when either is no longer kept or unknown, or `from` is not older
    /// (then send the whole generation). Computed once, then cached while
    /// `to` is the current generation.
    pub async fn delta(
        &self,
        source: &str,
        from: u64,
        to: u64,
    ) -> Result<Option<Arc<Vec<u8>>>, HotlistError> {
        if from >= to || self.inner.config.source(source).is_none() {
            return Ok(None);
        }
        let cell = {
            let mut map = match self.inner.deltas.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.entry((source.to_owned(), from, to))
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let got = cell
            .get_or_try_init(|| async {
                let (Some(old), Some(new)) = (
                    self.generation(source, from).await?,
                    self.generation(source, to).await?,
                ) else {
                    return Ok::<_, HotlistError>(None);
                };
                let d = tokio::task::spawn_blocking(move || {
                    alpr_shared::hotlist::delta::diff(&old, &new)
                })
                .await
                .map_err(|e| HotlistError::Join(e.to_string()))?;
                Ok(Some(Arc::new(d)))
            })
            .await?;
        Ok(got.clone())
    }

    /// Another hub process on the same database may have imported newer
    /// generations: they become current and are published (the sync side
    /// sends them to this hub's nodes). Returns the (source, generation)
    /// pairs that came.
    pub async fn reload(&self) -> Result<Vec<(String, u64)>, HotlistError> {
        let _one = self.inner.importing.lock().await;
        let current = self.current();
        let inner = self.inner.clone();
        let newer = tokio::task::spawn_blocking(move || {
            let mut newer = Vec::new();
            for s in &inner.config.sources {
                let held = current
                    .iter()
                    .find(|g| g.info().source == s.name)
                    .map(|g| g.info().number);
                let records = inner.storage.generation_records(&s.name)?;
                let Some((n, _, true)) = records.last() else {
                    continue;
                };
                if held.is_some_and(|h| h >= *n) {
                    continue;
                }
                if let Some(bytes) = inner.storage.generation_bytes(&s.name, *n)? {
                    newer.push(Arc::new(inner.keys.open(bytes)?));
                }
            }
            Ok::<_, HotlistError>(newer)
        })
        .await
        .map_err(|e| HotlistError::Join(e.to_string()))??;
        if newer.is_empty() {
            return Ok(Vec::new());
        }
        let came: Vec<(String, u64)> = newer
            .iter()
            .map(|g| (g.info().source.clone(), g.info().number))
            .collect();
        self.inner.tx.send_modify(|cur| {
            let mut next: Vec<Arc<Generation>> = Vec::with_capacity(cur.len() + newer.len());
            for s in &self.inner.config.sources {
                if let Some(g) = newer.iter().find(|g| g.info().source == s.name) {
                    next.push(g.clone());
                } else if let Some(g) = cur.iter().find(|g| g.info().source == s.name) {
                    next.push(g.clone());
                }
            }
            *cur = Arc::new(next);
        });
        Ok(came)
    }

    /// The highest generation number of `source` this hub knows it
    /// signed: its latest import, or one a node showed it (0 if none).
    async fn highest_number(&self, source: &str) -> Result<u64, HotlistError> {
        let storage = self.inner.storage.clone();
        let name = source.to_owned();
        tokio::task::spawn_blocking(move || {
            let imported = storage
                .generation_records(&name)?
                .last()
                .map_or(0, |(n, _, _)| *n);
            Ok(imported.max(storage.generation_floor(&name)?))
        })
        .await
        .map_err(|e| HotlistError::Join(e.to_string()))?
    }

    /// A node showed the signed header of a generation it holds, having
    /// said it holds a newer one than the hub's: the hub was restored
    /// from a backup and lost the generations it made since. If a hotlist
    /// key of this deployment signed it (certified by the CA), it is of a
    /// configured list and newer than any number the hub knows for it,
    /// the number is kept, so the list's next generation goes past what
    /// edges hold (the edges keep their newer copy until then); returns
    /// (source, number). A header no hotlist key of this deployment signed
    /// changes nothing ([`HotlistError::NotOurs`]).
    pub async fn learn(&self, header: &[u8]) -> Result<Option<(String, u64)>, HotlistError> {
        let info = alpr_shared::hotlist::generation::verify_header(header, &self.inner.keys.anchor)
            .map_err(HotlistError::NotOurs)?;
        if self.inner.config.source(&info.source).is_none() {
            return Ok(None);
        }
        let _one = self.inner.importing.lock().await;
        if info.number <= self.highest_number(&info.source).await? {
            return Ok(None);
        }
        let storage = self.inner.storage.clone();
        let op = WriteOp::GenerationFloor {
            source: info.source.clone(),
            number: info.number,
        };
        tokio::task::spawn_blocking(move || storage.commit(vec![op]))
            .await
            .map_err(|e| HotlistError::Join(e.to_string()))??;
        Ok(Some((info.source, info.number)))
    }

    /// Every source with its latest generation.
    pub fn sources(&self) -> Vec<SourceView> {
        let current = self.current();
        self.inner
            .config
            .sources
            .iter()
            .map(|s| SourceView {
                name: s.name.clone(),
                format: s.format,
                settings: s.settings(),
                current: current
                    .iter()
                    .find(|g| g.info().source == s.name)
                    .map(|g| g.info().clone()),
            })
            .collect()
    }

    /// Every generation of `source` ever imported, oldest first.
    pub async fn history(&self, source: &str) -> Result<Vec<GenerationView>, HotlistError> {
        if self.inner.config.source(source).is_none() {
            return Err(HotlistError::UnknownSource(source.to_owned()));
        }
        let storage = self.inner.storage.clone();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || {
            storage
                .generation_records(&source)?
                .into_iter()
                .map(|(_, bytes, kept)| {
                    Ok(GenerationView {
                        record: decode_record(&bytes)?,
                        kept,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| HotlistError::Join(e.to_string()))?
    }

    /// Parse, check, build, sign and store a new generation of a source,
    /// then publish it. Nothing changes when it is refused.
    pub async fn import(
        &self,
        req: ImportRequest,
        file: Vec<u8>,
    ) -> Result<ImportReport, HotlistError> {
        let source = self
            .inner
            .config
            .source(&req.source)
            .cloned()
            .ok_or_else(|| HotlistError::UnknownSource(req.source.clone()))?;
        let max = self.inner.config.max_file_bytes;
        if file.len() > max {
            return Err(HotlistError::TooLarge {
                size: file.len(),
                max,
            });
        }
        let _one = self.inner.importing.lock().await;
        let previous = self.latest(&source.name);
        let next_number = self.highest_number(&source.name).await? + 1;
        let inner = self.inner.clone();
        let prev = previous.clone();
        let (generation, report) = tokio::task::spawn_blocking(move || {
            build(&inner, &source, req, &file, prev.as_deref(), next_number)
        })
        .await
        .map_err(|e| HotlistError::Join(e.to_string()))??;
        let generation = Arc::new(generation);
        let mut report = report;
        // The delta from the previous generation is what most edges will
        // ask for: computed now, before anyone is told.
        if let Some(prev) = previous {
            let from = prev.info().number;
            let to = generation.info().number;
            let new = generation.clone();
            let d =
                tokio::task::spawn_blocking(move || alpr_shared::hotlist::delta::diff(&prev, &new))
                    .await
                    .map_err(|e| HotlistError::Join(e.to_string()))?;
            report.delta_bytes = Some(d.len() as u64);
            let cell = OnceCell::new_with(Some(Some(Arc::new(d))));
            let mut map = match self.inner.deltas.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            let name = generation.info().source.clone();
            map.retain(|(s, _, t), _| s != &name || *t >= to);
            map.insert((name, from, to), Arc::new(cell));
        }
        let name = generation.info().source.clone();
        self.inner.tx.send_modify(|cur| {
            let mut next: Vec<Arc<Generation>> = Vec::with_capacity(cur.len() + 1);
            for s in &self.inner.config.sources {
                if s.name == name {
                    next.push(generation.clone());
                } else if let Some(g) = cur.iter().find(|g| g.info().source == s.name) {
                    next.push(g.clone());
                }
            }
            *cur = Arc::new(next);
        });
        Ok(report)
    }
}

/// A 64-bit fingerprint of an entry's content, for counting changes.
fn fingerprint(e: &HotEntry) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.plate.hash(&mut h);
    e.state.hash(&mut h);
    for field in e.details() {
        field.hash(&mut h);
    }
    e.category.hash(&mut h);
    h.finish()
}

/// Rows added and removed from `old` to `new` (by content).
fn changes(old: &Generation, new: &[HotEntry]) -> (u64, u64) {
    let before: HashSet<u64> = (0..old.len()).map(|i| fingerprint(&old.entry(i))).collect();
    let after: HashSet<u64> = new.iter().map(fingerprint).collect();
    let added = after.difference(&before).count() as u64;
    let removed = before.difference(&after).count() as u64;
    (added, removed)
}

/// Everything of an import that blocks: parse, check, build, sign, store.
fn build(
    inner: &Inner,
    source: &SourceConfig,
    req: ImportRequest,
    file: &[u8],
    previous: Option<&Generation>,
    number: u64,
) -> Result<(Generation, ImportReport), HotlistError> {
    let started = std::time::Instant::now();
    let format = req.format.unwrap_or(source.format);
    let options = ParseOptions {
        columns: req.columns,
        category: req.category.or(source.category),
        force: req.force,
    };
    let mut parsed: Parsed = import::parse_with(format, file, &options)?;
    let excluded = parsed.exclude(&req.excluded);
    let (added, removed) = match previous {
        Some(old) => changes(old, &parsed.entries),
        None => (parsed.entries.len() as u64, 0),
    };
    let mut forced = !parsed.warnings.is_empty();
    if let Some(old) = previous.filter(|o| !o.is_empty()) {
        let share = (added + removed) as f64 / old.len() as f64;
        if share > inner.config.max_change {
            if !req.force {
                return Err(HotlistError::Refused(format!(
                    "this file would change {:.0}% of list {} ({added} rows added, {removed} removed, \
                     of {}); at most {:.0}% is allowed (hotlist.max_change)",
                    share * 100.0,
                    source.name,
                    old.len(),
                    inner.config.max_change * 100.0
                )));
            }
            forced = true;
        }
    }
    let info = GenerationInfo {
        source: source.name.clone(),
        number,
        issued_at: UnixMillis::now(),
        source_sha256: alpr_shared::crypto::sha256(file),
        source_rows: parsed.rows,
        rows: 0,
        categories: Vec::new(),
        settings: source.settings(),
    };
    let generation = Generation::build(info, std::mem::take(&mut parsed.entries), &inner.keys.key)?;
    let record = GenerationRecord {
        info: generation.info().clone(),
        format,
        imported_by: req.user,
        bytes: generation.bytes().len() as u64,
        bad_rows: parsed.bad_rows,
        excluded,
        added,
        removed,
        forced,
        warnings: parsed.warnings,
    };
    let encoded = postcard::to_allocvec(&record)
        .map_err(|e| HotlistError::Corrupt(format!("encoding the import record: {e}")))?;
    inner.storage.store_generation(
        &source.name,
        number,
        generation.bytes(),
        &encoded,
        inner.config.keep,
    )?;
    parsed.bad.truncate(REPORTED_BAD_ROWS);
    Ok((
        generation,
        ImportReport {
            record,
            bad: parsed.bad,
            delta_bytes: None,
            took_ms: started.elapsed().as_millis() as u64,
        },
    ))
}

fn decode_record(bytes: &[u8]) -> Result<GenerationRecord, HotlistError> {
    postcard::from_bytes(bytes).map_err(|e| HotlistError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests;
