//! From the words read on a plate to a state: every phrase of
//! [`super::table::STATES`] is looked for, fuzzily, in every line of text,
//! and the matches become a score per state. Pure functions, no models.
//!
//! How a line is matched:
//! - the line is squeezed to upper-case letters and digits; a phrase of six
//!   or more letters may match anywhere in it at a weighted edit cost of at
//!   most a quarter of its length ([`align`]: look-alike characters, a
//!   dropped I and RN read as M cost half an edit), so "CALIFOMIA",
//!   "JLLINOIS" and "LANDOFLINCOLN" count;
//! - a short name (Iowa, Ohio, Utah, Idaho, Maine, Texas) must be nearly
//!   exact and inside one word holding at most four other letters (a
//!   sticker's month glued to it), so it is not found inside longer words;
//! - a match followed by "County" or "Parish" names a county, not a state
//!   (Washington County is in many states);
//! - where matches of two states overlap in a line, the one of more merit
//!   wins (letters matched less half the phrase's length): ARKANSAS is not
//!   also KANSAS, WEST VIRGINIA not also VIRGINIA, yet a month sticker
//!   before VIRGINIA does not make it a poor WEST VIRGINIA.
//!
//! How matches become a state: a match scores its kind's weight × its
//! similarity² × a factor of the OCR's own confidence in the line; several
//! matches of one state combine as independent evidence (1 − Π(1 − s)). The
//! top state's confidence is its score, discounted by how close the second
//! comes. States with only weak, unaccepted matches still rank in the top
//! three (far below any threshold), so a user sees the likely candidates.

use super::table::{squeeze, Kind, STATES};

/// A line of text read from the plate, with the OCR's confidence in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub confidence: f32,
}

/// One accepted match of a phrase in a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Index into [`STATES`].
    pub state: usize,
    pub kind: Kind,
    pub phrase: &'static str,
    /// What was read where the phrase matched (squeezed).
    pub read: String,
    /// 1 − edits / phrase length.
    pub similarity: f32,
    pub score: f32,
    line: usize,
    span: (usize, usize),
}

/// The outcome of matching, before the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// (postal code, confidence), best first, at most three.
    pub top3: Vec<(String, f32)>,
    /// What the top state was read from, when it had an accepted match.
    pub evidence: Option<String>,
    /// The top state rests only on words another state also prints
    /// ([`part_of_another`]): more of the plate should be read.
    pub ambiguous: bool,
    /// ... and those words were not read exactly: WASHNGTON may be a DC
    /// plate whose "DC" was missed as well as a Washington one, so no state
    /// may be given from it.
    pub unsure: bool,
}

/// Ambiguous evidence alone counts this much: WASHINGTON may be a DC plate
/// whose "DC" was not read.
const AMBIGUOUS_FACTOR: f32 = 0.8;

/// The states (other than `state`) one of whose phrases contains `phrase`:
/// WASHINGTON is part of DC's "Washington DC", VIRGINIA of WEST VIRGINIA,
/// KANSAS of ARKANSAS.
pub fn part_of_another(state: usize, phrase: &str) -> Vec<usize> {
    let p = squeeze(phrase);
    STATES
        .iter()
        .enumerate()
        .filter(|(i, st)| *i != state && st.phrases().any(|(q, _)| squeeze(q).contains(&p)))
        .map(|(i, _)| i)
        .collect()
}

/// A phrase must be at least this similar to count as evidence: a quarter
/// of its letters may be misread (edits weighted as in [`align`]).
const MIN_SIMILARITY: f32 = 0.75;
/// Weak candidates (no accepted match) rank with at most this confidence.
pub const WEAK_CAP: f32 = 0.2;
/// Phrases up to this long are short names: found only nearly exactly, in a
/// word with at most [`SHORT_SLACK`] other letters.
const SHORT: usize = 5;
/// Letters besides a short name that its word may hold (a month sticker
/// glued to it, "MAINEDEC"); digits do not count.
const SHORT_SLACK: usize = 4;

/// Character groups OCR confuses on plates' small print.
const CONFUSABLE: [&[u8]; 11] = [
    b"O0QDCU", b"I1LJT", b"S5", b"B8", b"Z2", b"G6C", b"MN", b"EF", b"A4", b"UV", b"HN",
];

fn sub_cost(a: u8, b: u8) -> f32 {
    if a == b {
        0.0
    } else if CONFUSABLE.iter().any(|g| g.contains(&a) && g.contains(&b)) {
        0.5
    } else {
        1.0
    }
}

/// Missing from the read: thin letters vanish more easily.
fn del_cost(a: u8) -> f32 {
    if a == b'I' {
        0.5
    } else {
        1.0
    }
}

/// Two letters of the phrase read as one (`RN` as `M`, `VV` as `W`).
fn merge_cost(p: &[u8], t: u8) -> Option<f32> {
    matches!(
        (p, t),
        ([b'R', b'N'], b'M') | ([b'V', b'V'], b'W') | ([b'I', b'N'], b'M')
    )
    .then_some(0.5)
}

/// Weighted edit cost of `p` against its best-matching substring of `t`
/// (semi-global alignment), with that substring's span. Substitutions of
/// look-alike characters, a dropped `I` and `RN` read as `M` cost half.
pub fn align(p: &[u8], t: &[u8]) -> (f32, (usize, usize)) {
    let n = t.len();
    // rows[i][j]: cost of p[..i] against a substring ending at t[..j], and
    // where that substring starts.
    let mut rows: Vec<Vec<(f32, usize)>> = Vec::with_capacity(p.len() + 1);
    rows.push((0..=n).map(|j| (0.0, j)).collect());
    for i in 1..=p.len() {
        let mut row = vec![(0f32, 0usize); n + 1];
        row[0] = (rows[i - 1][0].0 + del_cost(p[i - 1]), 0);
        for j in 1..=n {
            let up = &rows[i - 1];
            let mut best = (up[j - 1].0 + sub_cost(p[i - 1], t[j - 1]), up[j - 1].1);
            let del = up[j].0 + del_cost(p[i - 1]);
            if del < best.0 {
                best = (del, up[j].1);
            }
            let ins = row[j - 1].0 + 1.0;
            if ins < best.0 {
                best = (ins, row[j - 1].1);
            }
            if i >= 2 {
                if let Some(c) = merge_cost(&p[i - 2..i], t[j - 1]) {
                    let m = rows[i - 2][j - 1].0 + c;
                    if m < best.0 {
                        best = (m, rows[i - 2][j - 1].1);
                    }
                }
            }
            row[j] = best;
        }
        rows.push(row);
    }
    let last = &rows[p.len()];
    let mut best = (f32::MAX, (0, 0));
    for (j, &(c, s)) in last.iter().enumerate() {
        if c < best.0 {
            best = (c, (s, j));
        }
    }
    best
}

/// Words of a line, squeezed, each with its span in the squeezed line.
fn words(text: &str) -> Vec<(String, (usize, usize))> {
    let mut out = Vec::new();
    let mut at = 0;
    for w in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let w = squeeze(w);
        if !w.is_empty() {
            out.push((w.clone(), (at, at + w.len())));
            at += w.len();
        }
    }
    out
}

/// Where a short name matches in a line: inside one word, nearly exactly,
/// the word holding few other letters.
fn short_match(p: &[u8], words: &[(String, (usize, usize))]) -> Option<(f32, (usize, usize))> {
    let allowed = if p.len() < SHORT { 0.5 } else { 1.0 };
    words
        .iter()
        .filter_map(|(w, (at, _))| {
            let (c, (s, e)) = align(p, w.as_bytes());
            let others = w
                .bytes()
                .enumerate()
                .filter(|(i, b)| (*i < s || *i >= e) && b.is_ascii_alphabetic())
                .count();
            (c <= allowed && others <= SHORT_SLACK).then_some((c, (at + s, at + e)))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// Whether a match names something other than the plate's issuer: a county
/// ("WASHINGTON COUNTY" is neither Washington nor "Washington DC": the words
/// from the match's start to just past its end say COUNTY or PARISH), or,
/// for a name, a university or its team on a specialty plate of another
/// state ("OHIO STATE", "VIRGINIA TECH", "UNIVERSITY OF ALABAMA").
fn names_something_else(kind: Kind, joined: &str, span: (usize, usize)) -> bool {
    let end = (span.1 + "PARISH".len()).min(joined.len());
    let county = joined
        .get(span.0..end)
        .is_some_and(|s| s.contains("COUNT") || s.contains("PARISH"));
    let after = joined.get(span.1..).unwrap_or("");
    let before = joined.get(..span.0).unwrap_or("");
    let school = kind == Kind::Name
        && (["STATE", "UNIV", "TECH"]
            .iter()
            .any(|w| after.starts_with(w))
            || before.ends_with("UNIVERSITYOF"));
    county || school
}

/// How much the OCR's confidence in a line weighs on a match in it.
fn line_factor(confidence: f32) -> f32 {
    0.5 + 0.5 * confidence.clamp(0.0, 1.0)
}

/// Every accepted match in `lines`, after overlaps are resolved, and the
/// best similarity any phrase of each state reached (for weak candidates).
pub fn find_matches(lines: &[Line]) -> (Vec<Match>, Vec<f32>) {
    let mut matches = Vec::new();
    let mut weak = vec![0f32; STATES.len()];
    for (li, line) in lines.iter().enumerate() {
        let joined = squeeze(&line.text);
        if joined.is_empty() {
            continue;
        }
        let words = words(&line.text);
        for (si, state) in STATES.iter().enumerate() {
            for (phrase, kind) in state.phrases() {
                let p = squeeze(phrase);
                let found = if p.len() <= SHORT {
                    short_match(p.as_bytes(), &words)
                } else {
                    Some(align(p.as_bytes(), joined.as_bytes()))
                };
                let Some((cost, span)) = found else { continue };
                let similarity = (1.0 - cost / p.len() as f32).max(0.0);
                weak[si] = weak[si].max(similarity);
                if similarity < MIN_SIMILARITY {
                    continue;
                }
                if names_something_else(kind, &joined, span) {
                    continue;
                }
                let score = kind.weight() * similarity * similarity * line_factor(line.confidence);
                matches.push(Match {
                    state: si,
                    kind,
                    phrase,
                    read: joined[span.0..span.1].to_string(),
                    similarity,
                    score,
                    line: li,
                    span,
                });
            }
        }
    }
    let (kept, beaten) = resolve_overlaps(matches);
    // A state whose match lost to a longer phrase is explained away: it is
    // no candidate at all (ARKANSAS gives no weak KANSAS).
    for b in beaten {
        if !kept.iter().any(|k| k.state == b.state) {
            weak[b.state] = 0.0;
        }
    }
    (kept, weak)
}

/// Where matches of different states overlap in one line, only the one of
/// most merit stays; returns those kept and those beaten.
fn resolve_overlaps(mut matches: Vec<Match>) -> (Vec<Match>, Vec<Match>) {
    // Merit: letters matched less half the phrase's length. A longer phrase
    // beats a shorter one it overlaps only if its extra letters were mostly
    // read: ARKANSAS read whole beats KANSAS inside it, but "SEP VIRGINIA"
    // (a month sticker) stays VIRGINIA rather than a poor WEST VIRGINIA, and
    // WASHINGTON read whole is not "Washington DC" missing its DC.
    let merit = |m: &Match| squeeze(m.phrase).len() as f32 * (m.similarity - 0.5);
    matches.sort_by(|a, b| {
        merit(b)
            .total_cmp(&merit(a))
            .then(squeeze(b.phrase).len().cmp(&squeeze(a.phrase).len()))
    });
    let mut kept: Vec<Match> = Vec::new();
    let mut beaten = Vec::new();
    for m in matches {
        let lost = kept.iter().any(|k| {
            k.line == m.line && k.state != m.state && k.span.0 < m.span.1 && m.span.0 < k.span.1
        });
        if lost {
            beaten.push(m);
        } else {
            kept.push(m);
        }
    }
    (kept, beaten)
}

/// Ranks the states the lines name.
pub fn rank(lines: &[Line]) -> Ranked {
    let (matches, weak) = find_matches(lines);
    // Noisy-or over each state's distinct phrases (a phrase read twice is
    // one piece of evidence: its best reading counts).
    let mut scores = vec![0f32; STATES.len()];
    let mut best: Vec<Option<&Match>> = vec![None; STATES.len()];
    for si in 0..STATES.len() {
        let mut phrases: Vec<&Match> = matches.iter().filter(|m| m.state == si).collect();
        phrases.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut miss = 1.0;
        let mut seen: Vec<&str> = Vec::new();
        for m in &phrases {
            if !seen.contains(&m.phrase) {
                seen.push(m.phrase);
                miss *= 1.0 - m.score;
            }
        }
        scores[si] = 1.0 - miss;
        best[si] = phrases.first().copied();
    }
    // A state whose every match is part of another state's phrase is
    // explained away when that other state has evidence of its own
    // (WASHINGTON beside "Taxation Without Representation" is DC), and
    // counts less when it stands alone.
    let mut ambiguous = vec![false; STATES.len()];
    let mut unsure = vec![false; STATES.len()];
    for si in 0..STATES.len() {
        let mine: Vec<&Match> = matches.iter().filter(|m| m.state == si).collect();
        if mine.is_empty() {
            continue;
        }
        let others: Vec<Vec<usize>> = mine.iter().map(|m| part_of_another(si, m.phrase)).collect();
        if others.iter().any(Vec::is_empty) {
            continue;
        }
        ambiguous[si] = true;
        unsure[si] = mine.iter().all(|m| m.similarity < 1.0);
        let explained = others.iter().flatten().any(|&o| {
            matches
                .iter()
                .any(|m| m.state == o && part_of_another(o, m.phrase).is_empty())
        });
        scores[si] *= if explained { 0.0 } else { AMBIGUOUS_FACTOR };
    }
    let mut order: Vec<usize> = (0..STATES.len()).filter(|&i| scores[i] > 0.0).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut top3: Vec<(String, f32)> = Vec::new();
    for (k, &i) in order.iter().take(3).enumerate() {
        let next = order.get(k + 1).map_or(0.0, |&j| scores[j]);
        let s = scores[i];
        let conf = if k == 0 {
            s * s / (s + next)
        } else {
            s * s / (s + scores[order[0]])
        };
        top3.push((STATES[i].code.to_string(), conf));
    }
    let evidence = order.first().and_then(|&i| best[i]).map(describe);
    if top3.len() < 3 {
        let mut rest: Vec<usize> = (0..STATES.len())
            .filter(|i| !order.contains(i) && weak[*i] >= 0.5)
            .collect();
        rest.sort_by(|&a, &b| weak[b].total_cmp(&weak[a]));
        for i in rest.into_iter().take(3 - top3.len()) {
            top3.push((STATES[i].code.to_string(), WEAK_CAP * weak[i].powi(4)));
        }
    }
    let unsure = order.first().is_some_and(|&i| unsure[i]);
    let ambiguous = order.first().is_some_and(|&i| ambiguous[i]);
    Ranked {
        top3,
        evidence,
        ambiguous,
        unsure,
    }
}

/// `printed "CALIFORNIA"`, `slogan "Sunshine State" (read SUNSHNESTATE)`.
fn describe(m: &Match) -> String {
    let shown = match m.kind {
        Kind::Name => m.phrase.to_uppercase(),
        Kind::Slogan | Kind::Web => m.phrase.to_string(),
    };
    if m.read == squeeze(m.phrase) {
        format!("{} \"{shown}\"", m.kind.label())
    } else {
        format!("{} \"{shown}\" (read {})", m.kind.label(), m.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognise::state::{decide, DEFAULT_THRESHOLD};

    fn lines(texts: &[&str]) -> Vec<Line> {
        texts
            .iter()
            .map(|t| Line {
                text: t.to_string(),
                confidence: 0.9,
            })
            .collect()
    }

    /// The state given for these lines at the default threshold.
    fn given(texts: &[&str]) -> Option<String> {
        decide(&lines(texts), DEFAULT_THRESHOLD).state
    }

    #[test]
    fn alignment_is_weighted_for_small_print() {
        assert_eq!(align(b"OHIO", b"XXOHIOYY"), (0.0, (2, 6)));
        // RN read as M costs half an edit; a look-alike substitution half.
        assert_eq!(align(b"CALIFORNIA", b"CALIFOMIA").0, 0.5);
        assert_eq!(align(b"ILLINOIS", b"JLLINOIS").0, 0.5);
        assert_eq!(align(b"TEXAS", b"TEQAS").0, 1.0);
    }

    #[test]
    fn names_are_read_through_ocr_noise() {
        assert_eq!(given(&["CALIFORNIA"]).as_deref(), Some("CA"));
        assert_eq!(given(&["DEC Califomia 07"]).as_deref(), Some("CA"));
        assert_eq!(given(&["Jllinois"]).as_deref(), Some("IL"));
        assert_eq!(given(&["New  York"]).as_deref(), Some("NY"));
        assert_eq!(given(&["MISSSSIPPI"]).as_deref(), Some("MS"));
        // Short names: a word of their own or glued to a sticker's month.
        assert_eq!(given(&["UTAH"]).as_deref(), Some("UT"));
        assert_eq!(given(&["MAINEDEC"]).as_deref(), Some("ME"));
        // ... but not inside a longer word.
        assert_eq!(given(&["ROMAINELETTUCE"]), None);
    }

    #[test]
    fn slogans_and_web_addresses_name_their_state() {
        for (text, code) in [
            ("Sunshine State", "FL"),
            ("LAND OF LINCOLN", "IL"),
            ("EMPIRE STATE", "NY"),
            ("Live Free or Die", "NH"),
            ("Famous Potatoes", "ID"),
            ("Great Lakes", "MI"),
            ("dmv.ca.gov", "CA"),
            ("Stars Fell on Alabama", "AL"),
            ("TAXATION WITHOUT REPRESENTATION", "DC"),
        ] {
            assert_eq!(given(&[text]).as_deref(), Some(code), "{text}");
        }
        let r = decide(&lines(&["Sunshine State"]), DEFAULT_THRESHOLD);
        assert_eq!(r.evidence.as_deref(), Some("slogan \"Sunshine State\""));
        let r = decide(&lines(&["CALIFORNIA"]), DEFAULT_THRESHOLD);
        assert_eq!(r.evidence.as_deref(), Some("printed \"CALIFORNIA\""));
    }

    #[test]
    fn a_name_inside_another_is_not_its_own_state() {
        assert_eq!(given(&["ARKANSAS"]).as_deref(), Some("AR"));
        assert_eq!(given(&["KANSAS"]).as_deref(), Some("KS"));
        assert_eq!(given(&["WEST VIRGINIA"]).as_deref(), Some("WV"));
        assert_eq!(given(&["VIRGINIA"]).as_deref(), Some("VA"));
        // A month sticker before VIRGINIA is not a poor "WEST".
        assert_eq!(given(&["SEP VIRGINIA 99"]).as_deref(), Some("VA"));
        assert_eq!(given(&["WASHINGTON"]).as_deref(), Some("WA"));
        assert_eq!(given(&["WASHINGTON, DC"]).as_deref(), Some("DC"));
        // WASHINGTON without its DC, beside DC's slogan, is DC.
        assert_eq!(
            given(&["WASHNGTON", "TAXATION WITHOUT REPRESENTATION"]).as_deref(),
            Some("DC")
        );
        assert!(rank(&lines(&["WASHINGTON"])).ambiguous);
        // Words another state prints too give a state only when read
        // exactly: WASHNGTON may be a DC plate whose DC was missed.
        assert_eq!(given(&["WASHINGTON"]).as_deref(), Some("WA"));
        assert_eq!(given(&["WASHNGTON"]), None);
        assert_eq!(given(&["VIRGNIA"]), None);
        assert!(!rank(&lines(&["WASHINGTON", "EVERGREEN STATE"])).ambiguous);
        assert_eq!(
            given(&["KANSAS", "THE NATURAL STATE"]).as_deref(),
            Some("AR")
        );
        for r in [
            decide(&lines(&["ARKANSAS"]), DEFAULT_THRESHOLD),
            decide(&lines(&["WEST VIRGINIA"]), DEFAULT_THRESHOLD),
        ] {
            assert!(
                r.top3.iter().all(|(c, p)| c == &r.top3[0].0 || *p < 0.2),
                "{r:?}"
            );
        }
    }

    #[test]
    fn misleading_words_give_no_state() {
        for text in [
            "Pacific Nissan",
            "USA",
            "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC",
            "Stars Fell On",
            "WASHINGTON COUNTY",
            "Jefferson Parish",
            "IN GOD WE TRUST",
            "ABC 1234",
        ] {
            assert_eq!(given(&[text]), None, "{text}");
        }
        // Nor does a university's name on a specialty plate.
        assert_eq!(given(&["VIRGINIA", "OHIO STATE"]).as_deref(), Some("VA"));
        assert_eq!(
            given(&["UNIVERSITY OF ALABAMA", "GEORGIA"]).as_deref(),
            Some("GA")
        );
        assert_eq!(given(&["Peach State"]).as_deref(), Some("GA"));
        // A county name does not hide the state printed beside it.
        assert_eq!(
            given(&["WASHINGTON COUNTY", "TENNESSEE"]).as_deref(),
            Some("TN")
        );
    }

    #[test]
    fn nothing_readable_abstains() {
        let r = decide(&[], DEFAULT_THRESHOLD);
        assert_eq!((r.state, r.confidence, r.top3.len()), (None, 0.0, 0));
        assert!(r.evidence.is_none());
        let r = decide(&lines(&["", " .. ", "??"]), DEFAULT_THRESHOLD);
        assert_eq!(r.state, None);
        assert_eq!(r.confidence, 0.0);
    }

    #[test]
    fn two_states_in_one_plate_lower_the_confidence() {
        let alone = decide(&lines(&["TEXAS"]), DEFAULT_THRESHOLD);
        let both = decide(&lines(&["TEXAS", "OKLAHOMA"]), DEFAULT_THRESHOLD);
        assert!(both.confidence < alone.confidence, "{both:?} {alone:?}");
        let two: Vec<&str> = both.top3.iter().take(2).map(|(c, _)| c.as_str()).collect();
        assert!(two.contains(&"TX") && two.contains(&"OK"), "{both:?}");
        // Name and slogan agreeing are surer than the name alone.
        let agree = decide(&lines(&["TEXAS", "THE LONE STAR STATE"]), DEFAULT_THRESHOLD);
        assert!(agree.confidence > alone.confidence);
    }

    #[test]
    fn weak_candidates_rank_but_are_never_given() {
        // Too garbled to accept, close enough to rank.
        let r = decide(&lines(&["CALKFXMNA"]), DEFAULT_THRESHOLD);
        assert_eq!(r.state, None);
        assert_eq!(r.top3.first().map(|(c, _)| c.as_str()), Some("CA"));
        assert!(r.confidence <= WEAK_CAP);
    }
}
