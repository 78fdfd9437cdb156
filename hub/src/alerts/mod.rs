//! Alerts at the hub: every alert a node raised and every stage of its
//! disposition arrive as entries of the node's signed log; ingest indexes
//! them (`alerts-v1`, [`crate::store::HubStorage::alerts`]) and these views
//! read the entries back for `hub alerts` and `hub alert show`
//! ([`crate::api::alerts`]).

pub mod back_match;
pub mod cli;
#[cfg(test)]
mod tests;

pub use cli::render;

use alpr_shared::hotlist::{HotEntry, ListRef, MatchKind};
use alpr_shared::log::alert::Progress;
use alpr_shared::log::SignedEntry;
use alpr_shared::types::{DeviceId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::store::{AlertIndexRow, HubStorage, StoreError};

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
    pub matched_text: String,
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
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let alert = entries.next().flatten();
        let dispositions: Vec<DispositionView> = r
            .dispositions
            .iter()
            .filter_map(|seq| {
                let e = entries.next().flatten()?;
                let d = e.disposition()?;
                Some(DispositionView {
                    seq: *seq,
                    at: e.header.captured_at,
                    stage: d.stage.to_string(),
                    user: d.user.clone(),
                    agency: d.agency.clone(),
                    note: d.note.clone(),
                })
            })
            .collect();
        let Some(alert) = alert else { continue };
        let Some(rec) = alert.alert() else { continue };
        out.push(AlertView {
            id: format!("{}#{}", r.node, r.seq),
            source: "node".into(),
            node: r.node.to_string(),
            seq: r.seq,
            raised_at: alert.header.captured_at,
            read_seq: rec.read_seq,
            matched_text: rec.matched_text.clone(),
            entry: rec.entry.clone(),
            list: rec.list.clone(),
            kind: rec.kind.clone(),
            match_kind: rec.kind_text(),
            level: format!("{:?}", rec.level).to_lowercase(),
            covert: rec.covert,
            list_age_ms: rec.list_age_ms,
            list_stale: rec.list_stale,
            past_match: rec.past_match,
            progress: r.progress,
            status: r.progress.summary(),
            open: !r.progress.closed(),
            dispositions,
        });
    }
    Ok(out)
}

/// The view of a past match the hub found (number `n`).
pub fn hub_view(n: u64, a: &crate::store::HubAlert) -> AlertView {
    let r = &a.record;
    let progress = Progress::default();
    AlertView {
        id: format!("hub#{n}"),
        source: "hub".into(),
        node: a.node.to_string(),
        seq: r.read_seq,
        raised_at: a.at,
        read_seq: r.read_seq,
        matched_text: r.matched_text.clone(),
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
        status: format!("past match on {}#{}", a.node, r.read_seq),
        open: true,
        dispositions: Vec::new(),
    }
}

/// A hub past match with its read.
pub fn hub_detail(
    storage: &dyn HubStorage,
    n: u64,
    a: &crate::store::HubAlert,
) -> Result<Option<AlertDetail>, StoreError> {
    let alert = hub_view(n, a);
    let read = storage
        .entries_at(&[(a.node.clone(), a.record.read_seq)])?
        .pop()
        .and_then(decode);
    let content = read.as_ref().and_then(|e| e.read().cloned());
    Ok(Some(AlertDetail {
        read_at: read.as_ref().map(|e| e.header.captured_at),
        read_plate: content.as_ref().map(|c| c.plate.clone()),
        read_location: content.as_ref().map(|c| c.location.to_string()),
        camera: content.as_ref().map(|c| c.camera.clone()),
        alert,
        reminder: REMINDER.into(),
    }))
}

/// One alert with its read.
pub fn detail(
    storage: &dyn HubStorage,
    row: &AlertIndexRow,
) -> Result<Option<AlertDetail>, StoreError> {
    let Some(alert) = views(storage, std::slice::from_ref(row))?.pop() else {
        return Ok(None);
    };
    let read = storage
        .entries_at(&[(row.node.clone(), alert.read_seq)])?
        .pop()
        .and_then(decode);
    let content = read.as_ref().and_then(|e| e.read().cloned());
    Ok(Some(AlertDetail {
        read_at: read.as_ref().map(|e| e.header.captured_at),
        read_plate: content.as_ref().map(|c| c.plate.clone()),
        read_location: content.as_ref().map(|c| c.location.to_string()),
        camera: content.as_ref().map(|c| c.camera.clone()),
        alert,
        reminder: REMINDER.into(),
    }))
}
