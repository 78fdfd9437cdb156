//! Locally entered hotlist entries as one automerge document that the hub
//! and its edges each edit — some of them offline for days — and that
//! merges deterministically.
//!
//! Layout, chosen so no edit can shadow another (like the holds document):
//! the root map holds only scalar keys, never a nested object two replicas
//! could each create and so conflict over:
//! - `entry/<id>`: the entry as added (postcard bytes, never changed);
//! - `edit/<id>/<field>`: the latest value of one field ([`Edit`]: value,
//!   when and by whom). Fields are written one by one, so two concurrent
//!   edits of different fields both survive; concurrent edits of one field
//!   resolve to the greatest `(at, by, value)` on every replica (each
//!   writer stamps an edit later than the value it replaces, so a causal
//!   overwrite is also the greatest);
//! - `removed/<id>`: the removal, set once. It wins over any edit,
//!   concurrent or later: an entry with a removal is never active again;
//! - `gone/<id>`: the small tombstone of a removed entry whose record
//!   compaction dropped (value: the time until which it is kept);
//! - `epoch`: the compaction count (absent: 0).
//!
//! Keeping it small: automerge keeps every change, so deleting keys would
//! not shrink it. Instead the hub [`compact`](LocalEntriesDoc::compact)s:
//! it writes a fresh document, `epoch + 1`, holding the live entries, the
//! recently removed or expired ones, and a tombstone for each older
//! removal. Documents of different epochs never merge histories: the newer
//! one is taken and the older one's content *rebased* onto it — entries
//! it lacks (unless tombstoned or expired) added, its removals applied,
//! its field edits applied where they are the greater. A stale peer
//! therefore cannot resurrect a removed entry, and an offline edge's new
//! entries and edits survive a compaction they never saw.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{AlertLevel, Category, LocalEntry, Removal, MAX_ENTRY_TEXT};
use crate::control::policy::HotlistPolicy;
use crate::control::replica::{replicated_doc, valid_id, Replica, ReplicaError};
use crate::search::PlatePattern;
use crate::types::UnixMillis;

/// The largest saved document accepted from storage or a peer (some
/// thousands of entries); it bounds the control frame nodes may send.
pub const MAX_LOCAL_DOC_BYTES: usize = 512 << 10;
/// Removed and expired entries stay whole this long (so a node offline a
/// few days still sees why an entry stopped), then compaction drops them.
pub const GRACE_MS: u64 = 7 * DAY_MS;
/// A removed entry's tombstone is kept this long after the removal, and
/// at least until the entry expired: longer than any edge runs offline.
pub const TOMBSTONE_MS: u64 = 365 * DAY_MS;
const DAY_MS: u64 = 24 * 3600 * 1000;

const ENTRY_PREFIX: &str = "entry/";
const EDIT_PREFIX: &str = "edit/";
const REMOVED_PREFIX: &str = "removed/";

#[derive(Debug, thiserror::Error)]
pub enum LocalDocError {
    #[error("local entries document is {0} bytes, over the {MAX_LOCAL_DOC_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("local entries document does not load: {0}")]
    Corrupt(String),
    #[error("local entries document: key {0:?} does not decode")]
    BadEntry(String),
    #[error("entry id {0:?} is empty, too long, or not [A-Za-z0-9-_]")]
    BadId(String),
    /// The plate is kept for the caller, not shown: this error reaches
    /// logs (a merge refused), and no log line names a plate.
    #[error("the plate: {1}")]
    BadPlate(String, crate::search::PatternError),
    #[error("state {0:?} is not two letters")]
    BadState(String),
    #[error("{0} is longer than {MAX_ENTRY_TEXT} characters")]
    TooLong(&'static str),
    #[error("an entry needs a plate and a reason")]
    Missing,
    #[error("the expiry is not in the future")]
    ExpiryPast,
    #[error("entry {0} already exists")]
    Exists(String),
    #[error("no entry {0}")]
    NoSuchEntry(String),
    #[error("entry {0} is removed")]
    Removed(String),
    #[error("entry {0} has expired; add it again")]
    Expired(String),
    #[error("nothing to change")]
    NoChange,
    #[error("local entries document edit failed: {0}")]
    Edit(String),
}

impl From<ReplicaError> for LocalDocError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Corrupt(m) => LocalDocError::Corrupt(m),
            ReplicaError::Edit(m) => LocalDocError::Edit(m),
            ReplicaError::BadKey(k) => LocalDocError::BadEntry(k),
        }
    }
}

/// The fields of an add or an edit; `None` keeps (edit) or defaults (add).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFields {
    pub plate: Option<String>,
    pub state: Option<String>,
    pub category: Option<Category>,
    pub reason: Option<String>,
    pub case: Option<String>,
    pub level: Option<AlertLevel>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub colour: Option<String>,
    pub expires_at: Option<UnixMillis>,
}

/// One editable field of an entry (the key suffix of its edits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Plate,
    State,
    Category,
    Reason,
    Case,
    Level,
    Make,
    Model,
    Colour,
    Expires,
}

impl Field {
    const ALL: [Field; 10] = [
        Field::Plate,
        Field::State,
        Field::Category,
        Field::Reason,
        Field::Case,
        Field::Level,
        Field::Make,
        Field::Model,
        Field::Colour,
        Field::Expires,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Plate => "plate",
            Field::State => "state",
            Field::Category => "category",
            Field::Reason => "reason",
            Field::Case => "case",
            Field::Level => "level",
            Field::Make => "make",
            Field::Model => "model",
            Field::Colour => "colour",
            Field::Expires => "expires",
        }
    }

    fn from_name(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A field's value in an edit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum FieldValue {
    Text(String),
    Category(Category),
    Level(AlertLevel),
    Time(UnixMillis),
}

/// One field edit as stored under `edit/<id>/<field>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Edit {
    at: UnixMillis,
    by: String,
    value: FieldValue,
}

/// One entry's raw parts, as read from a document.
#[derive(Debug, Clone)]
struct Record {
    base: LocalEntry,
    base_bytes: Vec<u8>,
    edits: BTreeMap<Field, (Edit, Vec<u8>)>,
    removal: Option<(Removal, Vec<u8>)>,
}

impl Record {
    fn view(&self) -> LocalEntry {
        let mut e = self.base.clone();
        for (field, (edit, _)) in &self.edits {
            apply_edit(&mut e, *field, &edit.value);
            e.updated_at = e.updated_at.max(edit.at);
        }
        e.removed = self.removal.as_ref().map(|(r, _)| r.clone());
        e
    }
}

fn apply_edit(e: &mut LocalEntry, field: Field, value: &FieldValue) {
    match (field, value) {
        (Field::Plate, FieldValue::Text(t)) => e.plate = t.clone(),
        (Field::State, FieldValue::Text(t)) => e.state = t.clone(),
        (Field::Reason, FieldValue::Text(t)) => e.reason = t.clone(),
        (Field::Case, FieldValue::Text(t)) => e.case = t.clone(),
        (Field::Make, FieldValue::Text(t)) => e.make = t.clone(),
        (Field::Model, FieldValue::Text(t)) => e.model = t.clone(),
        (Field::Colour, FieldValue::Text(t)) => e.colour = t.clone(),
        (Field::Category, FieldValue::Category(c)) => e.category = *c,
        (Field::Level, FieldValue::Level(l)) => e.level = *l,
        (Field::Expires, FieldValue::Time(t)) => e.expires_at = *t,
        // validate() refuses a mismatched pair; nothing to apply.
        _ => {}
    }
}

fn value_fits(field: Field, value: &FieldValue) -> bool {
    matches!(
        (field, value),
        (
            Field::Plate
                | Field::State
                | Field::Reason
                | Field::Case
                | Field::Make
                | Field::Model
                | Field::Colour,
            FieldValue::Text(_)
        ) | (Field::Category, FieldValue::Category(_))
            | (Field::Level, FieldValue::Level(_))
            | (Field::Expires, FieldValue::Time(_))
    )
}

/// The local entries, by id, as one automerge document.
pub struct LocalEntriesDoc {
    doc: Replica,
}

impl std::fmt::Debug for LocalEntriesDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEntriesDoc")
            .field("epoch", &self.epoch())
            .field("entries", &self.entries().len())
            .finish()
    }
}

impl LocalEntriesDoc {
    /// Add an entry. The plate (or pattern) and reason are required; the
    /// category defaults to `Suspect`, the expiry to policy's default and
    /// is clamped to its maximum.
    pub fn add(
        &mut self,
        id: &str,
        fields: EntryFields,
        author: &str,
        agency: &str,
        rules: &HotlistPolicy,
        now: UnixMillis,
    ) -> Result<LocalEntry, LocalDocError> {
        check_id(id)?;
        let key = format!("{ENTRY_PREFIX}{id}");
        if self.doc.has(&key) || self.doc.gone(id) {
            return Err(LocalDocError::Exists(id.into()));
        }
        let (Some(plate), Some(reason)) = (fields.plate.as_deref(), fields.reason.as_deref())
        else {
            return Err(LocalDocError::Missing);
        };
        let expires_at = fields
            .expires_at
            .unwrap_or(UnixMillis(now.0.saturating_add(
                u64::from(rules.local_default_expiry_days) * DAY_MS,
            )));
        let entry = LocalEntry {
            id: id.into(),
            plate: normal_plate(plate)?,
            state: normal_state(fields.state.as_deref().unwrap_or(""))?,
            category: fields.category.unwrap_or(Category::Suspect),
            reason: text("reason", reason)?,
            case: text("case", fields.case.as_deref().unwrap_or(""))?,
            level: fields.level.unwrap_or_default(),
            make: text("make", fields.make.as_deref().unwrap_or(""))?,
            model: text("model", fields.model.as_deref().unwrap_or(""))?,
            colour: text("colour", fields.colour.as_deref().unwrap_or(""))?,
            expires_at: clamp_expiry(expires_at, rules, now)?,
            author: text("author", author)?,
            agency: text("agency", agency)?,
            created_at: now,
            updated_at: now,
            removed: None,
        };
        if reason.trim().is_empty() {
            return Err(LocalDocError::Missing);
        }
        let bytes =
            postcard::to_allocvec(&entry).map_err(|e| LocalDocError::Edit(e.to_string()))?;
        self.doc.write(&key, bytes)?;
        Ok(entry)
    }

    /// Change the given fields of a live entry, each written on its own.
    pub fn edit(
        &mut self,
        id: &str,
        fields: EntryFields,
        by: &str,
        rules: &HotlistPolicy,
        now: UnixMillis,
    ) -> Result<LocalEntry, LocalDocError> {
        let record = self
            .record(id)?
            .ok_or_else(|| LocalDocError::NoSuchEntry(id.into()))?;
        if record.removal.is_some() {
            return Err(LocalDocError::Removed(id.into()));
        }
        let current = record.view();
        if !current.active(now) {
            return Err(LocalDocError::Expired(id.into()));
        }
        let mut changes: Vec<(Field, FieldValue)> = Vec::new();
        let mut text_field = |field: Field,
                              v: &Option<String>,
                              f: fn(&str) -> Result<String, LocalDocError>|
         -> Result<(), LocalDocError> {
            if let Some(v) = v {
                changes.push((field, FieldValue::Text(f(v)?)));
            }
            Ok(())
        };
        text_field(Field::Plate, &fields.plate, normal_plate)?;
        text_field(Field::State, &fields.state, normal_state)?;
        text_field(Field::Reason, &fields.reason, |s| text("reason", s))?;
        text_field(Field::Case, &fields.case, |s| text("case", s))?;
        text_field(Field::Make, &fields.make, |s| text("make", s))?;
        text_field(Field::Model, &fields.model, |s| text("model", s))?;
        text_field(Field::Colour, &fields.colour, |s| text("colour", s))?;
        if let Some(c) = fields.category {
            changes.push((Field::Category, FieldValue::Category(c)));
        }
        if let Some(l) = fields.level {
            changes.push((Field::Level, FieldValue::Level(l)));
        }
        if let Some(t) = fields.expires_at {
            changes.push((
                Field::Expires,
                FieldValue::Time(clamp_expiry(t, rules, now)?),
            ));
        }
        if changes.is_empty() {
            return Err(LocalDocError::NoChange);
        }
        let by = text("editor", by)?;
        for (field, value) in changes {
            // Stamp later than the value replaced, so this causal
            // overwrite is also the greatest edit on every replica.
            let floor = record
                .edits
                .get(&field)
                .map(|(e, _)| e.at)
                .unwrap_or(current.created_at);
            let at = now.max(UnixMillis(floor.0.saturating_add(1)));
            let edit = Edit {
                at,
                by: by.clone(),
                value,
            };
            let bytes =
                postcard::to_allocvec(&edit).map_err(|e| LocalDocError::Edit(e.to_string()))?;
            self.doc.write(&edit_key(id, field), bytes)?;
        }
        self.get(id)
            .ok_or_else(|| LocalDocError::NoSuchEntry(id.into()))
    }

    /// Remove an entry for good ("vehicle recovered").
    pub fn remove(&mut self, id: &str, removal: Removal) -> Result<(), LocalDocError> {
        let record = self
            .record(id)?
            .ok_or_else(|| LocalDocError::NoSuchEntry(id.into()))?;
        if record.removal.is_some() {
            return Err(LocalDocError::Removed(id.into()));
        }
        let removal = Removal {
            by: text("remover", &removal.by)?,
            at: removal.at,
            reason: text("reason", &removal.reason)?,
        };
        let bytes =
            postcard::to_allocvec(&removal).map_err(|e| LocalDocError::Edit(e.to_string()))?;
        Ok(self.doc.write(&removed_key(id), bytes)?)
    }

    /// Sign every change this document's writer makes from now on as
    /// `signer` (an officer logged in on an edge).
    pub fn sign_as(&mut self, signer: std::sync::Arc<crate::control::officer::OfficerSigner>) {
        self.doc.sign_as(DOC_NAME, signer);
    }

    /// Every entry the document holds whole (removed and expired ones
    /// until compaction drops them), sorted by id.
    pub fn entries(&self) -> Vec<LocalEntry> {
        self.records().values().map(Record::view).collect()
    }

    /// The entries that may raise alerts at `now`, sorted by id.
    pub fn active(&self, now: UnixMillis) -> Vec<LocalEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.active(now))
            .collect()
    }

    /// One entry, removed or not.
    pub fn get(&self, id: &str) -> Option<LocalEntry> {
        self.record(id).ok().flatten().map(|r| r.view())
    }

    /// Whether [`compact`](Self::compact) at `now` would drop anything.
    pub fn needs_compaction(&self, now: UnixMillis) -> bool {
        self.records().values().any(|r| drop_record(&r.view(), now))
            || self.doc.tombstones().values().any(|&until| until <= now)
    }

    /// A fresh document of the next epoch holding what is still worth
    /// keeping at `now`: entries removed or expired more than
    /// [`GRACE_MS`] ago leave (a removed one keeps a tombstone until
    /// [`TOMBSTONE_MS`] after its removal and its expiry). Only the hub
    /// compacts; other replicas take the new epoch when they merge it.
    pub fn compact(&self, now: UnixMillis) -> Result<LocalEntriesDoc, LocalDocError> {
        let mut fresh = LocalEntriesDoc::new();
        fresh.doc.set_epoch(self.epoch().saturating_add(1))?;
        fresh.doc.keep_tombstones(&self.doc, now)?;
        for (id, record) in self.records() {
            let view = record.view();
            if drop_record(&view, now) {
                if view.removed.is_some() {
                    fresh.doc.bury(&id, tombstone_until(&view), now)?;
                }
                continue;
            }
            fresh.copy_record(self, &id, &record)?;
        }
        Ok(fresh)
    }

    /// Apply the content of `stale` (an older epoch) onto this document.
    fn rebase(&mut self, stale: &LocalEntriesDoc, now: UnixMillis) -> Result<(), LocalDocError> {
        // Its tombstones first.
        let gone = self.doc.keep_tombstones(&stale.doc, now)?;
        let mine = self.records();
        for (id, theirs) in stale.records() {
            if gone.contains_key(&id) {
                continue;
            }
            let Some(ours) = mine.get(&id) else {
                // Unknown here: new on the stale side, or dropped here as
                // expired. A live one comes back; a removed one comes as
                // its removal (a tombstone once past the grace period), so
                // a third replica's stale copy cannot revive it later.
                let view = theirs.view();
                if view.removed.is_some() && drop_record(&view, now) {
                    self.doc.bury(&id, tombstone_until(&view), now)?;
                } else if view.removed.is_some() || view.active(now) {
                    self.copy_record(stale, &id, &theirs)?;
                }
                continue;
            };
            if ours.removal.is_none() {
                if let Some((_, bytes)) = &theirs.removal {
                    self.doc.copy_from(&stale.doc, &removed_key(&id), bytes)?;
                }
            }
            for (field, (edit, bytes)) in &theirs.edits {
                if ours.edits.get(field).is_none_or(|(o, _)| edit > o) {
                    self.doc
                        .copy_from(&stale.doc, &edit_key(&id, *field), bytes)?;
                }
            }
        }
        Ok(())
    }

    /// Copy `record` of `from` (with the signatures it keeps).
    fn copy_record(
        &mut self,
        from: &LocalEntriesDoc,
        id: &str,
        record: &Record,
    ) -> Result<(), LocalDocError> {
        self.doc.copy_from(
            &from.doc,
            &format!("{ENTRY_PREFIX}{id}"),
            &record.base_bytes,
        )?;
        for (field, (_, bytes)) in &record.edits {
            self.doc
                .copy_from(&from.doc, &edit_key(id, *field), bytes)?;
        }
        if let Some((_, bytes)) = &record.removal {
            self.doc.copy_from(&from.doc, &removed_key(id), bytes)?;
        }
        Ok(())
    }

    fn records(&self) -> BTreeMap<String, Record> {
        self.doc
            .records(ENTRY_PREFIX, |id| self.record(id).ok().flatten())
    }

    fn record(&self, id: &str) -> Result<Option<Record>, LocalDocError> {
        let bad = || LocalDocError::BadEntry(id.into());
        // A tombstone (met in a merge with a copy that still had the
        // record) hides the record: it was removed for good.
        if self.doc.gone(id) {
            return Ok(None);
        }
        // Copies of one entry are identical bytes; take the least.
        let Some(base_bytes) = self
            .doc
            .all_bytes(&format!("{ENTRY_PREFIX}{id}"))?
            .into_iter()
            .min()
        else {
            return Ok(None);
        };
        let base: LocalEntry = postcard::from_bytes(&base_bytes).map_err(|_| bad())?;
        if base.id != id || base.removed.is_some() {
            return Err(bad());
        }
        let mut edits = BTreeMap::new();
        for field in Field::ALL {
            let mut best: Option<(Edit, Vec<u8>)> = None;
            for bytes in self.doc.all_bytes(&edit_key(id, field))? {
                let edit: Edit = postcard::from_bytes(&bytes).map_err(|_| bad())?;
                if !value_fits(field, &edit.value) {
                    return Err(bad());
                }
                if best.as_ref().is_none_or(|(b, _)| edit > *b) {
                    best = Some((edit, bytes));
                }
            }
            if let Some(best) = best {
                edits.insert(field, best);
            }
        }
        // Concurrent removals: the earliest (then least bytes) counts.
        let removal = self.doc.earliest(
            &removed_key(id),
            |b| postcard::from_bytes::<Removal>(b).map_err(|_| bad()),
            |r| r.at,
        )?;
        Ok(Some(Record {
            base,
            base_bytes,
            edits,
            removal,
        }))
    }

    fn validate(&self) -> Result<(), LocalDocError> {
        let mut ids = BTreeSet::new();
        let mut referenced = BTreeSet::new();
        for key in self.doc.keys() {
            if self.doc.check_common(&key)? {
                continue;
            }
            if let Some(id) = key.strip_prefix(ENTRY_PREFIX) {
                check_id(id).map_err(|_| LocalDocError::BadEntry(key.clone()))?;
                self.record(id)?;
                ids.insert(id.to_string());
            } else if let Some(rest) = key.strip_prefix(EDIT_PREFIX) {
                let (id, field) = rest
                    .rsplit_once('/')
                    .ok_or_else(|| LocalDocError::BadEntry(key.clone()))?;
                Field::from_name(field).ok_or_else(|| LocalDocError::BadEntry(key.clone()))?;
                referenced.insert(id.to_string());
            } else if let Some(id) = key.strip_prefix(REMOVED_PREFIX) {
                referenced.insert(id.to_string());
            } else {
                return Err(LocalDocError::BadEntry(key));
            }
        }
        // Edits and removals only travel with the entry they change.
        if let Some(orphan) = referenced.difference(&ids).next() {
            return Err(LocalDocError::BadEntry(orphan.clone()));
        }
        Ok(())
    }
}

replicated_doc!(
    LocalEntriesDoc,
    LocalDocError,
    MAX_LOCAL_DOC_BYTES,
    LocalDocError::TooLarge
);

fn drop_record(e: &LocalEntry, now: UnixMillis) -> bool {
    let past = |t: UnixMillis| t.0.saturating_add(GRACE_MS) <= now.0;
    past(e.expires_at) || e.removed.as_ref().is_some_and(|r| past(r.at))
}

/// How long a removed entry's tombstone is kept.
fn tombstone_until(e: &LocalEntry) -> UnixMillis {
    let removed_at = e.removed.as_ref().map_or(e.updated_at, |r| r.at);
    UnixMillis(
        removed_at
            .0
            .saturating_add(TOMBSTONE_MS)
            .max(e.expires_at.0),
    )
}

fn edit_key(id: &str, field: Field) -> String {
    format!("{EDIT_PREFIX}{id}/{}", field.name())
}

fn removed_key(id: &str) -> String {
    format!("{REMOVED_PREFIX}{id}")
}

fn check_id(id: &str) -> Result<(), LocalDocError> {
    if !valid_id(id) {
        return Err(LocalDocError::BadId(id.into()));
    }
    Ok(())
}

/// A plate or wildcard pattern as [`PlatePattern`] normalises it.
pub fn normal_plate(plate: &str) -> Result<String, LocalDocError> {
    PlatePattern::parse(plate, false)
        .map(|p| p.as_str().to_string())
        .map_err(|e| LocalDocError::BadPlate(plate.into(), e))
}

fn normal_state(state: &str) -> Result<String, LocalDocError> {
    let s = state.trim().to_ascii_uppercase();
    if s.is_empty() || (s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())) {
        Ok(s)
    } else {
        Err(LocalDocError::BadState(state.into()))
    }
}

fn text(what: &'static str, s: &str) -> Result<String, LocalDocError> {
    let s = s.trim();
    if s.chars().count() > MAX_ENTRY_TEXT {
        return Err(LocalDocError::TooLong(what));
    }
    Ok(s.to_string())
}

/// An expiry in the future, no later than policy's maximum after `now`.
fn clamp_expiry(
    at: UnixMillis,
    rules: &HotlistPolicy,
    now: UnixMillis,
) -> Result<UnixMillis, LocalDocError> {
    if at <= now {
        return Err(LocalDocError::ExpiryPast);
    }
    let max = now
        .0
        .saturating_add(u64::from(rules.local_max_expiry_days) * DAY_MS);
    Ok(UnixMillis(at.0.min(max)))
}

/// A new entry id: the writer's name and a random part, so ids made on
/// different nodes offline never collide.
pub fn new_id(writer: &str) -> String {
    let prefix: String = writer
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    let random: u64 = rand::random();
    format!("{prefix}-{random:016x}")
}

mod changes;
mod cli;

pub use changes::DOC_NAME;
pub use cli::{summary, EntryArgs};

#[cfg(test)]
mod tests;
