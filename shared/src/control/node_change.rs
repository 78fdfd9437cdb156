//! What a node may change in the replicated documents, and the check the
//! hub makes of every change a node sends.
//!
//! The hub never merges a node's document wholesale. It asks the
//! document for the logical changes the node's copy has that its own
//! lacks ([`NodeChange`]: a hold placed, a release, an entry added, a
//! field edited, a removal, a tombstone, an epoch), checks each with
//! [`check`], applies the accepted ones to its own document as their
//! writer, and records every one, accepted or refused, in its access log.
//!
//! The rules ([`check`]):
//! - only a patrol vehicle changes anything (by its certificate): poles
//!   change nothing;
//! - a change counts only if signed ([`ChangeSignature`]) on that very
//!   node by an officer the policy allows on edges, with a key the hub
//!   knows to be theirs (their current one or an earlier one);
//! - the officer has the right ([`officer_may`]): officers place holds and
//!   add entries in their own name, and edit or remove only the entries
//!   they added. Nobody releases, rewrites or tombstones a hold, rewrites
//!   or tombstones an entry, or compacts a document from a node: holds
//!   are released at the hub by operators and supervisors, and only the
//!   hub compacts;
//! - what a peer controls and the hub compares is bounded: no time later
//!   than [`MAX_CLOCK_AHEAD_MS`] past the hub's clock (an edit stamped
//!   years ahead would win every later edit), no expiry past what policy
//!   allows, values that decode and pass the document's own checks.

use crate::control::holds::{Hold, Release};
use crate::control::officer::ChangeSignature;
use crate::control::policy::HotlistPolicy;
use crate::crypto::tagged_hash;
use crate::hotlist::{LocalEntry, Removal};
use crate::log::AccessAction;
use crate::types::{DeviceKind, Hash32, UnixMillis};

/// The name signatures give the legal holds document.
pub const HOLDS_DOC: &str = "holds";
/// The name signatures give the local hotlist entries document.
pub const LOCAL_ENTRIES_DOC: &str = "local-entries";

/// How far ahead of the hub's clock a node's times may run.
pub const MAX_CLOCK_AHEAD_MS: u64 = 10 * 60 * 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// What a logical change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A hold placed (the hub does not have it).
    HoldPlaced { hold: Hold },
    /// A hold the hub has in force, released.
    HoldReleased { hold: Hold, release: Release },
    /// A hold the hub has, written again with other content (its scope
    /// narrowed, its case changed, …).
    HoldRewritten { hold: Hold },
    /// A tombstone for a hold the hub has in force.
    HoldTombstone { hold: Hold },
    /// An entry added (the hub does not have it).
    EntryAdded { entry: LocalEntry },
    /// A field of an entry edited, later than the hub's value. `entry` is
    /// the entry as added (its author).
    EntryEdited {
        entry: LocalEntry,
        field: &'static str,
        at: UnixMillis,
        by: String,
        /// The new expiry, for an edit of the expiry.
        expires_at: Option<UnixMillis>,
    },
    /// An entry removed (the hub has it, not removed).
    EntryRemoved { entry: LocalEntry, removal: Removal },
    /// An entry the hub has, written again with other content.
    EntryRewritten { entry: LocalEntry },
    /// A tombstone for an entry the hub has, not removed.
    EntryTombstone { entry: LocalEntry },
    /// A compaction count beyond the hub's (only the hub compacts).
    Epoch { theirs: u64, ours: u64 },
}

/// One logical change a node's copy of a document has that the hub's
/// lacks.
#[derive(Debug, Clone)]
pub struct NodeChange {
    /// The document ([`HOLDS_DOC`], [`LOCAL_ENTRIES_DOC`]).
    pub doc: &'static str,
    /// The key written, and the exact bytes written there (empty for an
    /// epoch; a tombstone's time as big-endian bytes).
    pub key: String,
    pub value: Vec<u8>,
    pub what: What,
    /// Why the value itself is not acceptable, if it is not (its document
    /// says: a plate not normalised, an empty scope, an over-long text…).
    pub invalid: Option<String>,
    /// The signatures the node's copy keeps for this very key and value.
    pub signatures: Vec<ChangeSignature>,
}

/// What the hub knows of an officer who may sign.
#[derive(Debug, Clone)]
pub struct KnownOfficer {
    pub agency: String,
    /// Every public key the hub knows to be theirs, current and earlier.
    pub keys: Vec<[u8; 32]>,
}

/// What a check needs besides the change.
pub struct Context<'a> {
    /// The sending node's name and kind, from its certificate.
    pub node: &'a str,
    pub kind: DeviceKind,
    pub now: UnixMillis,
    /// The hub's hotlist rules (longest expiry).
    pub rules: &'a HotlistPolicy,
    /// An officer the policy allows on edges, by username.
    pub officer: &'a (dyn Fn(&str) -> Option<KnownOfficer> + Sync),
}

/// The outcome of a check, with who it is recorded under.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The officer the change is in the name of (the signer, or the name
    /// the change itself gives), and their agency as far as known.
    pub officer: String,
    pub agency: String,
    /// `Ok(signature)`: accepted, with the signature that verified.
    pub outcome: Result<ChangeSignature, String>,
}

/// Whether `officer` may edit or remove an entry `author` added: only
/// their own (at the hub, operators and supervisors manage every entry).
pub fn may_change_entry(author: &str, officer: &str) -> Result<(), String> {
    if author == officer {
        Ok(())
    } else {
        Err(format!(
            "{officer} may change only the entries they added ({author} added this one)"
        ))
    }
}

/// Whether `officer` of `agency` may make this change from an edge.
pub fn officer_may(what: &What, officer: &str, agency: &str) -> Result<(), String> {
    let own = |who: &str, their_agency: &str, what: &str| {
        if who != officer || their_agency != agency {
            Err(format!(
                "the {what} names {who} of {their_agency}, not the officer who signed it"
            ))
        } else {
            Ok(())
        }
    };
    match what {
        What::HoldPlaced { hold } => own(&hold.placed_by, &hold.agency, "hold"),
        What::EntryAdded { entry } => own(&entry.author, &entry.agency, "entry"),
        What::EntryEdited { entry, by, .. } => {
            may_change_entry(&entry.author, officer)?;
            own(by, agency, "edit")
        }
        What::EntryRemoved { entry, removal } => {
            may_change_entry(&entry.author, officer)?;
            own(&removal.by, agency, "removal")
        }
        What::HoldReleased { .. } => Err(
            "a hold is released only at the hub, by an operator or supervisor, never from a node"
                .into(),
        ),
        What::HoldRewritten { .. } => Err("a placed hold is never rewritten".into()),
        What::EntryRewritten { .. } => {
            Err("an added entry is never rewritten: its fields are edited one by one".into())
        }
        What::HoldTombstone { .. } | What::EntryTombstone { .. } | What::Epoch { .. } => {
            Err("only the hub compacts a document".into())
        }
    }
}

impl What {
    /// The name the change itself gives its author, and their agency.
    fn claimed(&self) -> (String, String) {
        match self {
            What::HoldPlaced { hold } | What::HoldRewritten { hold } => {
                (hold.placed_by.clone(), hold.agency.clone())
            }
            What::HoldReleased { release, .. } => (release.by.clone(), String::new()),
            What::EntryAdded { entry } | What::EntryRewritten { entry } => {
                (entry.author.clone(), entry.agency.clone())
            }
            What::EntryEdited { by, .. } => (by.clone(), String::new()),
            What::EntryRemoved { removal, .. } => (removal.by.clone(), String::new()),
            What::HoldTombstone { .. } | What::EntryTombstone { .. } | What::Epoch { .. } => {
                (String::new(), String::new())
            }
        }
    }

    /// The times the node controls in this change, with what each is.
    fn times(&self) -> Vec<(&'static str, UnixMillis)> {
        match self {
            What::HoldPlaced { hold } => vec![("placed", hold.placed_at)],
            What::EntryAdded { entry } => {
                vec![("created", entry.created_at), ("updated", entry.updated_at)]
            }
            What::EntryEdited { at, .. } => vec![("edit", *at)],
            What::EntryRemoved { removal, .. } => vec![("removal", removal.at)],
            _ => Vec::new(),
        }
    }
}

/// Check one change from a node. See the module docs for the rules.
pub fn check(change: &NodeChange, ctx: &Context) -> Verdict {
    let (claimed, claimed_agency) = change.what.claimed();
    // Recorded under the signer when a signature of this node verifies,
    // else under the name the change gives.
    let signed = change
        .signatures
        .iter()
        .find(|s| s.node == ctx.node && s.verifies(change.doc, &change.key, &change.value));
    let officer = signed.map_or(claimed, |s| s.officer.clone());
    let known = (ctx.officer)(&officer);
    let agency = known.as_ref().map_or(claimed_agency, |k| k.agency.clone());
    let outcome = decide(change, ctx, signed, known.as_ref(), &officer);
    Verdict {
        officer,
        agency,
        outcome,
    }
}

fn decide(
    change: &NodeChange,
    ctx: &Context,
    signed: Option<&ChangeSignature>,
    known: Option<&KnownOfficer>,
    officer: &str,
) -> Result<ChangeSignature, String> {
    if ctx.kind != DeviceKind::Vehicle {
        return Err(format!(
            "{} is a fixed pole: poles change no hold and no hotlist entry",
            ctx.node
        ));
    }
    // What nobody may do from a node, signed or not (the rule refuses
    // each of these whoever asks).
    match &change.what {
        What::HoldPlaced { .. }
        | What::EntryAdded { .. }
        | What::EntryEdited { .. }
        | What::EntryRemoved { .. } => {}
        never => officer_may(never, officer, "")?,
    }
    if let Some(why) = &change.invalid {
        return Err(format!("the change is not valid: {why}"));
    }
    let Some(signature) = signed else {
        return Err(match change.signatures.first() {
            Some(s) if s.node != ctx.node => format!(
                "signed on node {}, not on {}: a signature counts only on the node it was made on",
                s.node, ctx.node
            ),
            Some(_) => "its signature does not verify".into(),
            None => "not signed by an officer on this node".into(),
        });
    };
    let Some(known) = known else {
        return Err(format!(
            "{officer} is not an officer the policy allows on edges"
        ));
    };
    if !known.keys.contains(&signature.public) {
        return Err(format!(
            "signed with a key the hub does not know to be {officer}'s"
        ));
    }
    officer_may(&change.what, officer, &known.agency)?;
    let latest = UnixMillis(ctx.now.0.saturating_add(MAX_CLOCK_AHEAD_MS));
    for (what, at) in change.what.times() {
        if at > latest {
            return Err(format!(
                "its {what} time {at} is ahead of the hub's clock {}: a node's times may run at most {} minutes ahead",
                ctx.now,
                MAX_CLOCK_AHEAD_MS / 60_000
            ));
        }
    }
    let longest = u64::from(ctx.rules.local_max_expiry_days).saturating_mul(DAY_MS);
    let expiry = match &change.what {
        What::EntryAdded { entry } => Some((entry.created_at, entry.expires_at)),
        What::EntryEdited {
            at,
            expires_at: Some(expires),
            ..
        } => Some((*at, *expires)),
        _ => None,
    };
    if let Some((from, expires)) = expiry {
        if expires.0 > from.0.saturating_add(longest) {
            return Err(format!(
                "it expires later than policy allows ({} days after it is added or edited)",
                ctx.rules.local_max_expiry_days
            ));
        }
    }
    Ok(signature.clone())
}

impl NodeChange {
    /// The same change from the same node has this digest: a refusal the
    /// node sends again is recognised (and not recorded again).
    pub fn digest(&self, node: &str) -> Hash32 {
        tagged_hash(
            b"alpr/control/v1/node-change\0",
            &[
                node.as_bytes(),
                &[0],
                self.doc.as_bytes(),
                &[0],
                self.key.as_bytes(),
                &[0],
                &self.value,
            ],
        )
    }

    /// How the access log names it: the action, what was changed, and the
    /// case number where there is one.
    pub fn describe(&self) -> (AccessAction, String, Option<String>) {
        let (action, text, case) = match &self.what {
            What::HoldPlaced { hold } => (
                AccessAction::Hold,
                format!("hold {} placed on {}", hold.id, hold.placed_on),
                Some(hold.case.clone()),
            ),
            What::HoldReleased { hold, .. } => (
                AccessAction::HoldRelease,
                format!("hold {} released", hold.id),
                Some(hold.case.clone()),
            ),
            What::HoldRewritten { hold } => (
                AccessAction::Hold,
                format!("hold {} rewritten", hold.id),
                Some(hold.case.clone()),
            ),
            What::HoldTombstone { hold } => (
                AccessAction::HoldRelease,
                format!("hold {} tombstoned", hold.id),
                Some(hold.case.clone()),
            ),
            What::EntryAdded { entry } => (
                AccessAction::HotlistAdd,
                format!("entry {} added plate={}", entry.id, entry.plate),
                Some(entry.case.clone()),
            ),
            What::EntryEdited { entry, field, .. } => (
                AccessAction::HotlistEdit,
                format!("entry {} edited {field}", entry.id),
                Some(entry.case.clone()),
            ),
            What::EntryRemoved { entry, .. } => (
                AccessAction::HotlistRemove,
                format!("entry {} removed", entry.id),
                Some(entry.case.clone()),
            ),
            What::EntryRewritten { entry } => (
                AccessAction::HotlistEdit,
                format!("entry {} rewritten", entry.id),
                Some(entry.case.clone()),
            ),
            What::EntryTombstone { entry } => (
                AccessAction::HotlistRemove,
                format!("entry {} tombstoned", entry.id),
                Some(entry.case.clone()),
            ),
            What::Epoch { theirs, ours } => (
                if self.doc == HOLDS_DOC {
                    AccessAction::Hold
                } else {
                    AccessAction::HotlistEdit
                },
                format!(
                    "{} document of epoch {theirs} (the hub's is {ours})",
                    self.doc
                ),
                None,
            ),
        };
        (action, text, case.filter(|c| !c.is_empty()))
    }
}

#[cfg(test)]
mod tests;
