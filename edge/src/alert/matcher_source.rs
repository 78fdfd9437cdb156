//! The seam between the lists a node holds and the matching of its reads:
//! one [`Matcher`] over every active list, rebuilt when an input changes
//! and published on a `watch` (the pipeline takes the latest for each read;
//! a reader never sees a half-built one).
//!
//! Inputs: the bulk generations (`crate::hotlist::generations::Generations`
//! publishes them), the local entries (the store's document) and the
//! categories policy excludes. Whoever holds an input calls the matching
//! `set_*`; each call rebuilds and, after the first value of that input,
//! reports what the new lists match that the old did not: past matches
//! ([`super::back_match`]).

use std::sync::{Arc, Mutex};

use alpr_shared::hotlist::generation::Generation;
use alpr_shared::hotlist::matcher::Matcher;
use alpr_shared::hotlist::{Category, LocalEntry};
use tokio::sync::watch;

#[derive(Default)]
struct Inputs {
    bulk: Vec<Arc<Generation>>,
    local: Vec<LocalEntry>,
    excluded: Vec<Category>,
    /// Whether each input was given once (the first value of an input is
    /// what the node already held at start: no past matches for it).
    bulk_seen: bool,
    local_seen: bool,
}

/// A change of lists: the matcher before and after it.
pub struct ListChange {
    pub old: Arc<Matcher>,
    pub new: Arc<Matcher>,
}

/// Holds the node's current [`Matcher`]; cheap to clone.
#[derive(Clone)]
pub struct MatcherSource {
    tx: Arc<watch::Sender<Arc<Matcher>>>,
    inputs: Arc<Mutex<Inputs>>,
    changes: Arc<watch::Sender<u64>>,
    last_change: Arc<Mutex<Option<ListChange>>>,
}

impl Default for MatcherSource {
    fn default() -> Self {
        Self::new()
    }
}

impl MatcherSource {
    /// No lists yet: matches nothing.
    pub fn new() -> Self {
        let empty = Arc::new(Matcher::new(Vec::new(), Vec::new(), &[]));
        MatcherSource {
            tx: Arc::new(watch::channel(empty).0),
            inputs: Arc::new(Mutex::new(Inputs::default())),
            changes: Arc::new(watch::channel(0).0),
            last_change: Arc::new(Mutex::new(None)),
        }
    }

    /// The current matcher, replaced whole on each change.
    pub fn watch(&self) -> watch::Receiver<Arc<Matcher>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Matcher> {
        self.tx.borrow().clone()
    }

    /// Bumped on each change that may bring new entries (see
    /// [`Self::take_change`]).
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The latest change of lists not yet taken (for past matches).
    pub fn take_change(&self) -> Option<ListChange> {
        self.last_change.lock().ok().and_then(|mut c| c.take())
    }

    /// The latest generation of each bulk source.
    pub fn set_bulk(&self, bulk: Vec<Arc<Generation>>) {
        self.update(|i| {
            i.bulk = bulk;
            std::mem::replace(&mut i.bulk_seen, true)
        });
    }

    /// Every local entry (expired and removed ones are skipped by the
    /// matcher at match time).
    pub fn set_local(&self, local: Vec<LocalEntry>) {
        self.update(|i| {
            i.local = local;
            std::mem::replace(&mut i.local_seen, true)
        });
    }

    /// The categories excluded now.
    pub fn excluded(&self) -> Vec<Category> {
        self.inputs
            .lock()
            .map(|i| i.excluded.clone())
            .unwrap_or_default()
    }

    /// The categories policy excludes (no new entries: never a past match).
    pub fn set_excluded(&self, excluded: Vec<Category>) {
        self.update(|i| {
            i.excluded = excluded;
            false
        });
    }

    /// Follow the bulk generations published on `rx` (the push helper's
    /// `Generations::watch()`) until `cancel`; the value held now first.
    pub fn follow_bulk(
        &self,
        mut rx: watch::Receiver<Arc<Vec<Arc<Generation>>>>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        me.set_bulk(rx.borrow_and_update().to_vec());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                }
                me.set_bulk(rx.borrow_and_update().to_vec());
            }
        })
    }

    /// Follow the local entries: each time `changes` moves (the store's
    /// `watch_local_entries()`), read them again with `read` (e.g. the
    /// store's `local_entries()`), until `cancel`; the entries held now
    /// first.
    pub fn follow_local<F>(
        &self,
        mut changes: watch::Receiver<u64>,
        read: F,
        cancel: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Result<Vec<LocalEntry>, String> + Send + 'static,
    {
        let me = self.clone();
        let load = move |me: &MatcherSource| match read() {
            Ok(entries) => me.set_local(entries),
            Err(e) => {
                tracing::error!(error = %e, "local entries unreadable; the lists keep the last ones")
            }
        };
        changes.borrow_and_update();
        load(&me);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                changes.borrow_and_update();
                load(&me);
            }
        })
    }

    /// Apply `change` (which says whether the input had a value before:
    /// only then can the new lists hold entries new to this node) and
    /// publish the rebuilt matcher. Published under the inputs' lock:
    /// writers of different inputs (the bulk follower, the local entries'
    /// follower, the pipeline's policy check) publish in the order they
    /// changed them, so a matcher built from older inputs never replaces
    /// a newer one.
    fn update(&self, change: impl FnOnce(&mut Inputs) -> bool) {
        let Ok(mut inputs) = self.inputs.lock() else {
            tracing::error!("matcher inputs lock poisoned; lists not updated");
            return;
        };
        let had_before = change(&mut inputs);
        let new = Arc::new(Matcher::new(
            inputs.bulk.clone(),
            inputs.local.clone(),
            &inputs.excluded,
        ));
        let old = self.tx.send_replace(new.clone());
        if had_before {
            if let Ok(mut c) = self.last_change.lock() {
                // Several changes before the back-matcher runs: it compares
                // the oldest not yet matched with the newest.
                let old = c.take().map_or(old, |prev| prev.old);
                *c = Some(ListChange { old, new });
            }
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

#[cfg(test)]
#[path = "matcher_source_tests.rs"]
mod tests;
