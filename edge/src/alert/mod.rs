//! Alerts on the node: every stored read is matched (its best text and the
//! recogniser's alternatives) against the node's lists; a hit is signed
//! into the log as an alert and listed for an officer to dispose
//! (`edge alerts`, `edge alert show ID`, `edge alert dispose ID …`).
//!
//! Policy 426.3(f): an alert must be verified through the state system
//! before enforcement. So each alert takes a disposition in stages
//! ([`alpr_shared::log::alert::Progress`]), each by a logged-in officer,
//! signed into the node's log and synced to the hub.
//!
//! Covert lists raise no in-car alert: their hits are logged and synced,
//! never shown here (privileged users see them at the hub).
//!
//! Past matches: when the lists change, reads already stored (back
//! `policy.hotlists.back_match_days`) that the new lists match and the old
//! did not raise alerts marked `past_match`; each entry that found reads is
//! an access by the system, purpose `hotlist-back-match`.

pub mod matcher_source;

use std::collections::HashMap;
use std::sync::Arc;

use alpr_shared::control::HotlistPolicy;
use alpr_shared::hotlist::matcher::Matcher;
use alpr_shared::hotlist::{Hit, HotEntry, ListRef};
use alpr_shared::log::alert::{
    ActionTaken, AlternativeMatch, Progress, ReadCheck, Stage, StatusCheck, MAX_NOTE_LEN,
};
use alpr_shared::log::{
    AccessAction, AccessOutcome, AccessRecord, AlertRecord, DispositionRecord, SignedEntry,
};
use alpr_shared::types::{Confidence, UnixMillis};
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::policy::{EdgeAccess, LOCAL_SOURCE};
use crate::store::{AlertRow, StoreHandle};

pub use matcher_source::MatcherSource;

/// The user and purpose of the system's own accesses (past matches).
pub const SYSTEM_USER: &str = "system";
pub const BACK_MATCH_PURPOSE: &str = "hotlist-back-match";
/// What an officer must do before acting on any alert.
pub const REMINDER: &str =
    "Verify through the state system before enforcement (policy 426.3(f)): a hit is not a stop.";
/// Most reads one past-match run scans.
const MAX_BACK_MATCH_READS: usize = 1_000_000;

/// The hotlist rules of the policy this node holds (defaults without one).
pub fn hotlist_policy(store: &StoreHandle) -> HotlistPolicy {
    match store.policy() {
        Ok(Some((p, _))) => p.policy().hotlists.clone(),
        _ => HotlistPolicy::default(),
    }
}

/// Which listed entry a hit is for (one alert per entry per read).
fn entry_key(list: &ListRef, e: &HotEntry) -> String {
    match list {
        ListRef::Bulk { source, .. } => {
            format!(
                "bulk/{source}/{}/{}/{}/{}",
                e.plate, e.state, e.category, e.nic
            )
        }
        ListRef::Local { id } => format!("local/{id}"),
    }
}

/// The strongest hit for each entry, in the order first seen.
fn strongest(hits: Vec<Hit>) -> Vec<Hit> {
    let mut order: Vec<String> = Vec::new();
    let mut best: HashMap<String, Hit> = HashMap::new();
    for h in hits {
        let k = entry_key(&h.list, &h.entry);
        match best.get(&k) {
            Some(b) if b.kind.strength() <= h.kind.strength() => {}
            Some(_) => {
                best.insert(k, h);
            }
            None => {
                order.push(k.clone());
                best.insert(k, h);
            }
        }
    }
    order.into_iter().filter_map(|k| best.remove(&k)).collect()
}

/// An alert record for `hit` on read `read_seq`, with the list's age now.
pub fn record_of(
    hit: Hit,
    read_seq: u64,
    now: UnixMillis,
    policy: &HotlistPolicy,
    past_match: bool,
) -> AlertRecord {
    let list_age_ms = match &hit.list {
        ListRef::Bulk { issued_at, .. } => now.0.saturating_sub(issued_at.0),
        ListRef::Local { .. } => 0,
    };
    let list_stale =
        matches!(hit.list, ListRef::Bulk { .. }) && list_age_ms > policy.max_list_age_ms;
    AlertRecord {
        read_seq,
        list: hit.list,
        entry: hit.entry,
        kind: hit.kind,
        matched_text: hit.matched_text,
        level: hit.level,
        covert: hit.covert,
        list_age_ms,
        list_stale,
        past_match,
    }
}

/// "ncic gen 4" or "local entry 3f9a…".
pub fn list_name(list: &ListRef) -> String {
    match list {
        ListRef::Bulk {
            source, generation, ..
        } => format!("{source} generation {generation}"),
        ListRef::Local { id } => format!("local entry {id}"),
    }
}

/// Matches each stored read; used by the capture pipeline.
#[derive(Clone)]
pub struct Alerter {
    store: StoreHandle,
    source: MatcherSource,
    matcher: watch::Receiver<Arc<Matcher>>,
}

/// One stored read to match: its sequence number, its best text, the
/// recogniser's alternatives (most probable first, with their
/// probabilities) and the state it gave, if it was sure of one.
#[derive(Debug, Clone, Default)]
pub struct StoredRead {
    pub seq: u64,
    pub best: String,
    pub alternatives: Vec<(String, Confidence)>,
    pub state: Option<String>,
}

impl Alerter {
    pub fn new(store: StoreHandle, source: &MatcherSource) -> Self {
        Alerter {
            store,
            source: source.clone(),
            matcher: source.watch(),
        }
    }

    /// Match `reads` (just stored) and sign an alert for each hit; logs an
    /// `ALERT` line for each one that is not covert. Returns the alerts'
    /// sequence numbers. Blocking (the pipeline's thread).
    pub fn check_blocking(&self, reads: &[StoredRead]) -> anyhow::Result<Vec<u64>> {
        let now = UnixMillis::now();
        let policy = hotlist_policy(&self.store);
        // A new policy may exclude other categories: the lists follow it
        // before this read is matched.
        if self.source.excluded() != policy.excluded_categories {
            self.source.set_excluded(policy.excluded_categories.clone());
        }
        let matcher = self.matcher.borrow().clone();
        let mut records = Vec::new();
        let mut hits = Vec::new();
        for r in reads {
            hits.clear();
            let alternatives: Vec<(&str, Confidence)> = r
                .alternatives
                .iter()
                .map(|(t, p)| (t.as_str(), *p))
                .collect();
            matcher.match_read(&r.best, &alternatives, r.state.as_deref(), now, &mut hits);
            for h in strongest(std::mem::take(&mut hits)) {
                records.push(record_of(h, r.seq, now, &policy, false));
            }
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let shown = records.clone();
        let seqs = self.store.append_alerts_blocking(records)?;
        for (seq, r) in seqs.iter().zip(&shown) {
            announce(*seq, r);
        }
        Ok(seqs)
    }
}

/// The in-car line for an alert (none for a covert one). Like every log
/// line it names no plate, place or person: the alert's number says where
/// to look (`edge alert show`).
fn announce(seq: u64, r: &AlertRecord) {
    if r.covert {
        tracing::debug!(alert = seq, "covert hit recorded (no in-car alert)");
        return;
    }
    info!(
        alert = seq,
        read = r.read_seq,
        category = %r.entry.category,
        level = ?r.level,
        kind = r.kind.name(),
        list_age_s = r.list_age_ms / 1000,
        stale = r.list_stale,
        past_match = r.past_match,
        "ALERT {seq} ({}): `edge alert show {seq}`; verify through the state system before enforcement",
        r.entry.category
    );
}

/// Match reads stored back `back_match_days` against the lists each time
/// they change; ends with `cancel`.
pub async fn back_match_loop(
    store: StoreHandle,
    source: MatcherSource,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut changes = source.watch_changes();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
        let Some(change) = source.take_change() else {
            continue;
        };
        let s = store.clone();
        let run = tokio::task::spawn_blocking(move || back_match(&s, &change.old, &change.new));
        let found = match run.await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                warn!(error = %format!("{e:#}"), "past matches not run");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "past matches failed");
                continue;
            }
        };
        if let Err(e) = record_past_matches(&store, found).await {
            warn!(error = %format!("{e:#}"), "past matches not recorded");
        }
    }
}

/// Hits of the new lists (not of the old) on reads stored back
/// `back_match_days`: (read seq, hit).
pub fn back_match(
    store: &StoreHandle,
    old: &Matcher,
    new: &Matcher,
) -> anyhow::Result<Vec<(u64, Hit)>> {
    let policy = hotlist_policy(store);
    let now = UnixMillis::now();
    let from = UnixMillis(
        now.0
            .saturating_sub(u64::from(policy.back_match_days) * 86_400_000),
    );
    let reads = store.plates_in_range("", None, from, now, MAX_BACK_MATCH_READS)?;
    let mut out = Vec::new();
    let (mut hits, mut before) = (Vec::new(), Vec::new());
    for (plate, seq) in reads {
        hits.clear();
        new.match_read(&plate, &[], None, now, &mut hits);
        if hits.is_empty() {
            continue;
        }
        // A hit: matched again with the state the read's recogniser gave,
        // from its signed content.
        let state = store
            .entries_from(seq, 1)?
            .first()
            .and_then(|e| e.read())
            .and_then(|r| r.issuer.state().map(str::to_owned));
        if state.is_some() {
            hits.clear();
            new.match_read(&plate, &[], state.as_deref(), now, &mut hits);
        }
        before.clear();
        old.match_read(&plate, &[], None, now, &mut before);
        let known: Vec<String> = before
            .iter()
            .map(|h| entry_key(&h.list, &h.entry))
            .collect();
        for h in strongest(std::mem::take(&mut hits)) {
            if !known.contains(&entry_key(&h.list, &h.entry)) {
                out.push((seq, h));
            }
        }
    }
    Ok(out)
}

/// Log the system's access for each entry that found reads, then sign the
/// past-match alerts.
pub async fn record_past_matches(
    store: &StoreHandle,
    found: Vec<(u64, Hit)>,
) -> anyhow::Result<Vec<u64>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let policy = hotlist_policy(store);
    let now = UnixMillis::now();
    let mut per_entry: Vec<(String, String, u32)> = Vec::new();
    for (_, h) in &found {
        let k = entry_key(&h.list, &h.entry);
        match per_entry.iter_mut().find(|(key, _, _)| *key == k) {
            Some(e) => e.2 += 1,
            None => per_entry.push((k, h.entry.plate.clone(), 1)),
        }
    }
    for (_, plate, n) in per_entry {
        store
            .append_access(AccessRecord {
                user: SYSTEM_USER.into(),
                agency: String::new(),
                action: AccessAction::PastMatch,
                purpose: Some(BACK_MATCH_PURPOSE.into()),
                case: None,
                query: format!("plate={plate}"),
                results: n,
                outcome: AccessOutcome::Allowed,
                source: "edge-back-match".into(),
            })
            .await?;
    }
    let records: Vec<AlertRecord> = found
        .into_iter()
        .map(|(seq, h)| record_of(h, seq, now, &policy, true))
        .collect();
    let shown = records.clone();
    let seqs = store.append_alerts(records).await?;
    for (seq, r) in seqs.iter().zip(&shown) {
        announce(*seq, r);
    }
    Ok(seqs)
}

// ---- officer requests over the local socket ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertListRequest {
    pub token: String,
    /// Also those already disposed.
    #[serde(default)]
    pub all: bool,
    /// Only alerts raised after this one (`--follow`); an answer with none
    /// shows no data and is not logged.
    #[serde(default)]
    pub after: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertShowRequest {
    pub token: String,
    pub id: u64,
    /// Send the crop and overview (base64).
    #[serde(default)]
    pub images: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertDisposeRequest {
    pub token: String,
    pub id: u64,
    pub read: Option<String>,
    pub status: Option<String>,
    pub action: Option<String>,
    #[serde(default)]
    pub note: String,
}

/// One line of `edge alerts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertSummary {
    pub id: u64,
    pub read_seq: u64,
    pub raised_at: UnixMillis,
    /// The plate as read (the recogniser's best reading).
    #[serde(default)]
    pub plate_read: String,
    /// The text that matched: the plate read, or [`Self::alternative`]'s.
    pub matched_text: String,
    /// The alternative reading that matched, when the plate read did not:
    /// shown beside it, with the crop to be compared first.
    #[serde(default)]
    pub alternative: Option<AlternativeMatch>,
    pub listed_plate: String,
    pub state: String,
    pub category: String,
    pub level: String,
    pub list: String,
    pub match_kind: String,
    pub list_age_ms: u64,
    pub list_stale: bool,
    pub past_match: bool,
    pub progress: Progress,
    pub status: String,
    pub open: bool,
}

/// `edge alert show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertDetail {
    pub summary: AlertSummary,
    pub record: AlertRecord,
    pub read_at: Option<UnixMillis>,
    pub read_plate: Option<String>,
    pub read_location: Option<String>,
    pub read_confidence: Option<f32>,
    pub camera: Option<String>,
    pub dispositions: Vec<DispositionView>,
    pub reminder: String,
    /// base64 JPEG, when asked for and held.
    pub crop: Option<String>,
    pub overview: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispositionView {
    pub seq: u64,
    pub at: UnixMillis,
    pub stage: String,
    pub user: String,
    pub agency: String,
    pub note: String,
}

fn entry_at(store: &StoreHandle, seq: u64) -> Result<SignedEntry, String> {
    store
        .entries_from(seq, 1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|e| e.seq() == seq)
        .ok_or_else(|| format!("entry {seq} is not in this node's log"))
}

fn summary_of(row: &AlertRow, alert: &SignedEntry) -> Option<AlertSummary> {
    let r = alert.alert()?;
    Some(AlertSummary {
        id: row.seq,
        read_seq: r.read_seq,
        raised_at: alert.header.captured_at,
        plate_read: r.plate_read().to_owned(),
        matched_text: r.matched_text.clone(),
        alternative: r.alternative(),
        listed_plate: r.entry.plate.clone(),
        state: r.entry.state.clone(),
        category: r.entry.category.to_string(),
        level: format!("{:?}", r.level).to_lowercase(),
        list: list_name(&r.list),
        match_kind: r.kind_text(),
        list_age_ms: r.list_age_ms,
        list_stale: r.list_stale,
        past_match: r.past_match,
        progress: row.progress,
        status: row.progress.summary(),
        open: !row.progress.closed(),
    })
}

/// The node's alerts an officer may see (covert ones never), waiting for
/// disposition first; with `all`, disposed ones too. Logged as a view.
pub async fn list(access: &EdgeAccess, req: AlertListRequest) -> Result<Vec<AlertSummary>, String> {
    let now = UnixMillis::now();
    let (user, agency, _) = access.session(&req.token, now)?;
    let store = access.store();
    let rows = store.alerts(10_000).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| !r.covert) {
        if (!req.all && row.progress.closed()) || req.after.is_some_and(|a| row.seq <= a) {
            continue;
        }
        let e = entry_at(store, row.seq)?;
        if let Some(s) = summary_of(row, &e) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| (!s.open, std::cmp::Reverse(s.id)));
    if req.after.is_some() && out.is_empty() {
        return Ok(out);
    }
    access
        .record(AccessRecord {
            user,
            agency,
            action: AccessAction::View,
            purpose: None,
            case: None,
            query: format!("alerts{}", if req.all { " --all" } else { "" }),
            results: u32::try_from(out.len()).unwrap_or(u32::MAX),
            outcome: AccessOutcome::Allowed,
            source: LOCAL_SOURCE.into(),
        })
        .await?;
    Ok(out)
}

/// One alert with its read, entry, dispositions and (if asked) photos.
/// Logged as a view of the read before anything is returned.
pub async fn show(access: &EdgeAccess, req: AlertShowRequest) -> Result<AlertDetail, String> {
    let now = UnixMillis::now();
    let (user, agency, _) = access.session(&req.token, now)?;
    let store = access.store();
    let row = store
        .alert_row(req.id)
        .map_err(|e| e.to_string())?
        .filter(|r| !r.covert)
        .ok_or_else(|| format!("no alert {} on this node", req.id))?;
    let alert = entry_at(store, row.seq)?;
    let summary = summary_of(&row, &alert).ok_or("not an alert entry")?;
    let record = alert.alert().cloned().ok_or("not an alert entry")?;
    let read = entry_at(store, record.read_seq).ok();
    let content = read.as_ref().and_then(|e| e.read().cloned());
    access
        .record(AccessRecord {
            user,
            agency,
            action: AccessAction::View,
            purpose: None,
            case: None,
            query: format!(
                "alert {} read {} plate={}{}",
                row.seq,
                record.read_seq,
                record.matched_text,
                if req.images { " with photos" } else { "" }
            ),
            results: 1,
            outcome: AccessOutcome::Allowed,
            source: LOCAL_SOURCE.into(),
        })
        .await?;
    let mut dispositions = Vec::new();
    for seq in &row.dispositions {
        let e = entry_at(store, *seq)?;
        if let Some(d) = e.disposition() {
            dispositions.push(DispositionView {
                seq: *seq,
                at: e.header.captured_at,
                stage: d.stage.to_string(),
                user: d.user.clone(),
                agency: d.agency.clone(),
                note: d.note.clone(),
            });
        }
    }
    let image = |h: &alpr_shared::types::Hash32| -> Option<String> {
        store
            .image_bytes(h)
            .ok()
            .flatten()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
    };
    let (crop, overview) = match (&content, req.images) {
        (Some(c), true) => (image(&c.crop_hash), image(&c.overview_hash)),
        _ => (None, None),
    };
    Ok(AlertDetail {
        summary,
        record,
        read_at: read.as_ref().map(|e| e.header.captured_at),
        read_plate: content.as_ref().map(|c| c.plate.clone()),
        read_location: content.as_ref().map(|c| c.location.to_string()),
        read_confidence: content.as_ref().map(|c| f32::from(c.confidence) / 100.0),
        camera: content.as_ref().map(|c| c.camera.clone()),
        dispositions,
        reminder: REMINDER.into(),
        crop,
        overview,
    })
}

/// The stages a dispose request names, in order.
pub fn stages_of(
    read: Option<&str>,
    status: Option<&str>,
    action: Option<&str>,
) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    if let Some(r) = read {
        stages.push(Stage::Read(ReadCheck::from_name(r).ok_or_else(|| {
            format!("--read {r}: one of correct, wrong-state, misread, dismissed")
        })?));
    }
    if let Some(s) = status {
        stages
            .push(Stage::Status(StatusCheck::from_name(s).ok_or_else(
                || format!("--status {s}: one of active, inactive"),
            )?));
    }
    if let Some(a) = action {
        stages.push(Stage::Action(ActionTaken::from_name(a).ok_or_else(
            || format!("--action {a}: one of stop, no-stop, unable"),
        )?));
    }
    if stages.is_empty() {
        return Err("say at least one stage: --read, --status or --action".into());
    }
    Ok(stages)
}

/// The outcome of a dispose request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disposed {
    pub id: u64,
    /// The stages recorded (each a signed entry), in order.
    pub recorded: Vec<(u64, String)>,
    pub progress: Progress,
    pub status: String,
    /// The stage the rules refused after others were recorded.
    pub refused: Option<String>,
}

/// Record the stages given, in order, each as a signed entry by the
/// logged-in officer; the first the rules refuse stops the rest. Each
/// stage recorded (or refused) is an access.
pub async fn dispose(access: &EdgeAccess, req: AlertDisposeRequest) -> Result<Disposed, String> {
    let now = UnixMillis::now();
    let (user, agency, _) = access.session(&req.token, now)?;
    let stages = stages_of(
        req.read.as_deref(),
        req.status.as_deref(),
        req.action.as_deref(),
    )?;
    if req.note.len() > MAX_NOTE_LEN || req.note.chars().any(char::is_control) {
        return Err(format!(
            "the note must be at most {MAX_NOTE_LEN} bytes, without control characters"
        ));
    }
    let store = access.store();
    let row = store
        .alert_row(req.id)
        .map_err(|e| e.to_string())?
        .filter(|r| !r.covert)
        .ok_or_else(|| format!("no alert {} on this node", req.id))?;
    let mut progress = row.progress;
    let mut recorded = Vec::new();
    let mut refused = None;
    for stage in stages {
        let result = store
            .dispose_alert(DispositionRecord {
                alert_seq: req.id,
                stage,
                user: user.clone(),
                agency: agency.clone(),
                note: req.note.clone(),
            })
            .await
            .map_err(|e| e.to_string());
        access
            .record(AccessRecord {
                user: user.clone(),
                agency: agency.clone(),
                action: AccessAction::AlertDisposition,
                purpose: None,
                case: None,
                query: format!("alert {} {stage}", req.id),
                results: 1,
                outcome: match &result {
                    Ok(_) => AccessOutcome::Allowed,
                    Err(e) => AccessOutcome::refused(e),
                },
                source: LOCAL_SOURCE.into(),
            })
            .await?;
        match result {
            Ok((seq, p)) => {
                progress = p;
                recorded.push((seq, stage.to_string()));
            }
            Err(e) if recorded.is_empty() => return Err(format!("{stage}: {e}")),
            Err(e) => {
                refused = Some(format!("{stage}: {e}"));
                break;
            }
        }
    }
    Ok(Disposed {
        id: req.id,
        recorded,
        progress,
        status: progress.summary(),
        refused,
    })
}

#[cfg(test)]
mod tests;
