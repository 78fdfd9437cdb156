//! The bulk lists this edge holds: one signed generation per source, kept
//! as `hotlists/<source>.gen` under the data dir. Each carries the
//! certificate of the hub's hotlist key that signed it, checked against the
//! deployment's CA (issued for hotlists alone) whenever it is received or
//! loaded. A generation signed before the hub had a key per purpose
//! (format 1) no longer verifies: it is left out at start, and the hub
//! sends the list whole.
//!
//! Invariants: a file is written to a temporary name, synced, and renamed
//! over the old one (then the directory is synced), so a crash leaves the
//! old generation or the new one, never half of one. The in-memory set is
//! replaced whole ([`Generations::watch`] publishes a new `Arc<Vec<…>>`), so
//! a matcher never sees an empty or half list. Nothing unverified is kept:
//! every generation, received or loaded, passes the certificate and
//! signature checks first. A file that fails at start is logged and left out (the list
//! counts as missing, so the hub sends it whole on the next connection).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alpr_shared::cert::TrustAnchor;
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
    /// The deployment's CA: generations are signed by a hotlist key it
    /// certified.
    anchor: TrustAnchor,
    state: Mutex<State>,
    tx: watch::Sender<GenerationSet>,
}

struct State {
    lists: BTreeMap<String, Arc<Generation>>,
}

impl std::fmt::Debug for Generations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations")
            .field("dir", &self.inner.dir)
            .field("held", &self.held())
            .finish()
    }
}

/// Where the hub's TLS key was kept when it signed the lists (before the
/// hub had a key per purpose); removed at start.
const OLD_HUB_KEY_FILE: &str = "hub.key";

impl Generations {
    /// Open (creating) `data_dir/hotlists` and load every generation in it
    /// that verifies under `anchor`.
    pub fn open(data_dir: &Path, anchor: TrustAnchor) -> anyhow::Result<Generations> {
        let dir = data_dir.join("hotlists");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join(OLD_HUB_KEY_FILE));
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
            match load(&path, source, &anchor) {
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
                anchor,
                state: Mutex::new(State { lists }),
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

    /// Apply the hub's delta from generation `from` of `source` to `to`:
    /// the result must verify under a hotlist key the CA certified and be
    /// generation `to` of `source`. Stored, then swapped in. Returns the
    /// new generation.
    pub fn apply_delta(
        &self,
        source: &str,
        from: u64,
        to: u64,
        delta_bytes: &[u8],
    ) -> anyhow::Result<u64> {
        let old = self
            .get(source)
            .filter(|g| g.info().number == from)
            .with_context(|| {
                format!("a delta from generation {from} of {source}, which this edge does not hold")
            })?;
        let new = delta::apply(&old, delta_bytes, &self.inner.anchor)
            .with_context(|| format!("applying the delta of {source} {from} → {to}"))?;
        self.install(source, to, new)
    }

    /// Take generation `generation` of `source` whole (its stored bytes):
    /// checked against the CA, stored, swapped in.
    pub fn apply_full(&self, source: &str, generation: u64, bytes: Vec<u8>) -> anyhow::Result<u64> {
        let g = Generation::open(bytes, &self.inner.anchor)
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

fn load(path: &Path, source: &str, anchor: &TrustAnchor) -> anyhow::Result<Generation> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_GENERATION_BYTES {
        bail!("{len} bytes is over the {MAX_GENERATION_BYTES}-byte limit");
    }
    let bytes = std::fs::read(path)?;
    let g = Generation::open(bytes, anchor)?;
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
    use alpr_shared::cert::KeyPurpose;
    use alpr_shared::hotlist::generation::GenerationInfo;
    use alpr_shared::hotlist::{sample, ListSettings};
    use alpr_shared::signer::dev::Deployment;
    use alpr_shared::signer::{HotlistSigning, HubKey};
    use alpr_shared::types::{Hash32, UnixMillis};

    fn generation(
        source: &str,
        number: u64,
        rows: usize,
        key: &HubKey<HotlistSigning>,
    ) -> Generation {
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
        let d = Deployment::new().map_err(anyhow::Error::msg)?;
        let hub: HubKey<HotlistSigning> = d.key("hub").map_err(anyhow::Error::msg)?;
        let g = Generations::open(dir.path(), d.anchor.clone())?;
        assert!(g.current().is_empty());
        let mut rx = g.watch();
        let one = generation("ncic", 1, 300, &hub);
        g.apply_full("ncic", 1, one.bytes().to_vec())?;
        g.apply_full(
            "ca-svs",
            1,
            generation("ca-svs", 1, 50, &hub).bytes().to_vec(),
        )?;
        assert!(rx.has_changed()?);
        assert_eq!(rx.borrow_and_update().len(), 2);
        // A delta to generation 2, checked against the CA.
        let two = generation("ncic", 2, 300, &hub);
        let delta = delta::diff(&one, &two);
        assert_eq!(g.apply_delta("ncic", 1, 2, &delta)?, 2);
        assert_eq!(
            g.held(),
            [("ca-svs".to_string(), 1), ("ncic".to_string(), 2)]
        );
        drop(g);

        // Loaded again at start, checked against the CA.
        let g = Generations::open(dir.path(), d.anchor.clone())?;
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
        let g = Generations::open(dir.path(), d.anchor.clone())?;
        assert_eq!(g.held(), [("ca-svs".to_string(), 1)]);
        Ok(())
    }

    #[test]
    fn nothing_unverified_or_mislabelled_is_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = Deployment::new().map_err(anyhow::Error::msg)?;
        let hub: HubKey<HotlistSigning> = d.key("hub").map_err(anyhow::Error::msg)?;
        let g = Generations::open(dir.path(), d.anchor.clone())?;
        // Signed by another deployment's hotlist key.
        let theirs = Deployment::new().map_err(anyhow::Error::msg)?;
        let other: HubKey<HotlistSigning> = theirs.key("hub").map_err(anyhow::Error::msg)?;
        let forged = generation("ncic", 1, 100, &other);
        assert!(g.apply_full("ncic", 1, forged.bytes().to_vec()).is_err());
        // Signed by this deployment's key of another purpose: its TLS key,
        // its policy key.
        let (tls_key, tls_der) = d.tls().map_err(anyhow::Error::msg)?;
        let (policy_key, policy_der) = d
            .secret_of(KeyPurpose::Policy)
            .map_err(anyhow::Error::msg)?;
        for (key, der) in [(tls_key, tls_der), (policy_key, policy_der)] {
            let wrong: HubKey<HotlistSigning> = HubKey::unchecked(key, &der)?;
            let forged = generation("ncic", 1, 100, &wrong);
            let e = g
                .apply_full("ncic", 1, forged.bytes().to_vec())
                .expect_err("a list signed with a key of another purpose");
            assert!(
                format!("{e:#}").contains("not for signing hotlist"),
                "{e:#}"
            );
        }
        // The hub's, but sent as another list or another number.
        let real = generation("ncic", 1, 100, &hub);
        assert!(g.apply_full("ca-svs", 1, real.bytes().to_vec()).is_err());
        assert!(g.apply_full("ncic", 2, real.bytes().to_vec()).is_err());
        // A delta from a generation not held.
        assert!(g.apply_delta("ncic", 1, 2, b"junk").is_err());
        assert!(g.held().is_empty());
        assert!(!dir.path().join("hotlists/ncic.gen").exists());
        // A bad delta leaves the held generation in force.
        g.apply_full("ncic", 1, real.bytes().to_vec())?;
        assert!(g.apply_delta("ncic", 1, 2, b"junk").is_err());
        assert_eq!(g.held(), [("ncic".to_string(), 1)]);
        Ok(())
    }

    /// A list stored before the hub had a key per purpose (format 1) no
    /// longer verifies: it is left out at start (the hub sends it whole),
    /// and the old stored hub key goes.
    #[test]
    fn a_list_signed_with_the_single_hub_key_is_left_out_at_start() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let lists = dir.path().join("hotlists");
        std::fs::create_dir_all(&lists)?;
        let v1 = hex::decode(
            include_str!("../../../shared/src/hotlist/testdata/generation-v1.hex").trim(),
        )?;
        std::fs::write(lists.join("ncic.gen"), v1)?;
        std::fs::write(lists.join(OLD_HUB_KEY_FILE), "00")?;
        let d = Deployment::new().map_err(anyhow::Error::msg)?;
        let g = Generations::open(dir.path(), d.anchor.clone())?;
        assert!(g.held().is_empty());
        assert!(!lists.join(OLD_HUB_KEY_FILE).exists());
        Ok(())
    }
}
