//! The hub's side of a node's local entries: the logical changes a node's
//! copy has that the hub's lacks ([`LocalEntriesDoc::changes_from`]), and
//! writing an accepted one into the hub's document
//! ([`LocalEntriesDoc::apply`]). What may be accepted is decided in
//! [`crate::control::node_change`].

use super::{
    check_id, edit_key, normal_plate, normal_state, removed_key, text, Edit, Field, FieldValue,
    LocalDocError, LocalEntriesDoc, Record, ENTRY_PREFIX,
};
use crate::control::node_change::{NodeChange, What};
use crate::control::officer::ChangeSignature;
use crate::hotlist::{LocalEntry, MAX_ENTRY_TEXT};
use crate::types::UnixMillis;

/// The name signatures give this document.
pub const DOC_NAME: &str = crate::control::node_change::LOCAL_ENTRIES_DOC;

impl LocalEntriesDoc {
    /// The logical changes `theirs` (a node's copy) has that this
    /// document lacks, at `now`: entries it added, field edits later than
    /// ours, removals, and what no node may make (a rewritten entry, a
    /// tombstone of a live entry, an epoch beyond ours). What the node
    /// merely has not caught up with (an entry we dropped, an edit older
    /// than ours) is no change. Each comes with the signatures the node
    /// keeps for it; new entries come before their edits and removals.
    pub fn changes_from(&self, theirs: &LocalEntriesDoc, now: UnixMillis) -> Vec<NodeChange> {
        let mine = self.records();
        let our_gone = self.doc.tombstones();
        let mut out = self
            .doc
            .epoch_and_tombstone_changes(&theirs.doc, DOC_NAME, now, |id| {
                mine.get(id)
                    .filter(|r| r.removal.is_none())
                    .map(|ours| What::EntryTombstone { entry: ours.view() })
            });
        for (id, record) in theirs.records() {
            if our_gone.contains_key(&id) {
                continue;
            }
            let key = format!("{ENTRY_PREFIX}{id}");
            // Every value a node keeps for the entry (each side of a
            // conflict): the least is what it lists, any other is a write.
            let values = theirs.doc.all_bytes(&key).unwrap_or_default();
            match mine.get(&id) {
                Some(ours) => {
                    let rewritten = values.into_iter().filter(|v| *v != ours.base_bytes);
                    out.extend(
                        theirs
                            .doc
                            .decoded_changes(DOC_NAME, &key, rewritten, |entry| {
                                (What::EntryRewritten { entry }, None)
                            }),
                    );
                    edits_and_removal(&mut out, theirs, &id, &record, Some(ours));
                }
                None => {
                    // Dead by time and never removed: nothing to keep.
                    let view = record.view();
                    if view.removed.is_none() && !view.active(now) {
                        continue;
                    }
                    out.extend(theirs.doc.decoded_changes(DOC_NAME, &key, values, |entry| {
                        let invalid = check_entry(&entry).err();
                        (What::EntryAdded { entry }, invalid)
                    }));
                    edits_and_removal(&mut out, theirs, &id, &record, None);
                }
            }
        }
        out
    }

    /// Write an accepted change (its exact value, and the signature that
    /// verified) as this document's own writer.
    pub fn apply(
        &mut self,
        change: &NodeChange,
        signature: &ChangeSignature,
    ) -> Result<(), LocalDocError> {
        let id = match &change.what {
            What::EntryAdded { entry } => {
                if self.doc.has(&change.key) || self.doc.gone(&entry.id) {
                    return Err(LocalDocError::Exists(entry.id.clone()));
                }
                None
            }
            What::EntryEdited { entry, .. } => Some(entry.id.as_str()),
            What::EntryRemoved { entry, .. } => Some(entry.id.as_str()),
            _ => {
                return Err(LocalDocError::Edit(
                    "only an added entry, an edit or a removal is taken from a node".into(),
                ))
            }
        };
        if let Some(id) = id {
            // Edits and removals only travel with the entry they change.
            let record = self
                .record(id)?
                .ok_or_else(|| LocalDocError::NoSuchEntry(id.into()))?;
            if matches!(change.what, What::EntryRemoved { .. }) && record.removal.is_some() {
                return Err(LocalDocError::Removed(id.into()));
            }
        }
        self.doc.put_bytes(&change.key, change.value.clone())?;
        self.doc
            .put_signature(&change.key, &change.value, signature)?;
        Ok(())
    }
}

/// The edits of `record` later than `ours` has (all of them for an entry
/// we lack), and its removal if ours has none.
fn edits_and_removal(
    out: &mut Vec<NodeChange>,
    theirs: &LocalEntriesDoc,
    id: &str,
    record: &Record,
    ours: Option<&Record>,
) {
    // Who the entry belongs to: as we hold it, else as they added it.
    let base = ours.map_or(&record.base, |o| &o.base);
    for (field, (edit, bytes)) in &record.edits {
        if ours
            .and_then(|o| o.edits.get(field))
            .is_some_and(|(o, _)| edit <= o)
        {
            continue;
        }
        let expires_at = match edit.value {
            FieldValue::Time(t) => Some(t),
            _ => None,
        };
        out.push(theirs.doc.node_change(
            DOC_NAME,
            &edit_key(id, *field),
            bytes.clone(),
            What::EntryEdited {
                entry: base.clone(),
                field: field.name(),
                at: edit.at,
                by: edit.by.clone(),
                expires_at,
            },
            check_edit(*field, edit).err(),
        ));
    }
    if let Some((removal, bytes)) = &record.removal {
        if ours.is_none_or(|o| o.removal.is_none()) {
            out.push(
                theirs.doc.node_change(
                    DOC_NAME,
                    &removed_key(id),
                    bytes.clone(),
                    What::EntryRemoved {
                        entry: base.clone(),
                        removal: removal.clone(),
                    },
                    text_ok("removal reason", &removal.reason, false)
                        .and_then(|()| text_ok("remover", &removal.by, true))
                        .err(),
                ),
            );
        }
    }
}

/// Whether an entry as a node added it is one the document's own `add`
/// would have written: a valid id, a normalised plate and state, trimmed
/// texts within bounds, a reason, an expiry after its creation.
fn check_entry(e: &LocalEntry) -> Result<(), String> {
    check_id(&e.id).map_err(|err| err.to_string())?;
    if normal_plate(&e.plate).ok().as_deref() != Some(e.plate.as_str()) {
        return Err(format!(
            "plate {:?} is not a normalised plate or pattern",
            e.plate
        ));
    }
    if normal_state(&e.state).ok().as_deref() != Some(e.state.as_str()) {
        return Err(format!("state {:?} is not two letters", e.state));
    }
    text_ok("reason", &e.reason, true)?;
    for (what, t) in [
        ("case", &e.case),
        ("make", &e.make),
        ("model", &e.model),
        ("colour", &e.colour),
    ] {
        text_ok(what, t, false)?;
    }
    text_ok("author", &e.author, true)?;
    text_ok("agency", &e.agency, true)?;
    if e.expires_at <= e.created_at {
        return Err("it expires before it was added".into());
    }
    Ok(())
}

/// Whether an edit's value is one the document's own `edit` would have
/// written for that field.
fn check_edit(field: Field, edit: &Edit) -> Result<(), String> {
    text_ok("editor", &edit.by, true)?;
    let FieldValue::Text(t) = &edit.value else {
        return Ok(());
    };
    let normal = match field {
        Field::Plate => normal_plate(t).map_err(|e| e.to_string())?,
        Field::State => normal_state(t).map_err(|e| e.to_string())?,
        _ => text(field.name(), t).map_err(|e| e.to_string())?,
    };
    if normal != *t {
        return Err(format!("{} {t:?} is not normalised", field.name()));
    }
    Ok(())
}

/// A text as the document writes one: trimmed, within
/// [`MAX_ENTRY_TEXT`] characters, and not empty when `required`.
fn text_ok(what: &str, s: &str, required: bool) -> Result<(), String> {
    if s.trim() != s || s.chars().count() > MAX_ENTRY_TEXT || (required && s.is_empty()) {
        return Err(format!(
            "{what} is empty, untrimmed or longer than {MAX_ENTRY_TEXT} characters"
        ));
    }
    Ok(())
}
