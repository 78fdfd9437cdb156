//! The bulk lists this edge holds: one signed generation per source, kept
//! as `hotlists/<source>.gen` under the data dir, beside the hub's key that
//! signed them (`hotlists/hub.key`, learnt from the hub's TLS certificate).
//!
//! Invariants: a file is written to a temporary name, synced, and renamed
//! over the old one (then the directory is synced), so a crash leaves the
//! old generation or the new one, never half of one. The in-memory set is
//! replaced whole ([`Generations::watch`] publishes a new `Arc<Vec<…>>`), so
//! a matcher never sees an empty or half list. Nothing unverified is kept:
//! every generation, received or loaded, passes the hub's signature check
//! first. A file that fails at start is logged and left out (the list
//! counts as missing, so the hub sends it whole on the next connection).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alpr_shared::crypto::PublicKey;
use alpr_shared::hotlist::delta;
use alpr_shared::hotlist::generation::Generation;
use alpr_shared::wire::{valid_source_name, MAX_GENERATION_BYTES};
use anyhow::{bail, Context};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// The current generations, one per source, in source order.
pub type GenerationSet = Arc<Vec<Arc<Generation>>>;

/// The edge's store of bulk lists; cheap to clone. Its methods do file
/// I/O and signature checks: call them from a blocking task.
#[derive(Clone)]
pub struct Generations {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    tx: watch::Sender<GenerationSet>,
}

struct State {
    lists: BTreeMap<String, Arc<Generation>>,
    hub_key: Option<PublicKey>,
}

impl std::fmt::Debug for Generations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations")
            .field("dir", &self.inner.dir)
            .field("held", &self.held())
            .finish()
    }
}

const HUB_KEY_FILE: &str = "hub.key";

impl Generations {
    /// Open (creating) `data_dir/hotlists` and load every generation in it
    /// that verifies under the stored hub key.
    pub fn open(data_dir: &Path) -> anyhow::Result<Generations> {
        let dir = data_dir.join("hotlists");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let hub_key = read_hub_key(&dir);
        let mut lists = BTreeMap::new();
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for e in entries {
            let path = e
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                // A write that did not finish: the old file still stands.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(source) = name.strip_suffix(".gen") else {
                continue;
            };
            if !valid_source_name(source) {
                warn!(file = %path.display(), "not a bulk list file name; ignored");
                continue;
            }
            match load(&path, source, hub_key.as_ref()) {
                Ok(g) => {
                    info!(
                        source,
                        generation = g.info().number,
                        rows = g.len(),
                        "bulk list loaded"
                    );
                    lists.insert(source.to_owned(), Arc::new(g));
                }
                Err(e) => error!(
                    file = %path.display(),
                    error = format!("{e:#}"),
                    "bulk list not loaded: it counts as missing and the hub sends it whole"
                ),
            }
        }
        let (tx, _) = watch::channel(Arc::new(lists.values().cloned().collect()));
        Ok(Generations {
            inner: Arc::new(Inner {
                dir,
                state: Mutex::new(State { lists, hub_key }),
                tx,
            }),
        })
    }

    /// The current generations; a new set is published after each swap.
    pub fn watch(&self) -> watch::Receiver<GenerationSet> {
        self.inner.tx.subscribe()
    }

    /// The current generations now.
    pub fn current(&self) -> GenerationSet {
        self.inner.tx.borrow().clone()
    }

    /// (source, generation) of each list held.
    pub fn held(&self) -> Vec<(String, u64)> {
        self.lock()
            .map(|s| {
                s.lists
                    .iter()
                    .map(|(k, g)| (k.clone(), g.info().number))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, source: &str) -> Option<Arc<Generation>> {
        self.lock().ok()?.lists.get(source).cloned()
    }

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, State>> {
        self.inner
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("the bulk list store's lock is poisoned"))
    }

    /// The hub's key (from its certificate, checked by TLS): what every
    /// generation must be signed with. Stored, so lists verify at start.
    pub fn set_hub_key(&self, key: PublicKey) -> anyhow::Result<()> {
        let mut s = self.lock()?;
        if s.hub_key.as_ref().map(|k| k.to_bytes()) == Some(key.to_bytes()) {
            return Ok(());
        }
        write_atomic(
            &self.inner.dir,
            HUB_KEY_FILE,
            hex::encode(key.to_bytes()).as_bytes(),
        )?;
        s.hub_key = Some(key);
        Ok(())
    }

    /// Apply the hub's delta from generation `from` of `source` to `to`:
    /// the result must verify under the hub's key and be generation `to`
    /// of `source`. Stored, then swapped in. Returns the new generation.
    pub fn apply_delta(
        &self,
        source: &str,
        from: u64,
        to: u64,
        delta_bytes: &[u8],
        hub: &PublicKey,
    ) -> anyhow::Result<u64> {
        let old = self
            .get(source)
            .filter(|g| g.info().number == from)
            .with_context(|| {
                format!("a delta from generation {from} of {source}, which this edge does not hold")
            })?;
        let new = delta::apply(&old, delta_bytes, hub)
            .with_context(|| format!("applying the delta of {source} {from} → {to}"))?;
        self.install(source, to, new)
    }

    /// Take generation `generation` of `source` whole (its stored bytes):
    /// checked against the hub's key, stored, swapped in.
    pub fn apply_full(
        &self,
        source: &str,
        generation: u64,
        bytes: Vec<u8>,
        hub: &PublicKey,
    ) -> anyhow::Result<u64> {
        let g = Generation::open(bytes, hub)
            .with_context(|| format!("generation {generation} of {source}"))?;
        self.install(source, generation, g)
    }

    fn install(&self, source: &str, number: u64, g: Generation) -> anyhow::Result<u64> {
        if !valid_source_name(source) {
            bail!("{source:?} is not a bulk list name");
        }
        let info = g.info();
        if info.source != source || info.number != number {
            bail!(
                "the hub sent {} generation {} as {source} generation {number}",
                info.source,
                info.number
            );
        }
        let mut s = self.lock()?;
        if let Some(held) = s.lists.get(source) {
            if held.info().number >= number {
                // Already as new (a duplicate send): nothing to do.
                return Ok(held.info().number);
            }
        }
        write_atomic(&self.inner.dir, &format!("{source}.gen"), g.bytes())?;
        s.lists.insert(source.to_owned(), Arc::new(g));
        let set: GenerationSet = Arc::new(s.lists.values().cloned().collect());
        self.inner.tx.send_replace(set);
        Ok(number)
    }
}

fn read_hub_key(dir: &Path) -> Option<PublicKey> {
    let path = dir.join(HUB_KEY_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let key = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| PublicKey::from_bytes(&b).ok());
    if key.is_none() {
        error!(file = %path.display(), "the stored hub key is not a key; bulk lists are fetched again");
    }
    key
}

fn load(path: &Path, source: &str, hub: Option<&PublicKey>) -> anyhow::Result<Generation> {
    let Some(hub) = hub else {
        bail!("no hub key stored to check it with");
    };
    let len = std::fs::metadata(path)?.len();
    if len > MAX_GENERATION_BYTES {
        bail!("{len} bytes is over the {MAX_GENERATION_BYTES}-byte limit");
    }
    let bytes = std::fs::read(path)?;
    let g = Generation::open(bytes, hub)?;
    if g.info().source != source {
        bail!("the file holds list {}", g.info().source);
    }
    Ok(g)
}

/// Write `name` in `dir` so that a crash leaves the old or the new file
/// whole: temporary file, fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::SecretKey;
    use alpr_shared::hotlist::generation::GenerationInfo;
    use alpr_shared::hotlist::{sample, ListSettings};
    use alpr_shared::types::{Hash32, UnixMillis};

    fn generation(source: &str, number: u64, rows: usize, key: &SecretKey) -> Generation {
        let info = GenerationInfo {
            source: source.into(),
            number,
            issued_at: UnixMillis(1_795_868_054_000 + number),
            source_sha256: Hash32([number as u8; 32]),
            source_rows: rows as u64,
            rows: 0,
            categories: Vec::new(),
            settings: ListSettings::default(),
        };
        let mut entries = sample::entries(rows, 3);
        entries.truncate(rows - number as usize);
        Generation::build(info, entries, key).expect("builds")
    }

    #[test]
    fn lists_survive_a_restart_and_a_damaged_one_is_left_out() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let hub = SecretKey::from_bytes(&[9; 32]);
        let g = Generations::open(dir.path())?;
        assert!(g.current().is_empty());
        let mut rx = g.watch();
        g.set_hub_key(hub.public())?;
        let one = generation("ncic", 1, 300, &hub);
        g.apply_full("ncic", 1, one.bytes().to_vec(), &hub.public())?;
        g.apply_full(
            "ca-svs",
            1,
            generation("ca-svs", 1, 50, &hub).bytes().to_vec(),
            &hub.public(),
        )?;
        assert!(rx.has_changed()?);
        assert_eq!(rx.borrow_and_update().len(), 2);
        // A delta to generation 2, checked against the hub's key.
        let two = generation("ncic", 2, 300, &hub);
        let d = delta::diff(&one, &two);
        assert_eq!(g.apply_delta("ncic", 1, 2, &d, &hub.public())?, 2);
        assert_eq!(
            g.held(),
            [("ca-svs".to_string(), 1), ("ncic".to_string(), 2)]
        );
        drop(g);

        // Loaded again at start, checked against the stored hub key.
        let g = Generations::open(dir.path())?;
        assert_eq!(
            g.held(),
            [("ca-svs".to_string(), 1), ("ncic".to_string(), 2)]
        );
        assert_eq!(g.get("ncic").map(|l| l.len()), Some(two.len()));
        drop(g);

        // One damaged file: that list is missing, the other still there.
        let path = dir.path().join("hotlists/ncic.gen");
        let mut bytes = std::fs::read(&path)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, bytes)?;
        let g = Generations::open(dir.path())?;
        assert_eq!(g.held(), [("ca-svs".to_string(), 1)]);
        Ok(())
    }

    #[test]
    fn nothing_unverified_or_mislabelled_is_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let hub = SecretKey::from_bytes(&[9; 32]);
        let other = SecretKey::from_bytes(&[10; 32]);
        let g = Generations::open(dir.path())?;
        // Signed by another key.
        let forged = generation("ncic", 1, 100, &other);
        assert!(g
            .apply_full("ncic", 1, forged.bytes().to_vec(), &hub.public())
            .is_err());
        // The hub's, but sent as another list or another number.
        let real = generation("ncic", 1, 100, &hub);
        assert!(g
            .apply_full("ca-svs", 1, real.bytes().to_vec(), &hub.public())
            .is_err());
        assert!(g
            .apply_full("ncic", 2, real.bytes().to_vec(), &hub.public())
            .is_err());
        // A delta from a generation not held.
        assert!(g.apply_delta("ncic", 1, 2, b"junk", &hub.public()).is_err());
        assert!(g.held().is_empty());
        assert!(!dir.path().join("hotlists/ncic.gen").exists());
        // A bad delta leaves the held generation in force.
        g.apply_full("ncic", 1, real.bytes().to_vec(), &hub.public())?;
        assert!(g.apply_delta("ncic", 1, 2, b"junk", &hub.public()).is_err());
        assert_eq!(g.held(), [("ncic".to_string(), 1)]);
        Ok(())
    }
}
