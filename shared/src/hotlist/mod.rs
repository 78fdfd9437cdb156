//! Hotlists: the lists of plates an agency watches for, and how a read is
//! matched against them.
//!
//! Two kinds of list, shaped by who writes them (see DESIGN.md, "Control
//! state"):
//! - **bulk lists** (NCIC and state extracts, up to a million rows, one
//!   writer, replaced whole about twice a day) are parsed from the source
//!   file ([`import`]) into a signed, immutable [`generation::Generation`]
//!   whose compact index loads without parsing; edges move from one
//!   generation to the next with a [`delta`];
//! - **local entries** that operators and officers add, edit and remove
//!   (often partial plates with wildcards) live in an automerge document
//!   ([`local::LocalEntriesDoc`]) that merges across offline writers.
//!
//! [`matcher::Matcher`] holds both and matches every alternative of a
//! read against them, saying how each hit matched ([`MatchKind`]).
//! [`sample`] writes realistic extracts for tests and benchmarks;
//! [`push_events`] is what `alpr-bench hub push` hears from its simulated edges.

pub mod delta;
pub mod generation;
pub mod import;
pub mod local;
pub mod matcher;
pub mod push_events;
pub mod sample;

use serde::{Deserialize, Serialize};

use crate::types::{Confidence, UnixMillis};

/// Longest plate a list may carry (NCIC's LIC field is ten characters).
pub const MAX_PLATE_LEN: usize = 10;
/// Longest free-text field of an entry (make, model, note, reason, …).
pub const MAX_ENTRY_TEXT: usize = 120;
/// Most substitutions an OCR-equivalent match may make on one list.
pub const MAX_SUBSTITUTIONS: u8 = 2;

/// What an entry is listed for. NCIC's list-type codes; an agency chooses
/// which it loads (California policy must be able to exclude immigration).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    StolenVehicle,
    StolenPlate,
    Amber,
    Wanted,
    Missing,
    Felony,
    ProtectionOrder,
    Gang,
    Immigration,
    SexOffender,
    Terrorism,
    /// A locally entered suspect vehicle (a partial plate from a crime).
    Suspect,
    #[default]
    Other,
}

impl Category {
    pub const ALL: [Category; 13] = [
        Category::StolenVehicle,
        Category::StolenPlate,
        Category::Amber,
        Category::Wanted,
        Category::Missing,
        Category::Felony,
        Category::ProtectionOrder,
        Category::Gang,
        Category::Immigration,
        Category::SexOffender,
        Category::Terrorism,
        Category::Suspect,
        Category::Other,
    ];

    /// The one-letter code NCIC extracts put in column 0.
    pub fn code(self) -> char {
        match self {
            Category::StolenVehicle => 'V',
            Category::StolenPlate => 'P',
            Category::Amber => 'A',
            Category::Wanted => 'W',
            Category::Missing => 'M',
            Category::Felony => 'F',
            Category::ProtectionOrder => 'R',
            Category::Gang => 'G',
            Category::Immigration => 'I',
            Category::SexOffender => 'X',
            Category::Terrorism => 'T',
            Category::Suspect => 'S',
            Category::Other => 'O',
        }
    }

    /// The category of an NCIC list-type code; unknown codes are `Other`.
    pub fn from_code(c: char) -> Category {
        Category::ALL
            .into_iter()
            .find(|k| k.code() == c.to_ascii_uppercase())
            .unwrap_or(Category::Other)
    }

    /// The name used in commands, config and JSON (`stolen-vehicle`).
    pub fn name(self) -> &'static str {
        match self {
            Category::StolenVehicle => "stolen-vehicle",
            Category::StolenPlate => "stolen-plate",
            Category::Amber => "amber",
            Category::Wanted => "wanted",
            Category::Missing => "missing",
            Category::Felony => "felony",
            Category::ProtectionOrder => "protection-order",
            Category::Gang => "gang",
            Category::Immigration => "immigration",
            Category::SexOffender => "sex-offender",
            Category::Terrorism => "terrorism",
            Category::Suspect => "suspect",
            Category::Other => "other",
        }
    }

    pub fn from_name(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of a bulk list. Text fields are as the source gave them (bounded
/// by [`MAX_ENTRY_TEXT`]); empty when the source had none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HotEntry {
    /// Normalised plate: A–Z and 0–9, 1..=[`MAX_PLATE_LEN`] characters.
    pub plate: String,
    /// Issuing state (two letters, e.g. `CA`), empty if the source has none.
    pub state: String,
    pub category: Category,
    /// Plate type (NCIC LIT, e.g. `PC` passenger car).
    pub plate_type: String,
    /// Plate expiry year (LIY).
    pub plate_year: String,
    /// Vehicle year, make, model, colour (VYR, VMA, VMO, VCO).
    pub vehicle_year: String,
    pub make: String,
    pub model: String,
    pub colour: String,
    pub vin: String,
    /// NCIC number, originating agency, its case number (NIC, ORI, OCA).
    pub nic: String,
    pub ori: String,
    pub oca: String,
    /// Date of entry or of loss, as the source wrote it.
    pub entered: String,
    /// Miscellaneous remarks (MIS).
    pub note: String,
}

impl HotEntry {
    /// The entry's text fields besides plate and state, in a fixed order
    /// (what a generation stores for it, and what a change is judged by).
    pub fn details(&self) -> [&str; 12] {
        [
            &self.plate_type,
            &self.plate_year,
            &self.vehicle_year,
            &self.make,
            &self.model,
            &self.colour,
            &self.vin,
            &self.nic,
            &self.ori,
            &self.oca,
            &self.entered,
            &self.note,
        ]
    }
}

/// How hard a list's hits are pressed on the officer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AlertLevel {
    /// Shown in the alert list only.
    Low,
    #[default]
    Standard,
    /// Sounded at once (Amber alerts, armed and dangerous).
    Urgent,
}

/// How a list matches a read's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchStrategy {
    /// Only the plate as read (or one of its alternatives), character for
    /// character.
    Exact,
    /// Also plates that differ only by OCR-confusable characters (0/O/D/Q,
    /// 1/I, 2/Z, 5/S, 8/B, 6/G), at most this many of them
    /// (1..=[`MAX_SUBSTITUTIONS`]).
    OcrEquivalent { max_substitutions: u8 },
}

impl Default for MatchStrategy {
    fn default() -> Self {
        MatchStrategy::OcrEquivalent {
            max_substitutions: 1,
        }
    }
}

/// A list's rules, set by the hub for each source and signed into every
/// generation of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListSettings {
    pub strategy: MatchStrategy,
    /// Reads whose plate is one of these never match this list (known junk
    /// reads such as `0` or `000`).
    pub skip: Vec<String>,
    pub alert_level: AlertLevel,
    /// Covert lists raise no in-car alert; their hits are visible to
    /// privileged users only.
    pub covert: bool,
}

/// One character the reader saw where the listed plate has another that
/// OCR confuses with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    /// Position in the plate, from 0.
    pub position: u8,
    pub read: char,
    pub listed: char,
}

/// How a read matched an entry, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum MatchKind {
    /// Plate and state both match.
    Exact,
    /// The plate matches; the recogniser does not read the state, so the
    /// officer must check it against the entry's.
    StateUnread,
    /// The plate matches, but the read's state is another one: a weaker
    /// match (wrong stops came from exactly this).
    StateDiffers { read_state: String },
    /// The plate matches only if these characters are the OCR-confusable
    /// others.
    OcrEquivalent { substitutions: Vec<Substitution> },
    /// A wildcard entry (`*` any run, `?` one character) matched.
    Wildcard { pattern: String },
    /// Not the plate as read but one of the recogniser's alternative
    /// readings matched (the hit's `matched_text` is that alternative):
    /// the crop most likely shows `best`, so it is compared with the entry
    /// before anything else (a wrong stop starts with the alternative
    /// shown as the plate read).
    Alternative {
        /// The recogniser's best reading: the plate as read.
        best: String,
        /// The alternative's rank among the readings (1: the first after
        /// the best).
        rank: u8,
        /// The recogniser's probability of the alternative.
        probability: Confidence,
        /// How the alternative matched the entry: one of the kinds above,
        /// never itself an alternative.
        how: Box<MatchKind>,
    },
}

impl MatchKind {
    /// The kind's name alone, without plates or patterns (what a log line
    /// may say).
    pub fn name(&self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::StateUnread => "state-unread",
            MatchKind::StateDiffers { .. } => "state-differs",
            MatchKind::OcrEquivalent { .. } => "ocr-equivalent",
            MatchKind::Wildcard { .. } => "wildcard",
            MatchKind::Alternative { .. } => "alternative",
        }
    }

    /// The one strength order of kinds (lower is stronger); an
    /// alternative's is that of how it matched (the matcher keeps, among
    /// equals, the best-ranked text).
    pub fn strength(&self) -> u8 {
        match self {
            MatchKind::Exact => 0,
            MatchKind::StateUnread => 1,
            MatchKind::StateDiffers { .. } => 2,
            MatchKind::OcrEquivalent { .. } => 3,
            MatchKind::Wildcard { .. } => 4,
            MatchKind::Alternative { how, .. } => match how.as_ref() {
                MatchKind::Alternative { .. } => u8::MAX,
                inner => inner.strength(),
            },
        }
    }
}

/// Which list a hit came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ListRef {
    /// A generation of a bulk list.
    Bulk {
        source: String,
        generation: u64,
        /// When the hub issued that generation (the list's age is measured
        /// from here).
        issued_at: UnixMillis,
    },
    /// A local entry.
    Local { id: String },
}

/// A locally entered hotlist entry, as the local entries document holds it
/// (see [`local`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEntry {
    /// Made by the writer that adds it; `[A-Za-z0-9_-]`, at most 64.
    pub id: String,
    /// A plate or a pattern with `*` and `?` (see [`crate::search::PlatePattern`]).
    pub plate: String,
    /// Two-letter state, empty if unknown.
    pub state: String,
    pub category: Category,
    pub reason: String,
    /// Case number, empty if none.
    pub case: String,
    pub level: AlertLevel,
    pub make: String,
    pub model: String,
    pub colour: String,
    /// Expires at this time everywhere, also on a node offline for days.
    pub expires_at: UnixMillis,
    /// Username and agency of whoever added it.
    pub author: String,
    pub agency: String,
    pub created_at: UnixMillis,
    /// Last edit (by whom is in the document's history).
    pub updated_at: UnixMillis,
    /// Removed ("vehicle recovered"): a removal wins over any concurrent
    /// edit and is never undone.
    pub removed: Option<Removal>,
}

impl LocalEntry {
    /// Whether it may raise alerts at `now`.
    pub fn active(&self, now: UnixMillis) -> bool {
        self.removed.is_none() && now < self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub by: String,
    pub at: UnixMillis,
    pub reason: String,
}

/// One hit of one read against one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub list: ListRef,
    /// The entry as listed (a local entry's fields are mapped onto it;
    /// its reason goes in `note`, its case in `oca`).
    pub entry: HotEntry,
    pub kind: MatchKind,
    /// The text of the read (or of the alternative) that matched.
    pub matched_text: String,
    pub level: AlertLevel,
    pub covert: bool,
}
