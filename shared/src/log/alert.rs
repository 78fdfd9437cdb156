//! Alerts and their dispositions, as signed log entries.
//!
//! A read that matched a hotlist entry raises an alert: the node appends an
//! [`AlertRecord`] to its own log (in the signed header, like an access
//! record, so retention never removes it). Policy 426.3(f): an alert must be
//! verified through the state system before enforcement, so an officer
//! disposes it in stages, each a [`DispositionRecord`] in the log of the
//! node where it was recorded:
//!
//! 1. the read: correct, wrong state, misread, or dismissed unreviewed;
//! 2. the status check (only after a correct read): confirmed active, or no
//!    longer active;
//! 3. the action (only after the status check; a stop only on a confirmed
//!    active entry): stop, no stop, unable.
//!
//! [`Progress`] holds these rules; both the edge and the hub apply them.

use serde::{Deserialize, Serialize};

use crate::hotlist::matcher::MAX_TEXTS;
use crate::hotlist::{AlertLevel, HotEntry, ListRef, MatchKind, MAX_ENTRY_TEXT};
use crate::types::{
    check_text, Confidence, InvalidValue, CONFIDENCE_ONE, MAX_PLATE_LEN, MAX_TEXT_LEN,
};

/// Longest disposition note.
pub const MAX_NOTE_LEN: usize = 1024;
/// Most OCR substitutions an alert may name.
const MAX_ALERT_SUBSTITUTIONS: usize = 8;

/// A read matched a hotlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The read (an entry of the same log) that matched.
    pub read_seq: u64,
    #[serde(with = "wire::list_ref")]
    pub list: ListRef,
    /// The entry as listed when it matched.
    pub entry: HotEntry,
    #[serde(with = "wire::match_kind")]
    pub kind: MatchKind,
    /// The read's text that matched: the plate as read, or the
    /// alternative reading of a [`MatchKind::Alternative`] (never show it
    /// as the plate read: see [`AlertRecord::plate_read`]).
    pub matched_text: String,
    pub level: AlertLevel,
    /// No in-car alert; shown to privileged users only.
    pub covert: bool,
    /// How old the node's copy of the list was (now − issued), ms; 0 for
    /// a local entry.
    pub list_age_ms: u64,
    /// The copy was older than policy's `max_list_age_ms`.
    pub list_stale: bool,
    /// Raised by matching a new entry against reads stored before it.
    pub past_match: bool,
}

impl AlertRecord {
    /// Check every bound; a decoded or freshly built record must pass.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        match &self.list {
            ListRef::Bulk { source, .. } => check_text("alert list source", source, MAX_TEXT_LEN)?,
            ListRef::Local { id } => check_text("alert local entry id", id, MAX_TEXT_LEN)?,
        }
        let e = &self.entry;
        // A local entry's plate may be a wildcard pattern.
        check_text("alert entry plate", &e.plate, MAX_TEXT_LEN)?;
        for (field, v) in [
            ("alert entry state", &e.state),
            ("alert entry plate type", &e.plate_type),
            ("alert entry plate year", &e.plate_year),
            ("alert entry vehicle year", &e.vehicle_year),
            ("alert entry make", &e.make),
            ("alert entry model", &e.model),
            ("alert entry colour", &e.colour),
            ("alert entry vin", &e.vin),
            ("alert entry nic", &e.nic),
            ("alert entry ori", &e.ori),
            ("alert entry oca", &e.oca),
            ("alert entry date", &e.entered),
            ("alert entry note", &e.note),
        ] {
            check_text(field, v, MAX_ENTRY_TEXT)?;
        }
        check_kind(&self.kind, false)?;
        check_text("alert matched text", &self.matched_text, MAX_PLATE_LEN)?;
        Ok(())
    }

    /// The plate as read: the recogniser's best reading, also when one of
    /// its alternatives is what matched.
    pub fn plate_read(&self) -> &str {
        match &self.kind {
            MatchKind::Alternative { best, .. } => best,
            _ => &self.matched_text,
        }
    }

    /// The alternative reading that matched, when the plate as read did
    /// not.
    pub fn alternative(&self) -> Option<AlternativeMatch> {
        match &self.kind {
            MatchKind::Alternative {
                rank, probability, ..
            } => Some(AlternativeMatch {
                text: self.matched_text.clone(),
                rank: *rank,
                probability: *probability,
            }),
            _ => None,
        }
    }

    /// "exact", "state differs (read NV)", "OCR-equivalent (read 0 as O at
    /// 3)", "alternative reading #1 (21.0%), wildcard YG9*", …
    pub fn kind_text(&self) -> String {
        kind_text(&self.kind)
    }
}

/// A recogniser's alternative reading that matched a list where the plate
/// as read did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlternativeMatch {
    /// The alternative's text.
    pub text: String,
    /// Its rank among the readings (1: the first after the best).
    pub rank: u8,
    /// The recogniser's probability of it.
    pub probability: Confidence,
}

impl AlternativeMatch {
    /// What every screen shows beside the plate read: which alternative
    /// matched, and that the crop comes first.
    pub fn notice(&self) -> String {
        format!(
            "ALTERNATIVE READING {} matched, not the plate as read: \
             compare the crop with the listed plate first",
            self.text
        )
    }
}

/// Check a kind's bounds; `nested` for the kind inside an alternative
/// (which may not be one itself).
fn check_kind(kind: &MatchKind, nested: bool) -> Result<(), InvalidValue> {
    match kind {
        MatchKind::Exact | MatchKind::StateUnread => {}
        MatchKind::StateDiffers { read_state } => {
            check_text("alert read state", read_state, MAX_PLATE_LEN)?
        }
        MatchKind::OcrEquivalent { substitutions } => {
            if substitutions.len() > MAX_ALERT_SUBSTITUTIONS {
                return Err(InvalidValue::OutOfRange {
                    field: "alert substitutions",
                });
            }
        }
        MatchKind::Wildcard { pattern } => check_text("alert pattern", pattern, MAX_TEXT_LEN)?,
        MatchKind::Alternative {
            best,
            rank,
            probability,
            how,
        } => {
            if nested {
                return Err(InvalidValue::OutOfRange {
                    field: "alert alternative inside an alternative",
                });
            }
            check_text("alert best reading", best, MAX_PLATE_LEN)?;
            if *rank == 0 || usize::from(*rank) >= MAX_TEXTS {
                return Err(InvalidValue::OutOfRange {
                    field: "alert alternative rank",
                });
            }
            if *probability > CONFIDENCE_ONE {
                return Err(InvalidValue::OutOfRange {
                    field: "alert alternative probability",
                });
            }
            check_kind(how, true)?;
        }
    }
    Ok(())
}

/// How a plate matched, for people.
fn kind_text(kind: &MatchKind) -> String {
    match kind {
        MatchKind::Exact => "exact".into(),
        MatchKind::StateUnread => "plate exact, state not read (check it)".into(),
        MatchKind::StateDiffers { read_state } => {
            format!("plate exact, STATE DIFFERS (read {read_state})")
        }
        MatchKind::OcrEquivalent { substitutions } => {
            let subs: Vec<String> = substitutions
                .iter()
                .map(|s| {
                    format!(
                        "read '{}' as listed '{}' at position {}",
                        s.read,
                        s.listed,
                        u32::from(s.position) + 1
                    )
                })
                .collect();
            format!("OCR-equivalent: {}", subs.join(", "))
        }
        MatchKind::Wildcard { pattern } => format!("wildcard {pattern}"),
        MatchKind::Alternative {
            rank,
            probability,
            how,
            ..
        } => format!(
            "alternative reading #{rank} ({:.1}%), {}",
            f64::from(*probability) / 100.0,
            kind_text(how)
        ),
    }
}

/// `ListRef` and `MatchKind` are internally tagged for JSON, which postcard
/// cannot decode; in the log they are written as these plain enums (same
/// variants, same order; new variants only ever appended, so the bytes of
/// every record already signed decode as they did).
mod wire {
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::hotlist::{ListRef, MatchKind, Substitution};
    use crate::types::{Confidence, UnixMillis};

    #[derive(Serialize, Deserialize)]
    enum ListRefW {
        Bulk {
            source: String,
            generation: u64,
            issued_at: UnixMillis,
        },
        Local {
            id: String,
        },
    }

    /// The kinds as written. `A` is what an alternative carries: at the
    /// top an [`AlternativeW`], inside one [`Never`], so no bytes can nest
    /// alternatives (a decoder's depth is bounded whatever it is sent).
    #[derive(Serialize, Deserialize)]
    enum MatchKindW<A> {
        Exact,
        StateUnread,
        StateDiffers { read_state: String },
        OcrEquivalent { substitutions: Vec<Substitution> },
        Wildcard { pattern: String },
        Alternative(A),
    }

    #[derive(Serialize, Deserialize)]
    struct AlternativeW {
        best: String,
        rank: u8,
        probability: Confidence,
        how: MatchKindW<Never>,
    }

    /// No value: an alternative inside an alternative cannot be written.
    #[derive(Serialize, Deserialize)]
    enum Never {}

    pub mod list_ref {
        use super::*;

        pub fn serialize<S: Serializer>(v: &ListRef, s: S) -> Result<S::Ok, S::Error> {
            match v.clone() {
                ListRef::Bulk {
                    source,
                    generation,
                    issued_at,
                } => ListRefW::Bulk {
                    source,
                    generation,
                    issued_at,
                },
                ListRef::Local { id } => ListRefW::Local { id },
            }
            .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ListRef, D::Error> {
            Ok(match ListRefW::deserialize(d)? {
                ListRefW::Bulk {
                    source,
                    generation,
                    issued_at,
                } => ListRef::Bulk {
                    source,
                    generation,
                    issued_at,
                },
                ListRefW::Local { id } => ListRef::Local { id },
            })
        }
    }

    /// A kind as written; `alternative` writes what an alternative
    /// carries (best, rank, probability, how it matched).
    fn written<A, E>(
        v: &MatchKind,
        alternative: impl FnOnce(&str, u8, Confidence, &MatchKind) -> Result<A, E>,
    ) -> Result<MatchKindW<A>, E> {
        Ok(match v {
            MatchKind::Exact => MatchKindW::Exact,
            MatchKind::StateUnread => MatchKindW::StateUnread,
            MatchKind::StateDiffers { read_state } => MatchKindW::StateDiffers {
                read_state: read_state.clone(),
            },
            MatchKind::OcrEquivalent { substitutions } => MatchKindW::OcrEquivalent {
                substitutions: substitutions.clone(),
            },
            MatchKind::Wildcard { pattern } => MatchKindW::Wildcard {
                pattern: pattern.clone(),
            },
            MatchKind::Alternative {
                best,
                rank,
                probability,
                how,
            } => MatchKindW::Alternative(alternative(best, *rank, *probability, how)?),
        })
    }

    /// A written kind read back; `alternative` makes one of what it
    /// carries.
    fn read<A>(w: MatchKindW<A>, alternative: impl FnOnce(A) -> MatchKind) -> MatchKind {
        match w {
            MatchKindW::Exact => MatchKind::Exact,
            MatchKindW::StateUnread => MatchKind::StateUnread,
            MatchKindW::StateDiffers { read_state } => MatchKind::StateDiffers { read_state },
            MatchKindW::OcrEquivalent { substitutions } => {
                MatchKind::OcrEquivalent { substitutions }
            }
            MatchKindW::Wildcard { pattern } => MatchKind::Wildcard { pattern },
            MatchKindW::Alternative(a) => alternative(a),
        }
    }

    pub mod match_kind {
        use super::*;

        pub fn serialize<S: Serializer>(v: &MatchKind, s: S) -> Result<S::Ok, S::Error> {
            written(v, |best, rank, probability, how| {
                Ok(AlternativeW {
                    best: best.to_owned(),
                    rank,
                    probability,
                    how: written(how, |_, _, _, _| {
                        Err(S::Error::custom(
                            "an alternative's match is itself an alternative",
                        ))
                    })?,
                })
            })?
            .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MatchKind, D::Error> {
            Ok(read(MatchKindW::<AlternativeW>::deserialize(d)?, |a| {
                MatchKind::Alternative {
                    best: a.best,
                    rank: a.rank,
                    probability: a.probability,
                    how: Box::new(read(a.how, |never: Never| match never {})),
                }
            }))
        }
    }
}

/// Stage 1: was the read right?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadCheck {
    Correct,
    WrongState,
    Misread,
    DismissedUnreviewed,
}

/// Stage 2: what the state system says of the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusCheck {
    ConfirmedActive,
    NoLongerActive,
}

/// Stage 3: what the officer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionTaken {
    Stop,
    NoStop,
    Unable,
}

/// One stage of a disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Read(ReadCheck),
    Status(StatusCheck),
    Action(ActionTaken),
}

impl Stage {
    /// Every stage there is, in the order of the rules (a form offers
    /// them so).
    pub const ALL: [Stage; 9] = [
        Stage::Read(ReadCheck::Correct),
        Stage::Read(ReadCheck::WrongState),
        Stage::Read(ReadCheck::Misread),
        Stage::Read(ReadCheck::DismissedUnreviewed),
        Stage::Status(StatusCheck::ConfirmedActive),
        Stage::Status(StatusCheck::NoLongerActive),
        Stage::Action(ActionTaken::Stop),
        Stage::Action(ActionTaken::NoStop),
        Stage::Action(ActionTaken::Unable),
    ];
}

impl ReadCheck {
    pub fn name(self) -> &'static str {
        match self {
            ReadCheck::Correct => "correct",
            ReadCheck::WrongState => "wrong-state",
            ReadCheck::Misread => "misread",
            ReadCheck::DismissedUnreviewed => "dismissed",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        [
            ReadCheck::Correct,
            ReadCheck::WrongState,
            ReadCheck::Misread,
            ReadCheck::DismissedUnreviewed,
        ]
        .into_iter()
        .find(|v| v.name() == s || (s == "dismissed-unreviewed" && *v == Self::DismissedUnreviewed))
    }
}

impl StatusCheck {
    pub fn name(self) -> &'static str {
        match self {
            StatusCheck::ConfirmedActive => "active",
            StatusCheck::NoLongerActive => "inactive",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "active" | "confirmed-active" => Some(StatusCheck::ConfirmedActive),
            "inactive" | "no-longer-active" => Some(StatusCheck::NoLongerActive),
            _ => None,
        }
    }
}

impl ActionTaken {
    pub fn name(self) -> &'static str {
        match self {
            ActionTaken::Stop => "stop",
            ActionTaken::NoStop => "no-stop",
            ActionTaken::Unable => "unable",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        [ActionTaken::Stop, ActionTaken::NoStop, ActionTaken::Unable]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Read(r) => write!(f, "read: {}", r.name()),
            Stage::Status(s) => write!(f, "status: {}", s.name()),
            Stage::Action(a) => write!(f, "action: {}", a.name()),
        }
    }
}

/// One stage of an alert's disposition, by a logged-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispositionRecord {
    /// The alert entry's sequence number in the log of the node that
    /// raised it (this log, for an edge).
    pub alert_seq: u64,
    pub stage: Stage,
    pub user: String,
    pub agency: String,
    pub note: String,
}

impl DispositionRecord {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        check_text("disposition user", &self.user, MAX_TEXT_LEN)?;
        check_text("disposition agency", &self.agency, MAX_TEXT_LEN)?;
        check_text("disposition note", &self.note, MAX_NOTE_LEN)?;
        Ok(())
    }
}

/// Why a stage may not be recorded now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error("the read was already disposed ({0:?})")]
    ReadDone(ReadCheck),
    #[error("the status check needs the read disposed as correct first")]
    NeedsCorrectRead,
    #[error("the status was already checked ({0:?})")]
    StatusDone(StatusCheck),
    #[error("the action needs the status checked first (verify through the state system)")]
    NeedsStatus,
    #[error("no stop on an entry the state system did not confirm active")]
    StopNotConfirmed,
    #[error("the action was already recorded ({0:?})")]
    ActionDone(ActionTaken),
    #[error("the alert is closed")]
    Closed,
}

/// The stages recorded so far for one alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub read: Option<ReadCheck>,
    pub status: Option<StatusCheck>,
    pub action: Option<ActionTaken>,
}

impl Progress {
    /// Whether `stage` may be recorded next.
    pub fn check(&self, stage: Stage) -> Result<(), StageError> {
        match stage {
            Stage::Read(_) => match self.read {
                Some(r) => Err(StageError::ReadDone(r)),
                None => Ok(()),
            },
            Stage::Status(_) => match (self.read, self.status) {
                (_, Some(s)) => Err(StageError::StatusDone(s)),
                (Some(ReadCheck::Correct), None) => Ok(()),
                (Some(_), None) => Err(StageError::Closed),
                (None, None) => Err(StageError::NeedsCorrectRead),
            },
            Stage::Action(a) => match (self.status, self.action) {
                (_, Some(done)) => Err(StageError::ActionDone(done)),
                (None, None) => Err(StageError::NeedsStatus),
                (Some(StatusCheck::NoLongerActive), None) if a == ActionTaken::Stop => {
                    Err(StageError::StopNotConfirmed)
                }
                (Some(_), None) => Ok(()),
            },
        }
    }

    /// Record `stage` if the rules allow it.
    pub fn apply(&mut self, stage: Stage) -> Result<(), StageError> {
        self.check(stage)?;
        match stage {
            Stage::Read(r) => self.read = Some(r),
            Stage::Status(s) => self.status = Some(s),
            Stage::Action(a) => self.action = Some(a),
        }
        Ok(())
    }

    /// Nothing more is expected: the read was not confirmed, the entry is
    /// no longer active, or the action is recorded.
    pub fn closed(&self) -> bool {
        matches!(self.read, Some(r) if r != ReadCheck::Correct)
            || self.status == Some(StatusCheck::NoLongerActive)
            || self.action.is_some()
    }

    /// "awaiting read", "awaiting status", "awaiting action", "closed: …".
    pub fn summary(&self) -> String {
        if self.closed() {
            let mut parts = Vec::new();
            if let Some(r) = self.read {
                parts.push(format!("read {}", r.name()));
            }
            if let Some(s) = self.status {
                parts.push(format!("status {}", s.name()));
            }
            if let Some(a) = self.action {
                parts.push(format!("action {}", a.name()));
            }
            return format!("closed ({})", parts.join(", "));
        }
        match (self.read, self.status) {
            (None, _) => "awaiting read check".into(),
            (Some(_), None) => "awaiting status check".into(),
            (Some(_), Some(_)) => "awaiting action".into(),
        }
    }

    /// Three bytes for the alerts tables: each stage's value + 1, 0 when
    /// not recorded.
    pub fn encode(&self) -> [u8; 3] {
        [
            self.read.map_or(0, |r| r as u8 + 1),
            self.status.map_or(0, |s| s as u8 + 1),
            self.action.map_or(0, |a| a as u8 + 1),
        ]
    }

    pub fn decode(b: &[u8]) -> Option<Progress> {
        let [r, s, a] = <[u8; 3]>::try_from(b).ok()?;
        let pick = |v: u8, n: usize| {
            if v == 0 {
                Some(None)
            } else if usize::from(v) <= n {
                Some(Some(usize::from(v) - 1))
            } else {
                None
            }
        };
        const READS: [ReadCheck; 4] = [
            ReadCheck::Correct,
            ReadCheck::WrongState,
            ReadCheck::Misread,
            ReadCheck::DismissedUnreviewed,
        ];
        const STATUS: [StatusCheck; 2] =
            [StatusCheck::ConfirmedActive, StatusCheck::NoLongerActive];
        const ACTIONS: [ActionTaken; 3] =
            [ActionTaken::Stop, ActionTaken::NoStop, ActionTaken::Unable];
        Some(Progress {
            read: pick(r, READS.len())?.and_then(|i| READS.get(i).copied()),
            status: pick(s, STATUS.len())?.and_then(|i| STATUS.get(i).copied()),
            action: pick(a, ACTIONS.len())?.and_then(|i| ACTIONS.get(i).copied()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_needs_the_one_before() {
        let mut p = Progress::default();
        assert_eq!(
            p.check(Stage::Status(StatusCheck::ConfirmedActive)),
            Err(StageError::NeedsCorrectRead)
        );
        assert_eq!(
            p.check(Stage::Action(ActionTaken::Stop)),
            Err(StageError::NeedsStatus)
        );
        p.apply(Stage::Read(ReadCheck::Correct))
            .expect("read first");
        assert!(!p.closed());
        assert_eq!(
            p.apply(Stage::Read(ReadCheck::Misread)),
            Err(StageError::ReadDone(ReadCheck::Correct))
        );
        assert_eq!(
            p.check(Stage::Action(ActionTaken::Stop)),
            Err(StageError::NeedsStatus),
            "no enforcement before the state system confirms"
        );
        p.apply(Stage::Status(StatusCheck::ConfirmedActive))
            .expect("status second");
        p.apply(Stage::Action(ActionTaken::Stop)).expect("then act");
        assert!(p.closed());
        assert!(p.apply(Stage::Action(ActionTaken::NoStop)).is_err());
        assert_eq!(Progress::decode(&p.encode()), Some(p));
    }

    #[test]
    fn a_wrong_read_closes_the_alert_and_an_inactive_entry_is_never_a_stop() {
        let mut p = Progress::default();
        p.apply(Stage::Read(ReadCheck::WrongState)).expect("read");
        assert!(p.closed());
        assert_eq!(
            p.check(Stage::Status(StatusCheck::ConfirmedActive)),
            Err(StageError::Closed)
        );
        let mut q = Progress::default();
        q.apply(Stage::Read(ReadCheck::Correct)).expect("read");
        q.apply(Stage::Status(StatusCheck::NoLongerActive))
            .expect("status");
        assert!(q.closed(), "a recovered car needs no action");
        assert_eq!(
            q.check(Stage::Action(ActionTaken::Stop)),
            Err(StageError::StopNotConfirmed)
        );
        q.apply(Stage::Action(ActionTaken::NoStop))
            .expect("no stop may still be noted");
        assert_eq!(Progress::decode(&q.encode()), Some(q));
        assert_eq!(Progress::decode(&[9, 0, 0]), None);
        assert_eq!(Progress::decode(&[1, 0]), None);
    }

    proptest::proptest! {
        /// Stored progress bytes never panic the decoder, and whatever
        /// decodes encodes back to the same bytes.
        #[test]
        fn progress_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)) {
            if let Some(p) = Progress::decode(&b) {
                proptest::prop_assert_eq!(p.encode().to_vec(), b);
            }
        }

        /// Any sequence of stages: the rules hold after each accepted one.
        #[test]
        fn accepted_stages_keep_the_rules(stages in proptest::collection::vec(0u8..9, 0..8)) {
            let all = Stage::ALL;
            let mut p = Progress::default();
            for i in stages {
                let _ = p.apply(all[usize::from(i)]);
                proptest::prop_assert!(p.status.is_none() || p.read == Some(ReadCheck::Correct));
                proptest::prop_assert!(p.action.is_none() || p.status.is_some());
                proptest::prop_assert!(
                    p.action != Some(ActionTaken::Stop)
                        || p.status == Some(StatusCheck::ConfirmedActive)
                );
            }
        }
    }

    #[test]
    fn stage_names_round_trip() {
        for r in ["correct", "wrong-state", "misread", "dismissed"] {
            assert_eq!(ReadCheck::from_name(r).map(ReadCheck::name), Some(r));
        }
        assert_eq!(
            StatusCheck::from_name("inactive"),
            Some(StatusCheck::NoLongerActive)
        );
        assert_eq!(ActionTaken::from_name("no-stop"), Some(ActionTaken::NoStop));
        assert_eq!(ActionTaken::from_name("arrest"), None);
    }
}
