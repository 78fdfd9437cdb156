//! Alerts at the hub: every alert a node raised and every stage of its
//! disposition arrive as entries of the node's signed log; ingest indexes
//! them (`alerts-v1`, [`crate::store::HubStorage::alerts`]) and these views
//! read the entries back for `hub alerts` and `hub alert show` (through
//! the API).
//!
//! Dispatchers and supervisors dispose alerts at the hub too
//! (`hub-dispositions-v1`, [`crate::store::HubDisposition`]). A view
//! merges the hub's stages with the node's in time order and works out the
//! alert's progress from them all, under the same rules
//! ([`Progress::check`]).

pub mod back_match;
#[cfg(test)]
pub(crate) mod tests;

use alpr_shared::hotlist::{HotEntry, ListRef, MatchKind};
use alpr_shared::log::alert::{
    ActionTaken, AlternativeMatch, Progress, ReadCheck, Stage, StatusCheck,
};
use alpr_shared::log::SignedEntry;
use alpr_shared::types::{DeviceId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::store::{AlertIndexRow, HubDisposition, HubStorage, StoreError};

/// What an officer must do before acting on any alert.
pub const REMINDER: &str =
    "Verify through the state system before enforcement (policy 426.3(f)): a hit is not a stop.";

/// One alert as the hub shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    /// `node#seq` (an alert in a node's log), or `hub#N` (a past match
    /// the hub found).
    pub id: String,
    /// `node` or `hub`: who raised it.
    pub source: String,
    pub node: String,
    pub seq: u64,
    pub raised_at: UnixMillis,
    pub read_seq: u64,
    /// The plate as read (the recogniser's best reading).
    #[serde(default)]
    pub plate_read: String,
    /// The text that matched: the plate read, or [`Self::alternative`]'s.
    pub matched_text: String,
    /// The alternative reading that matched, when the plate read did not:
    /// shown beside it, with the crop to be compared first.
    #[serde(default)]
    pub alternative: Option<AlternativeMatch>,
    pub entry: HotEntry,
    pub list: ListRef,
    pub kind: MatchKind,
    pub match_kind: String,
    pub level: String,
    pub covert: bool,
    pub list_age_ms: u64,
    pub list_stale: bool,
    pub past_match: bool,
    pub progress: Progress,
    pub status: String,
    pub open: bool,
    pub dispositions: Vec<DispositionView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispositionView {
    /// `node`: an entry of the node's log (`seq` is its sequence number);
    /// `hub`: recorded at the hub (`seq` numbers the alert's hub stages
    /// from 0).
    #[serde(default)]
    pub by: String,
    pub seq: u64,
    pub at: UnixMillis,
    pub stage: String,
    pub user: String,
    pub agency: String,
    pub note: String,
}

/// `hub alert show`: the alert, its read, the reminder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertDetail {
    pub alert: AlertView,
    pub read_at: Option<UnixMillis>,
    pub read_plate: Option<String>,
    pub read_location: Option<String>,
    pub camera: Option<String>,
    pub reminder: String,
}

/// Parse `node#seq`.
pub fn parse_id(id: &str) -> Option<(DeviceId, u64)> {
    let (node, seq) = id.rsplit_once('#')?;
    Some((DeviceId::new(node).ok()?, seq.parse().ok()?))
}

fn decode(bytes: Option<Vec<u8>>) -> Option<SignedEntry> {
    bytes.and_then(|b| SignedEntry::decode(&b).ok())
}

/// The views of `rows` (their alert entries and dispositions read back);
/// a row whose entry is unreadable is left out.
pub fn views(
    storage: &dyn HubStorage,
    rows: &[AlertIndexRow],
) -> Result<Vec<AlertView>, StoreError> {
    let mut at = Vec::new();
    for r in rows {
        at.push((r.node.clone(), r.seq));
        for d in &r.dispositions {
            at.push((r.node.clone(), *d));
        }
    }
    let mut entries = storage.entries_at(&at)?.into_iter().map(decode);
    let mut hub = hub_stages(storage, rows)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let alert = entries.next().flatten();
        let stages: Vec<(Stage, DispositionView)> = r
            .dispositions
            .iter()
            .filter_map(|seq| {
                let e = entries.next().flatten()?;
                let d = e.disposition()?;
                Some((
                    d.stage,
                    DispositionView {
                        by: "node".into(),
                        seq: *seq,
                        at: e.header.captured_at,
                        stage: d.stage.to_string(),
                        user: d.user.clone(),
                        agency: d.agency.clone(),
                        note: d.note.clone(),
                    },
                ))
            })
            .collect();
        let Some(alert) = alert else { continue };
        let Some(rec) = alert.alert() else { continue };
        let id = format!("{}#{}", r.node, r.seq);
        let (progress, dispositions) =
            combine(r.progress, stages, hub.remove(&id).unwrap_or_default());
        out.push(AlertView {
            id,
            source: "node".into(),
            node: r.node.to_string(),
            seq: r.seq,
            raised_at: alert.header.captured_at,
            read_seq: rec.read_seq,
            plate_read: rec.plate_read().to_owned(),
            matched_text: rec.matched_text.clone(),
            alternative: rec.alternative(),
            entry: rec.entry.clone(),
            list: rec.list.clone(),
            kind: rec.kind.clone(),
            match_kind: rec.kind_text(),
            level: format!("{:?}", rec.level).to_lowercase(),
            covert: rec.covert,
            list_age_ms: rec.list_age_ms,
            list_stale: rec.list_stale,
            past_match: rec.past_match,
            progress,
            status: progress.summary(),
            open: !progress.closed(),
            dispositions,
        });
    }
    Ok(out)
}

/// The hub's stages of `rows`' alerts, by alert id (one scan of the
/// table for many rows, one range for one).
fn hub_stages(
    storage: &dyn HubStorage,
    rows: &[AlertIndexRow],
) -> Result<std::collections::HashMap<String, Vec<HubDisposition>>, StoreError> {
    let found = match rows {
        [] => Vec::new(),
        [r] => storage.hub_dispositions(Some(&format!("{}#{}", r.node, r.seq)))?,
        _ => storage.hub_dispositions(None)?,
    };
    let mut by_alert: std::collections::HashMap<String, Vec<HubDisposition>> =
        std::collections::HashMap::new();
    for (id, d) in found {
        by_alert.entry(id).or_default().push(d);
    }
    Ok(by_alert)
}

/// An alert's progress and its stages in time order: the node's stages
/// (`node_progress` is what they came to) with the hub's merged in. When
/// both disposed, the stages are replayed in time order and one the rules
/// refuse after those before it (an officer and a dispatcher disposing at
/// once) is listed but not counted.
fn combine(
    node_progress: Progress,
    node: Vec<(Stage, DispositionView)>,
    hub: Vec<HubDisposition>,
) -> (Progress, Vec<DispositionView>) {
    if hub.is_empty() {
        return (node_progress, node.into_iter().map(|(_, v)| v).collect());
    }
    let mut all = node;
    for (n, d) in (0u64..).zip(hub) {
        all.push((
            d.stage,
            DispositionView {
                by: "hub".into(),
                seq: n,
                at: d.at,
                stage: d.stage.to_string(),
                user: d.user,
                agency: d.agency,
                note: d.note,
            },
        ));
    }
    all.sort_by_key(|(_, v)| v.at);
    let mut progress = Progress::default();
    for (stage, _) in &all {
        // A refused stage stays listed; the progress is what the rules allow.
        let _ = progress.apply(*stage);
    }
    (progress, all.into_iter().map(|(_, v)| v).collect())
}

/// A stage as a form or the API names it: `read:correct`,
/// `status:active`, `action:no-stop`.
pub fn stage_name(stage: Stage) -> String {
    match stage {
        Stage::Read(r) => format!("read:{}", r.name()),
        Stage::Status(s) => format!("status:{}", s.name()),
        Stage::Action(a) => format!("action:{}", a.name()),
    }
}

/// Parse `read:correct` (also `read: correct`, as views print it).
pub fn parse_stage(s: &str) -> Option<Stage> {
    let (kind, value) = s.split_once(':')?;
    let value = value.trim();
    match kind.trim() {
        "read" => ReadCheck::from_name(value).map(Stage::Read),
        "status" => StatusCheck::from_name(value).map(Stage::Status),
        "action" => ActionTaken::from_name(value).map(Stage::Action),
        _ => None,
    }
}

/// The stages the rules allow next, after `progress`.
pub fn next_stages(progress: Progress) -> Vec<Stage> {
    Stage::ALL
        .into_iter()
        .filter(|s| progress.check(*s).is_ok())
        .collect()
}

/// The view of a past match the hub found (number `n`), with the stages
/// disposed at the hub (`hub`, in the order recorded).
pub fn hub_view(n: u64, a: &crate::store::HubAlert, hub: Vec<HubDisposition>) -> AlertView {
    let r = &a.record;
    let disposed = !hub.is_empty();
    let (progress, dispositions) = combine(Progress::default(), Vec::new(), hub);
    let found = format!("past match on {}#{}", a.node, r.read_seq);
    AlertView {
        id: format!("hub#{n}"),
        source: "hub".into(),
        node: a.node.to_string(),
        seq: r.read_seq,
        raised_at: a.at,
        read_seq: r.read_seq,
        plate_read: r.plate_read().to_owned(),
        matched_text: r.matched_text.clone(),
        alternative: r.alternative(),
        entry: r.entry.clone(),
        list: r.list.clone(),
        kind: r.kind.clone(),
        match_kind: r.kind_text(),
        level: format!("{:?}", r.level).to_lowercase(),
        covert: r.covert,
        list_age_ms: r.list_age_ms,
        list_stale: r.list_stale,
        past_match: r.past_match,
        progress,
        status: if disposed {
            format!("{found}; {}", progress.summary())
        } else {
            found
        },
        open: !progress.closed(),
        dispositions,
    }
}

/// The stages disposed at the hub of the past match `hub#n`.
pub fn hub_alert_stages(
    storage: &dyn HubStorage,
    n: u64,
) -> Result<Vec<HubDisposition>, StoreError> {
    Ok(storage
        .hub_dispositions(Some(&format!("hub#{n}")))?
        .into_iter()
        .map(|(_, d)| d)
        .collect())
}

/// The photos of a read the hub holds, JPEG.
#[derive(Debug, Clone, Default)]
pub struct ReadPhotos {
    pub crop: Option<Vec<u8>>,
    pub overview: Option<Vec<u8>>,
}

/// The photos of read `seq` of `node` the hub holds (the overview only if
/// `overview`). For pages that show an alert's read, after the API
/// allowed and logged the view.
pub fn read_photos(
    storage: &dyn HubStorage,
    node: &str,
    seq: u64,
    overview: bool,
) -> Result<ReadPhotos, StoreError> {
    let Ok(device) = DeviceId::new(node) else {
        return Ok(ReadPhotos::default());
    };
    let Some(content) = storage
        .entries_at(&[(device, seq)])?
        .pop()
        .and_then(decode)
        .and_then(|e| e.read().cloned())
    else {
        return Ok(ReadPhotos::default());
    };
    let crop = storage.image(&content.crop_hash)?;
    let overview = if !overview || content.overview_hash == content.crop_hash {
        None
    } else {
        storage.image(&content.overview_hash)?
    };
    Ok(ReadPhotos { crop, overview })
}

/// A hub past match with its read.
pub fn hub_detail(
    storage: &dyn HubStorage,
    n: u64,
    a: &crate::store::HubAlert,
) -> Result<Option<AlertDetail>, StoreError> {
    let alert = hub_view(n, a, hub_alert_stages(storage, n)?);
    with_read(storage, &a.node, a.record.read_seq, alert).map(Some)
}

/// One alert with its read.
pub fn detail(
    storage: &dyn HubStorage,
    row: &AlertIndexRow,
) -> Result<Option<AlertDetail>, StoreError> {
    let Some(alert) = views(storage, std::slice::from_ref(row))?.pop() else {
        return Ok(None);
    };
    let seq = alert.read_seq;
    with_read(storage, &row.node, seq, alert).map(Some)
}

/// `alert` with the read it names (`node`'s entry `seq`), as far as the
/// hub still holds it.
fn with_read(
    storage: &dyn HubStorage,
    node: &alpr_shared::types::DeviceId,
    seq: u64,
    alert: AlertView,
) -> Result<AlertDetail, StoreError> {
    let read = storage
        .entries_at(&[(node.clone(), seq)])?
        .pop()
        .and_then(decode);
    let content = read.as_ref().and_then(|e| e.read().cloned());
    Ok(AlertDetail {
        read_at: read.as_ref().map(|e| e.header.captured_at),
        read_plate: content.as_ref().map(|c| c.plate.clone()),
        read_location: content.as_ref().map(|c| c.location.to_string()),
        camera: content.as_ref().map(|c| c.camera.clone()),
        alert,
        reminder: REMINDER.into(),
    })
}
