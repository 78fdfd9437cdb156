//! Past matches at the hub: when a list gains entries (a new generation
//! of a bulk source; new local entries, when the integrator feeds them in
//! through [`BackMatcher::entries`]), each new entry is searched in the
//! reads the hub holds, back `policy.hotlists.back_match_days`. An entry
//! that finds reads is one access by the system (purpose
//! `hotlist-back-match`, query its plate) in the hub's access log, then one
//! hub alert per read (`hub-alerts-v1`, `past_match: true`).

use std::collections::HashSet;
use std::sync::Arc;

use alpr_shared::hotlist::generation::Generation;
use alpr_shared::hotlist::matcher::exact_plate_kind;
use alpr_shared::hotlist::{AlertLevel, Category, HotEntry, ListRef, MatchKind};
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord, AlertRecord};
use alpr_shared::types::{DeviceId, UnixMillis};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access::AccessLog;
use crate::hotlist::HotlistService;
use crate::policy::PolicyService;
use crate::search::{SearchQuery, Searcher, MAX_LIMIT};
use crate::store::{HubAlert, HubStorage, WriteOp};

/// The system's user and purpose for past matches.
pub const SYSTEM_USER: &str = "system";
pub const BACK_MATCH_PURPOSE: &str = "hotlist-back-match";
/// Most new entries one run searches (a first import of a whole extract
/// is a baseline, not a million searches).
pub const MAX_NEW_ENTRIES: usize = 20_000;

/// One entry new to a list, to search for.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub list: ListRef,
    pub entry: HotEntry,
    /// The plate or a pattern (`*`, `?`).
    pub plate: String,
    pub level: AlertLevel,
    pub covert: bool,
}

/// Rows of `new` whose (plate, state, category) `old` does not hold.
pub fn new_rows(old: Option<&Generation>, new: &Generation) -> Vec<HotEntry> {
    let mut out = Vec::new();
    for i in 0..new.len() {
        let Some(e) = new.get(i) else { continue };
        let known = old.is_some_and(|o| {
            o.lookup(&e.plate)
                .iter()
                .any(|x| x.state == e.state && x.category == e.category)
        });
        if !known {
            out.push(e);
        }
    }
    out
}

/// Searches new entries in the stored reads and records what it finds.
#[derive(Clone)]
pub struct BackMatcher {
    pub storage: Arc<dyn HubStorage>,
    pub searcher: Searcher,
    pub access: AccessLog,
}

impl BackMatcher {
    /// Search each entry back `days` from `now`; record the system's
    /// access and the alerts. Returns the alerts recorded.
    pub async fn entries(
        &self,
        entries: Vec<NewEntry>,
        days: u32,
        excluded: &[Category],
        now: UnixMillis,
    ) -> anyhow::Result<Vec<HubAlert>> {
        let from = UnixMillis(now.0.saturating_sub(u64::from(days) * 86_400_000));
        let mut all = Vec::new();
        for e in entries.into_iter().take(MAX_NEW_ENTRIES) {
            if excluded.contains(&e.entry.category) {
                continue;
            }
            let searcher = self.searcher.clone();
            let query = SearchQuery {
                plate: Some(e.plate.clone()),
                from: Some(from),
                to: Some(now),
                limit: Some(MAX_LIMIT),
                ..SearchQuery::default()
            };
            let found = tokio::task::spawn_blocking(move || searcher.search(&query)).await??;
            if found.hits.is_empty() {
                continue;
            }
            self.access
                .record(AccessRecord {
                    user: SYSTEM_USER.into(),
                    agency: String::new(),
                    action: AccessAction::PastMatch,
                    purpose: Some(BACK_MATCH_PURPOSE.into()),
                    case: None,
                    query: format!("plate={}", e.plate),
                    results: u32::try_from(found.hits.len()).unwrap_or(u32::MAX),
                    outcome: AccessOutcome::Allowed,
                    source: "hub-back-match".into(),
                })
                .await?;
            let wildcard = e.plate.contains(['*', '?']);
            for h in found.hits {
                let Ok(node) = DeviceId::new(h.node.as_str()) else {
                    continue;
                };
                let kind = if wildcard {
                    MatchKind::Wildcard {
                        pattern: e.plate.clone(),
                    }
                } else {
                    // The state the read's recogniser gave, if it was sure.
                    let searcher = self.searcher.clone();
                    let (node, seq) = (h.node.clone(), h.seq);
                    let state =
                        tokio::task::spawn_blocking(move || searcher.read_state(&node, seq))
                            .await??;
                    exact_plate_kind(&e.entry.state, state.as_deref())
                };
                let record = AlertRecord {
                    read_seq: h.seq,
                    list: e.list.clone(),
                    entry: e.entry.clone(),
                    kind,
                    matched_text: h.plate.clone(),
                    level: e.level,
                    covert: e.covert,
                    list_age_ms: 0,
                    list_stale: false,
                    past_match: true,
                };
                if record.validate().is_ok() {
                    all.push(HubAlert {
                        node,
                        at: now,
                        record,
                    });
                }
            }
        }
        if !all.is_empty() {
            let storage = self.storage.clone();
            let rows = all.clone();
            tokio::task::spawn_blocking(move || storage.commit(vec![WriteOp::HubAlerts(rows)]))
                .await??;
            info!(alerts = all.len(), "past matches found in the hub's reads");
        }
        Ok(all)
    }

    /// The new rows of each source whose generation changed from `old`
    /// to `new`, as entries to search. A source new since the hub started
    /// is a baseline (nothing to compare with).
    pub fn changed(old: &[Arc<Generation>], new: &[Arc<Generation>]) -> Vec<NewEntry> {
        let mut out = Vec::new();
        for g in new {
            let info = g.info();
            let Some(prev) = old.iter().find(|o| o.info().source == info.source) else {
                continue;
            };
            if prev.info().number == info.number {
                continue;
            }
            let list = ListRef::Bulk {
                source: info.source.clone(),
                generation: info.number,
                issued_at: info.issued_at,
            };
            let mut seen = HashSet::new();
            for entry in new_rows(Some(prev), g) {
                if !seen.insert(entry.plate.clone()) {
                    continue;
                }
                out.push(NewEntry {
                    list: list.clone(),
                    plate: entry.plate.clone(),
                    entry,
                    level: info.settings.alert_level,
                    covert: info.settings.covert,
                });
            }
        }
        out
    }

    /// Local entries of `now` whose id is not in `known` (active ones
    /// only), as entries to search; `known` gains them.
    pub fn new_local(
        known: &mut HashSet<String>,
        entries: &[alpr_shared::hotlist::LocalEntry],
        now: UnixMillis,
    ) -> Vec<NewEntry> {
        let mut out = Vec::new();
        for e in entries {
            if !known.insert(e.id.clone()) || !e.active(now) {
                continue;
            }
            out.push(NewEntry {
                list: ListRef::Local { id: e.id.clone() },
                entry: HotEntry {
                    plate: e.plate.clone(),
                    state: e.state.clone(),
                    category: e.category,
                    make: e.make.clone(),
                    model: e.model.clone(),
                    colour: e.colour.clone(),
                    oca: e.case.clone(),
                    note: e.reason.clone(),
                    ..HotEntry::default()
                },
                plate: e.plate.clone(),
                level: e.level,
                covert: false,
            });
        }
        out
    }

    /// Follow the local entries until `cancel`: each time `changes` moves
    /// (the `local` helper's `LocalEntriesService::watch()`), entries new
    /// since the hub started are searched (read with `entries`, e.g.
    /// `LocalEntriesService::entries`).
    pub async fn follow_local<T, F>(
        self,
        policy: PolicyService,
        mut changes: tokio::sync::watch::Receiver<T>,
        entries: F,
        cancel: CancellationToken,
    ) where
        T: Send + Sync + 'static,
        F: Fn() -> Arc<Vec<alpr_shared::hotlist::LocalEntry>> + Send + 'static,
    {
        let mut known: HashSet<String> = entries().iter().map(|e| e.id.clone()).collect();
        changes.borrow_and_update();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
            changes.borrow_and_update();
            let now = UnixMillis::now();
            let new = Self::new_local(&mut known, &entries(), now);
            if new.is_empty() {
                continue;
            }
            let p = policy.current();
            let rules = &p.policy().hotlists;
            if let Err(e) = self
                .entries(new, rules.back_match_days, &rules.excluded_categories, now)
                .await
            {
                warn!(error = %format!("{e:#}"), "past matches of local entries failed");
            }
        }
    }

    /// Follow the hub's bulk lists until `cancel`: each new generation's
    /// new rows are searched, back as far as `policy` says.
    pub async fn follow_bulk(
        self,
        policy: PolicyService,
        hotlists: HotlistService,
        cancel: CancellationToken,
    ) {
        let mut watch = hotlists.watch();
        let mut old = watch.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = watch.changed() => if r.is_err() { return },
            }
            let new = watch.borrow_and_update().clone();
            let entries = Self::changed(&old, &new);
            old = new;
            if entries.is_empty() {
                continue;
            }
            let p = policy.current();
            let rules = &p.policy().hotlists;
            if let Err(e) = self
                .entries(
                    entries,
                    rules.back_match_days,
                    &rules.excluded_categories,
                    UnixMillis::now(),
                )
                .await
            {
                warn!(error = %format!("{e:#}"), "past matches at the hub failed");
            }
        }
    }
}
