//! Matching a read (with its alternatives) against every active list.
//!
//! A [`Matcher`] is immutable: it is built once per change of the lists
//! (a new generation, a local entry added or removed, a new policy) and
//! shared behind an `Arc`; swapping in the next one is replacing the `Arc`,
//! so a read is matched against one consistent set of lists.
//!
//! Per text of a read (best first, then the alternatives):
//! - bulk lists: one probe of the generation's bucket for the OCR-folded
//!   text gives every entry whose plate an OCR engine could confuse with
//!   it; equal plates are `Exact`/`StateUnread`/`StateDiffers`, the others
//!   `OcrEquivalent` when the list allows that many substitutions;
//! - local entries without wildcards: the same, from a hash map of folded
//!   plates (one substitution allowed, the default strategy);
//! - local entries with wildcards (tolerant patterns): indexed by one
//!   literal trigram (or bigram, or single character) every match must
//!   contain, so a text only tries the patterns that share one.
//!
//! One entry hit by several texts is reported once, with its strongest
//! kind and, among equals, the best-ranked text. A hit on an alternative
//! (not the best text) is [`MatchKind::Alternative`]: it names the best
//! text, the alternative's rank and probability, and how it matched.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::search::{fold_char, PlatePattern};
use crate::types::{Confidence, UnixMillis};

use super::generation::Generation;
use super::{
    AlertLevel, Category, Hit, HotEntry, ListRef, LocalEntry, MatchKind, MatchStrategy,
    Substitution, MAX_PLATE_LEN,
};

/// Texts of one read looked at (best + 8 alternatives).
pub const MAX_TEXTS: usize = 9;

/// One bulk list as matched.
#[derive(Debug)]
struct Bulk {
    generation: Arc<Generation>,
    list: ListRef,
    /// Substitutions allowed (0: exact strategy).
    max_subs: usize,
    skip: Vec<Vec<u8>>,
    level: AlertLevel,
    covert: bool,
}

/// One local entry as matched.
#[derive(Debug)]
struct Local {
    entry: LocalEntry,
    /// Set for entries with wildcards.
    pattern: Option<PlatePattern>,
    /// The plate without wildcards (normalised), for the others.
    plate: Vec<u8>,
}

/// Every list an edge matches against, built once per change and shared.
#[derive(Debug, Default)]
pub struct Matcher {
    bulk: Vec<Bulk>,
    local: Vec<Local>,
    /// Folded plate → local entries without wildcards.
    local_exact: HashMap<u64, Vec<u32>, BuildHasherDefault<KeyHasher>>,
    /// Folded literal gram → wildcard local entries that contain it.
    wild: Grams,
    excluded: Vec<Category>,
}

/// The one strength order of kinds: lower is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Exact,
    StateUnread,
    StateDiffers,
    /// With this many substitutions.
    Ocr(u8),
    Wildcard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bulk { list: usize, record: usize },
    Local(usize),
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    source: Source,
    strength: Strength,
    /// Which text matched (its rank in the read).
    text: usize,
}

/// A read's text normalised: upper case, at most MAX_PLATE_LEN ASCII
/// letters and digits (`None` otherwise: nothing is listed under it).
fn normalise(text: &str) -> Option<([u8; MAX_PLATE_LEN], [u8; MAX_PLATE_LEN], usize)> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > MAX_PLATE_LEN || !b.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let mut raw = [0u8; MAX_PLATE_LEN];
    let mut folded = [0u8; MAX_PLATE_LEN];
    for (k, &c) in b.iter().enumerate() {
        raw[k] = c.to_ascii_uppercase();
        folded[k] = fold_char(raw[k]);
    }
    Some((raw, folded, b.len()))
}

/// How an exact plate matches by state, the one rule for the edge's
/// matcher and the hub's past matches: the state read is the listed one
/// (or none is listed): `Exact`; another state was read: `StateDiffers`;
/// none was read: `StateUnread` (never `StateDiffers`).
pub fn exact_plate_kind(listed_state: &str, read_state: Option<&str>) -> MatchKind {
    match state_strength(listed_state.as_bytes(), read_state) {
        Strength::StateDiffers => MatchKind::StateDiffers {
            read_state: read_state.unwrap_or_default().to_string(),
        },
        Strength::StateUnread => MatchKind::StateUnread,
        _ => MatchKind::Exact,
    }
}

fn state_strength(listed: &[u8], read_state: Option<&str>) -> Strength {
    match read_state {
        None => Strength::StateUnread,
        Some(s) if listed.is_empty() || listed.eq_ignore_ascii_case(s.as_bytes()) => {
            Strength::Exact
        }
        Some(_) => Strength::StateDiffers,
    }
}

fn max_subs(strategy: MatchStrategy) -> usize {
    match strategy {
        MatchStrategy::Exact => 0,
        MatchStrategy::OcrEquivalent { max_substitutions } => {
            usize::from(max_substitutions.min(super::MAX_SUBSTITUTIONS))
        }
    }
}

/// How `listed` (same length and fold as `read`) matches: by state when
/// equal, else by its substitutions when at most `max` of them.
fn plate_strength(
    read: &[u8],
    listed: &[u8],
    listed_state: &[u8],
    read_state: Option<&str>,
    max: usize,
) -> Option<Strength> {
    let subs = read.iter().zip(listed).filter(|(a, b)| a != b).count();
    if subs == 0 {
        Some(state_strength(listed_state, read_state))
    } else if subs <= max {
        // subs ≤ MAX_SUBSTITUTIONS: fits in u8.
        Some(Strength::Ocr(subs as u8))
    } else {
        None
    }
}

/// The folded literal runs of a pattern's normalised text.
fn literal_runs(pattern: &str) -> Vec<Vec<u8>> {
    pattern
        .split(['*', '?'])
        .filter(|r| !r.is_empty())
        .map(|r| r.bytes().map(fold_char).collect())
        .collect()
}

impl Matcher {
    /// Bulk generations (one per source), the local entries, and the
    /// categories policy excludes.
    pub fn new(
        bulk: Vec<Arc<Generation>>,
        local: Vec<LocalEntry>,
        excluded: &[Category],
    ) -> Matcher {
        let mut m = Matcher {
            excluded: excluded.to_vec(),
            ..Matcher::default()
        };
        let mut grams = Vec::new();
        for generation in bulk {
            let info = generation.info();
            let settings = &info.settings;
            m.bulk.push(Bulk {
                list: ListRef::Bulk {
                    source: info.source.clone(),
                    generation: info.number,
                    issued_at: info.issued_at,
                },
                max_subs: max_subs(settings.strategy),
                skip: settings
                    .skip
                    .iter()
                    .map(|s| s.trim().to_ascii_uppercase().into_bytes())
                    .collect(),
                level: settings.alert_level,
                covert: settings.covert,
                generation,
            });
        }
        for entry in local {
            if excluded.contains(&entry.category) {
                continue;
            }
            let Ok(pattern) = PlatePattern::parse(&entry.plate, true) else {
                // Fewer than two characters (or a bad one): only an exact
                // plate of letters and digits can still be matched.
                let plate = entry.plate.trim().to_ascii_uppercase().into_bytes();
                if plate.is_empty()
                    || plate.len() > MAX_PLATE_LEN
                    || !plate.iter().all(u8::is_ascii_alphanumeric)
                {
                    continue;
                }
                m.push_exact(entry, plate);
                continue;
            };
            if pattern.has_wildcards() {
                let id = m.local.len() as u32;
                let runs = literal_runs(pattern.as_str());
                let longest = runs
                    .iter()
                    .max_by_key(|r| r.len())
                    .cloned()
                    .unwrap_or_default();
                let Some(key) = gram_key(&longest[..longest.len().min(3)]) else {
                    continue;
                };
                grams.push((key, id));
                m.local.push(Local {
                    entry,
                    pattern: Some(pattern),
                    plate: Vec::new(),
                });
            } else {
                let plate = pattern.as_str().as_bytes().to_vec();
                if plate.len() > MAX_PLATE_LEN {
                    continue;
                }
                m.push_exact(entry, plate);
            }
        }
        m.wild = Grams::new(grams);
        m
    }

    fn push_exact(&mut self, entry: LocalEntry, plate: Vec<u8>) {
        let id = self.local.len() as u32;
        let folded: Vec<u8> = plate.iter().map(|&b| fold_char(b)).collect();
        self.local_exact
            .entry(plate_key(&folded))
            .or_default()
            .push(id);
        self.local.push(Local {
            entry,
            pattern: None,
            plate,
        });
    }

    /// The bulk generations matched against.
    pub fn generations(&self) -> impl Iterator<Item = &Arc<Generation>> {
        self.bulk.iter().map(|b| &b.generation)
    }

    /// Local entries held (active or not), wildcard ones included.
    pub fn local_len(&self) -> usize {
        self.local.len()
    }

    /// Hits of a read whose best text is `best` and whose recogniser's
    /// alternatives are `alternatives` (most probable first, each with its
    /// probability), and whose state is `read_state` if the recogniser
    /// read one; local entries expired at `now` do not match. Appends to
    /// `out`.
    pub fn match_read(
        &self,
        best: &str,
        alternatives: &[(&str, Confidence)],
        read_state: Option<&str>,
        now: UnixMillis,
        out: &mut Vec<Hit>,
    ) {
        let mut found: Vec<Candidate> = Vec::new();
        let mut wild: Vec<u32> = Vec::new();
        let texts = std::iter::once(best).chain(alternatives.iter().map(|a| a.0));
        for (ti, text) in texts.enumerate().take(MAX_TEXTS) {
            let Some((raw, folded, len)) = normalise(text) else {
                continue;
            };
            let (raw, folded) = (&raw[..len], &folded[..len]);
            for (li, list) in self.bulk.iter().enumerate() {
                if list.skip.iter().any(|s| s.as_slice() == raw) {
                    continue;
                }
                let g = &list.generation;
                for i in g.probe(folded) {
                    if !self.excluded.is_empty() && self.excluded.contains(&g.category(i)) {
                        continue;
                    }
                    let Some(strength) =
                        plate_strength(raw, g.plate(i), g.state(i), read_state, list.max_subs)
                    else {
                        continue;
                    };
                    add(
                        &mut found,
                        Candidate {
                            source: Source::Bulk {
                                list: li,
                                record: i,
                            },
                            strength,
                            text: ti,
                        },
                    );
                }
            }
            if self.local.is_empty() {
                continue;
            }
            if let Some(ids) = self.local_exact.get(&plate_key(folded)) {
                for &id in ids {
                    let l = &self.local[id as usize];
                    if !l.entry.active(now) {
                        continue;
                    }
                    let Some(strength) =
                        plate_strength(raw, &l.plate, l.entry.state.as_bytes(), read_state, 1)
                    else {
                        continue;
                    };
                    add(
                        &mut found,
                        Candidate {
                            source: Source::Local(id as usize),
                            strength,
                            text: ti,
                        },
                    );
                }
            }
            wild.clear();
            if !self.wild.is_empty() {
                for n in 1..=3 {
                    for w in folded.windows(n) {
                        if let Some(key) = gram_key(w) {
                            wild.extend_from_slice(self.wild.get(key));
                        }
                    }
                }
            }
            wild.sort_unstable();
            wild.dedup();
            let text_str = std::str::from_utf8(raw).unwrap_or_default();
            for &id in &wild {
                let l = &self.local[id as usize];
                let Some(p) = &l.pattern else { continue };
                let (min, max) = p.length_bounds();
                if len < min || max.is_some_and(|m| len > m) || !l.entry.active(now) {
                    continue;
                }
                if p.matches(text_str) {
                    add(
                        &mut found,
                        Candidate {
                            source: Source::Local(id as usize),
                            strength: Strength::Wildcard,
                            text: ti,
                        },
                    );
                }
            }
        }
        found.sort_by_key(|c| (c.strength, c.text));
        for c in found {
            out.push(self.hit(c, best, alternatives, read_state));
        }
    }

    fn hit(
        &self,
        c: Candidate,
        best: &str,
        alternatives: &[(&str, Confidence)],
        read_state: Option<&str>,
    ) -> Hit {
        // Text 0 is the best, text k the alternative k.
        let alternative = c
            .text
            .checked_sub(1)
            .and_then(|k| alternatives.get(k).copied());
        let text = alternative.map_or(best, |a| a.0);
        let read = text.to_ascii_uppercase();
        let (list, entry, listed_plate, level, covert) = match c.source {
            Source::Bulk { list, record } => {
                let b = &self.bulk[list];
                let entry = b.generation.entry(record);
                let plate = entry.plate.clone();
                (b.list.clone(), entry, plate, b.level, b.covert)
            }
            Source::Local(id) => {
                let l = &self.local[id].entry;
                let entry = HotEntry {
                    plate: l.plate.clone(),
                    state: l.state.clone(),
                    category: l.category,
                    make: l.make.clone(),
                    model: l.model.clone(),
                    colour: l.colour.clone(),
                    oca: l.case.clone(),
                    note: l.reason.clone(),
                    ..HotEntry::default()
                };
                let plate = String::from_utf8_lossy(&self.local[id].plate).into_owned();
                (
                    ListRef::Local { id: l.id.clone() },
                    entry,
                    plate,
                    l.level,
                    false,
                )
            }
        };
        let kind = match c.strength {
            Strength::Exact => MatchKind::Exact,
            Strength::StateUnread => MatchKind::StateUnread,
            Strength::StateDiffers => MatchKind::StateDiffers {
                read_state: read_state.unwrap_or_default().to_string(),
            },
            Strength::Ocr(_) => MatchKind::OcrEquivalent {
                substitutions: read
                    .bytes()
                    .zip(listed_plate.bytes())
                    .enumerate()
                    .filter(|(_, (r, l))| r != l)
                    .map(|(k, (r, l))| Substitution {
                        position: k as u8,
                        read: char::from(r),
                        listed: char::from(l),
                    })
                    .collect(),
            },
            Strength::Wildcard => MatchKind::Wildcard {
                pattern: match c.source {
                    Source::Local(id) => self.local[id]
                        .pattern
                        .as_ref()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    Source::Bulk { .. } => String::new(),
                },
            },
        };
        let kind = match alternative {
            Some((_, probability)) => MatchKind::Alternative {
                best: best.to_string(),
                // c.text < MAX_TEXTS: fits in u8.
                rank: c.text as u8,
                probability,
                how: Box::new(kind),
            },
            None => kind,
        };
        Hit {
            list,
            entry,
            kind,
            matched_text: text.to_string(),
            level,
            covert,
        }
    }
}

/// A folded plate (≤ MAX_PLATE_LEN characters of 36) as one number:
/// base 37 digits, 0 for none, so different plates give different keys.
fn plate_key(folded: &[u8]) -> u64 {
    folded.iter().fold(0u64, |k, &c| {
        k * 37 + u64::from(symbol(c).map_or(0, |s| s + 1))
    })
}

/// A plate character's place among 0–9 and A–Z.
fn symbol(c: u8) -> Option<u16> {
    match c {
        b'0'..=b'9' => Some(u16::from(c - b'0')),
        b'A'..=b'Z' => Some(u16::from(c - b'A') + 10),
        _ => None,
    }
}

const GRAMS_1: usize = 36;
const GRAMS_2: usize = 36 * 36;
const GRAMS_3: usize = 36 * 36 * 36;

/// A gram of 1 to 3 folded characters as one index: single characters,
/// then pairs, then triples.
fn gram_key(gram: &[u8]) -> Option<usize> {
    let base = match gram.len() {
        1 => 0,
        2 => GRAMS_1,
        3 => GRAMS_1 + GRAMS_2,
        _ => return None,
    };
    let mut k = 0usize;
    for &c in gram {
        k = k * 36 + usize::from(symbol(c)?);
    }
    Some(base + k)
}

/// Wildcard entries by gram: a compressed sparse row table (one array
/// lookup per gram of a read's text).
#[derive(Debug, Default)]
struct Grams {
    /// `starts[k]..starts[k + 1]` indexes `ids` for gram key `k`; empty
    /// when there are no wildcard entries.
    starts: Vec<u32>,
    ids: Vec<u32>,
}

impl Grams {
    fn new(mut pairs: Vec<(usize, u32)>) -> Grams {
        if pairs.is_empty() {
            return Grams::default();
        }
        pairs.sort_unstable();
        let total = GRAMS_1 + GRAMS_2 + GRAMS_3;
        let mut starts = Vec::with_capacity(total + 1);
        let mut at = 0usize;
        for k in 0..=total {
            while pairs.get(at).is_some_and(|p| p.0 < k) {
                at += 1;
            }
            starts.push(at as u32);
        }
        Grams {
            starts,
            ids: pairs.into_iter().map(|p| p.1).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn get(&self, key: usize) -> &[u32] {
        let (Some(&a), Some(&b)) = (self.starts.get(key), self.starts.get(key + 1)) else {
            return &[];
        };
        self.ids.get(a as usize..b as usize).unwrap_or(&[])
    }
}

/// The hasher of plate keys (already unique numbers): one multiply.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 = k.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(26);
    }
}

/// Add a candidate, keeping per entry the strongest kind and then the
/// best-ranked text.
fn add(found: &mut Vec<Candidate>, c: Candidate) {
    match found.iter_mut().find(|f| f.source == c.source) {
        Some(f) => {
            if (c.strength, c.text) < (f.strength, f.text) {
                *f = c;
            }
        }
        None => found.push(c),
    }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
