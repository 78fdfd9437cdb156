//! From per-slot OCR probabilities to plate text: fuse several reads of the
//! same plate (several crops × several OCR models), fold the glyphs US plates
//! print alike, and take the most probable strings that are well-formed
//! plates (characters then trailing padding, 2..=8 characters).
//!
//! Decisions (they appear in each read's `decisions`):
//! - **O and 0 are read as 0** on plates whose region guess is the United
//!   States, Canada or unknown. US plates print them with the same glyph and
//!   state records (and our ground truth) write 0; the OCR's split between
//!   the two is noise. The O spellings stay among the alternatives for
//!   matching. Plates of regions that tell O from 0 (Brazil's letter
//!   blocks, say) keep the OCR's choice.
//! - The string probability is the product of the chosen symbol's fused
//!   probability in every slot, trailing padding included.

use super::engine::SlotProbs;
use super::models::{ALPHABET, PAD};

/// Shortest and longest plate text we emit.
pub const MIN_LEN: usize = 2;
pub const MAX_LEN: usize = 8;
/// Index of O and 0 in the alphabet.
const IDX_O: usize = 24;
const IDX_0: usize = 0;

/// One candidate text with its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub text: String,
    pub probability: f32,
    /// Probability of each character of `text`.
    pub char_probs: Vec<f32>,
}

/// Fused per-slot distributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub probs: Vec<[f32; 37]>,
}

/// Averages per-slot distributions, weighting each read by `weight`. A read
/// with fewer slots counts as padding in the missing slots.
pub fn fuse(reads: &[(&SlotProbs, f32)]) -> Option<Fused> {
    let slots = reads.iter().map(|(r, _)| r.probs.len()).max()?;
    let total: f32 = reads.iter().map(|(_, w)| w.max(0.0)).sum();
    if slots == 0 || total <= 0.0 {
        return None;
    }
    let mut probs = vec![[0f32; 37]; slots];
    for (r, w) in reads {
        let w = w.max(0.0) / total;
        for (s, acc) in probs.iter_mut().enumerate() {
            match r.probs.get(s) {
                Some(row) => {
                    let sum: f32 = row.iter().map(|p| p.max(0.0)).sum();
                    let sum = if sum > 0.0 && sum.is_finite() {
                        sum
                    } else {
                        1.0
                    };
                    for (a, p) in acc.iter_mut().zip(row) {
                        *a += w * p.max(0.0) / sum;
                    }
                }
                None => acc[PAD] += w,
            }
        }
    }
    Some(Fused { probs })
}

/// Moves the probability of O onto 0 in every slot. Returns whether O was
/// the top symbol of any slot (the decision changed the raw argmax).
pub fn fold_o_into_zero(f: &mut Fused) -> bool {
    let mut changed = false;
    for row in &mut f.probs {
        let top = argmax(row);
        if top == IDX_O {
            changed = true;
        }
        row[IDX_0] += row[IDX_O];
        row[IDX_O] = 0.0;
    }
    changed
}

fn argmax(row: &[f32; 37]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(PAD, |(i, _)| i)
}

/// The `k` most probable well-formed strings: characters in the first `n`
/// slots, padding in all the rest, `MIN_LEN <= n <= MAX_LEN`.
pub fn best_strings(f: &Fused, k: usize) -> Vec<Candidate> {
    let slots = f.probs.len();
    // suffix_pad[i] = probability that slots i.. are all padding.
    let mut suffix_pad = vec![1f32; slots + 1];
    for i in (0..slots).rev() {
        suffix_pad[i] = suffix_pad[i + 1] * f.probs[i][PAD];
    }
    // Beam over character prefixes: top prefixes by probability per length.
    // Prefixes are fixed arrays so the beam does not allocate per entry.
    type Prefix = [u8; MAX_LEN];
    let mut out: Vec<(f32, Prefix, usize)> = Vec::new();
    let mut beam: Vec<(f32, Prefix)> = vec![(1.0, [0; MAX_LEN])];
    let width = k.max(1) * 4;
    let mut next: Vec<(f32, Prefix)> = Vec::with_capacity(width * PAD);
    for (n, row) in f.probs.iter().enumerate().take(MAX_LEN.min(slots)) {
        next.clear();
        for (p, prefix) in &beam {
            for (c, &pc) in row.iter().enumerate().take(PAD) {
                if pc <= 0.0 {
                    continue;
                }
                let mut s = *prefix;
                s[n] = c as u8;
                next.push((p * pc, s));
            }
        }
        let keep = width.min(next.len());
        if keep < next.len() {
            next.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
            next.truncate(keep);
        }
        let len = n + 1;
        if len >= MIN_LEN {
            out.extend(next.iter().map(|(p, s)| (p * suffix_pad[len], *s, len)));
        }
        std::mem::swap(&mut beam, &mut next);
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.truncate(k);
    out.into_iter()
        .map(|(p, s, len)| Candidate {
            text: s[..len]
                .iter()
                .map(|&c| ALPHABET[c as usize] as char)
                .collect(),
            probability: p,
            char_probs: s[..len]
                .iter()
                .enumerate()
                .map(|(i, &c)| f.probs[i][c as usize])
                .collect(),
        })
        .collect()
}

/// Spellings of `text` with O in place of 0, most likely first, with the
/// probability share O had in that slot before folding (`raw`).
pub fn o_variants(text: &str, prob: f32, raw: &Fused) -> Vec<Candidate> {
    let mut v = Vec::new();
    for (i, ch) in text.char_indices() {
        if ch != '0' {
            continue;
        }
        let Some(row) = raw.probs.get(i) else {
            continue;
        };
        let both = row[IDX_0] + row[IDX_O];
        let share = if both > 0.0 { row[IDX_O] / both } else { 0.0 };
        let mut t = text.to_string();
        t.replace_range(i..i + 1, "O");
        v.push(Candidate {
            text: t,
            probability: prob * share,
            char_probs: Vec::new(),
        });
    }
    v.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(pairs: &[(char, f32)]) -> [f32; 37] {
        let mut r = [0f32; 37];
        let rest = 1.0 - pairs.iter().map(|p| p.1).sum::<f32>();
        for &(c, p) in pairs {
            let i = ALPHABET
                .iter()
                .position(|&a| a as char == c)
                .expect("in alphabet");
            r[i] += p;
        }
        r[PAD] += rest.max(0.0);
        r
    }

    fn read(text: &str, p: f32, slots: usize) -> SlotProbs {
        let mut probs: Vec<[f32; 37]> = text.chars().map(|c| slot(&[(c, p)])).collect();
        while probs.len() < slots {
            probs.push(slot(&[]));
        }
        SlotProbs { probs }
    }

    #[test]
    fn argmax_string_wins_and_padding_trails() {
        let r = read("7ABC123", 0.9, 10);
        let f = fuse(&[(&r, 1.0)]).expect("fused");
        let c = best_strings(&f, 5);
        assert_eq!(c[0].text, "7ABC123");
        assert_eq!(c[0].char_probs.len(), 7);
        assert!(c.iter().all(|c| !c.text.contains('_')));
        assert!(c[0].probability > c[1].probability);
    }

    #[test]
    fn fusion_outvotes_one_bad_read() {
        let good = read("ABC123", 0.9, 10);
        let mut bad = read("ABC123", 0.9, 9);
        bad.probs[3] = slot(&[('I', 0.6), ('1', 0.3)]);
        let f = fuse(&[(&good, 1.0), (&good, 1.0), (&bad, 1.0)]).expect("fused");
        assert_eq!(best_strings(&f, 1)[0].text, "ABC123");
    }

    #[test]
    fn o_folds_into_zero_and_stays_an_alternative() {
        let mut r = read("AB0C", 0.9, 10);
        r.probs[2] = slot(&[('O', 0.6), ('0', 0.35)]);
        let raw = fuse(&[(&r, 1.0)]).expect("fused");
        let mut f = raw.clone();
        assert!(fold_o_into_zero(&mut f));
        let best = &best_strings(&f, 1)[0];
        assert_eq!(best.text, "AB0C");
        assert!(best.char_probs[2] > 0.9);
        let v = o_variants(&best.text, best.probability, &raw);
        assert_eq!(v[0].text, "ABOC");
        assert!(v[0].probability > 0.5 * best.probability);
    }

    #[test]
    fn too_short_is_not_a_plate() {
        let r = read("A", 0.99, 10);
        let f = fuse(&[(&r, 1.0)]).expect("fused");
        let c = best_strings(&f, 3);
        assert!(c.iter().all(|c| c.text.len() >= MIN_LEN));
        assert!(c.first().is_none_or(|c| c.probability < 0.05));
    }

    #[test]
    fn empty_input() {
        assert!(fuse(&[]).is_none());
    }
}
