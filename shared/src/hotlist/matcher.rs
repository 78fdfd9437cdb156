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
//! kind and, among equals, the best-ranked text.

use std::collections::HashMap;
use std::sync::Arc;

use crate::search::{fold_char, PlatePattern};
use crate::types::UnixMillis;

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
    local_exact: HashMap<Vec<u8>, Vec<u32>>,
    /// Folded literal gram → wildcard local entries that contain it.
    wild_tri: HashMap<[u8; 3], Vec<u32>>,
    wild_bi: HashMap<[u8; 2], Vec<u32>>,
    wild_uni: HashMap<u8, Vec<u32>>,
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
                match longest.len() {
                    0 => continue,
                    1 => m.wild_uni.entry(longest[0]).or_default().push(id),
                    2 => m
                        .wild_bi
                        .entry([longest[0], longest[1]])
                        .or_default()
                        .push(id),
                    _ => m
                        .wild_tri
                        .entry([longest[0], longest[1], longest[2]])
                        .or_default()
                        .push(id),
                }
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
        m
    }

    fn push_exact(&mut self, entry: LocalEntry, plate: Vec<u8>) {
        let id = self.local.len() as u32;
        let folded: Vec<u8> = plate.iter().map(|&b| fold_char(b)).collect();
        self.local_exact.entry(folded).or_default().push(id);
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

    /// Hits of a read whose best text and alternatives are `texts` (best
    /// first) and whose state is `read_state` if the recogniser read one;
    /// local entries expired at `now` do not match. Appends to `out`.
    pub fn match_read(
        &self,
        texts: &[&str],
        read_state: Option<&str>,
        now: UnixMillis,
        out: &mut Vec<Hit>,
    ) {
        let mut found: Vec<Candidate> = Vec::new();
        let mut wild: Vec<u32> = Vec::new();
        for (ti, text) in texts.iter().enumerate().take(MAX_TEXTS) {
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
            if let Some(ids) = self.local_exact.get(folded) {
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
            for w in folded.windows(3) {
                if let Some(ids) = self.wild_tri.get(&[w[0], w[1], w[2]]) {
                    wild.extend_from_slice(ids);
                }
            }
            for w in folded.windows(2) {
                if let Some(ids) = self.wild_bi.get(&[w[0], w[1]]) {
                    wild.extend_from_slice(ids);
                }
            }
            for c in folded {
                if let Some(ids) = self.wild_uni.get(c) {
                    wild.extend_from_slice(ids);
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
            out.push(self.hit(c, texts, read_state));
        }
    }

    fn hit(&self, c: Candidate, texts: &[&str], read_state: Option<&str>) -> Hit {
        let text = texts.get(c.text).copied().unwrap_or_default();
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
