//! The distinct plates in memory, with n-gram postings over their folded
//! form ([`fold_plate`]), so a wildcard with a leading or inner `*` or an
//! OCR-tolerant pattern looks at a few thousand candidate plates instead
//! of every read: the plates that match are then looked up exactly.
//!
//! One index serves both kinds of pattern: a plate that matches a pattern
//! exactly also matches it folded, so the folded n-grams of the pattern's
//! literal runs select a superset of candidates, and
//! [`PlatePattern::matches`] decides.

use alpr_shared::search::{fold_plate, PlatePattern};

/// Characters of a normalised plate: 0–9, A–Z.
const ALPHABET: usize = 36;

fn code(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'A'..=b'Z' => Some(usize::from(b - b'A') + 10),
        _ => None,
    }
}

fn gram(bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .try_fold(0usize, |acc, b| Some(acc * ALPHABET + code(*b)?))
}

/// Distinct plates, by first-seen ordinal.
#[derive(Debug)]
pub struct PlateIndex {
    /// Plate `i` is `plates[ends[i-1]..ends[i]]`.
    plates: Vec<u8>,
    folded: Vec<u8>,
    ends: Vec<u32>,
    /// Plate ordinals containing each folded bigram / trigram, ascending.
    bigrams: Vec<Vec<u32>>,
    trigrams: Vec<Vec<u32>>,
    /// The next store ordinal to load: retention drops plates from the
    /// store's list, so its ordinals have gaps and run ahead of `len`.
    next_ordinal: u64,
}

impl Default for PlateIndex {
    fn default() -> Self {
        PlateIndex {
            plates: Vec::new(),
            folded: Vec::new(),
            ends: Vec::new(),
            bigrams: vec![Vec::new(); ALPHABET * ALPHABET],
            trigrams: vec![Vec::new(); ALPHABET * ALPHABET * ALPHABET],
            next_ordinal: 0,
        }
    }
}

impl PlateIndex {
    /// Plates held.
    pub fn len(&self) -> u64 {
        self.ends.len() as u64
    }

    /// The next store ordinal ([`crate::store::HubStorage::plates_from`])
    /// to load.
    pub fn next_ordinal(&self) -> u64 {
        self.next_ordinal
    }

    /// Add the plate the store lists at `ordinal`, if not loaded yet.
    pub fn load(&mut self, ordinal: u64, plate: &str) {
        if ordinal >= self.next_ordinal {
            self.push(plate);
            self.next_ordinal = ordinal + 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Add the plate with the next ordinal.
    pub fn push(&mut self, plate: &str) {
        let Ok(id) = u32::try_from(self.ends.len()) else {
            return;
        };
        let folded = fold_plate(plate);
        let f = folded.as_bytes();
        for (n, lists) in [(2, &mut self.bigrams), (3, &mut self.trigrams)] {
            for w in f.windows(n) {
                if let Some(g) = gram(w) {
                    let list = &mut lists[g];
                    if list.last() != Some(&id) {
                        list.push(id);
                    }
                }
            }
        }
        self.plates.extend_from_slice(plate.as_bytes());
        self.folded.extend_from_slice(f);
        self.ends.push(self.plates.len() as u32);
    }

    fn plate(&self, id: usize) -> &str {
        let start = if id == 0 {
            0
        } else {
            self.ends[id - 1] as usize
        };
        let end = self.ends[id] as usize;
        std::str::from_utf8(&self.plates[start..end]).unwrap_or("")
    }

    /// The plates `pattern` matches, in first-seen order.
    pub fn matching(&self, pattern: &PlatePattern) -> Vec<String> {
        let (min, max) = pattern.length_bounds();
        let fits = |p: &str| p.len() >= min && max.is_none_or(|m| p.len() <= m);
        let mut out = Vec::new();
        match self.candidates(pattern) {
            Some(ids) => {
                for id in ids {
                    let p = self.plate(id as usize);
                    if fits(p) && pattern.matches(p) {
                        out.push(p.to_owned());
                    }
                }
            }
            None => {
                for id in 0..self.ends.len() {
                    let p = self.plate(id);
                    if fits(p) && pattern.matches(p) {
                        out.push(p.to_owned());
                    }
                }
            }
        }
        out
    }

    /// Plates that may match: the intersection of the two shortest
    /// posting lists of the pattern's folded n-grams; `None` when the
    /// pattern has no run of two literals (every plate is a candidate).
    fn candidates(&self, pattern: &PlatePattern) -> Option<Vec<u32>> {
        let folded = fold_plate(pattern.as_str());
        let mut lists: Vec<&Vec<u32>> = Vec::new();
        for run in folded.as_bytes().split(|b| *b == b'*' || *b == b'?') {
            let (n, table) = if run.len() >= 3 {
                (3, &self.trigrams)
            } else if run.len() == 2 {
                (2, &self.bigrams)
            } else {
                continue;
            };
            for w in run.windows(n) {
                if let Some(g) = gram(w) {
                    lists.push(&table[g]);
                }
            }
        }
        lists.sort_by_key(|l| l.len());
        let first = lists.first()?;
        Some(match lists.get(1) {
            Some(second) => intersect(first, second),
            None => first.to_vec(),
        })
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(plates: &[String], p: &PlatePattern) -> Vec<String> {
        plates.iter().filter(|x| p.matches(x)).cloned().collect()
    }

    proptest! {
        #[test]
        fn the_index_finds_what_a_scan_finds(
            plates in proptest::collection::vec("[0-9A-Z]{2,8}", 1..200),
            pattern in "[*?0-9A-Z]{2,8}",
            tolerant in any::<bool>(),
        ) {
            let Ok(p) = PlatePattern::parse(&pattern, tolerant) else { return Ok(()) };
            let mut seen = std::collections::HashSet::new();
            let plates: Vec<String> = plates.into_iter().filter(|x| seen.insert(x.clone())).collect();
            let mut idx = PlateIndex::default();
            for x in &plates {
                idx.push(x);
            }
            prop_assert_eq!(idx.matching(&p), brute(&plates, &p));
        }
    }

    #[test]
    fn a_leading_star_pattern_finds_plates_through_a_bigram() {
        let mut idx = PlateIndex::default();
        for p in ["7ABC421", "8XY4021", "4Z21000", "1111111"] {
            idx.push(p);
        }
        let p = PlatePattern::parse("*4?21*", false).expect("pattern");
        assert_eq!(idx.matching(&p), vec!["8XY4021", "4Z21000"]);
        // Tolerant: an O read where a 0 was.
        let p = PlatePattern::parse("8XY4O21", true).expect("pattern");
        assert_eq!(idx.matching(&p), vec!["8XY4021"]);
    }
}
