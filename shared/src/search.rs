//! Plate patterns as people search for them, shared by the hub's and the
//! edge's search: exact, wildcard (`*` any run of characters, `?` exactly
//! one — partial plates from major crimes, policy 426.3(c)) and
//! OCR-tolerant (characters a reader confuses compare equal: 0/O/D/Q, 1/I,
//! 2/Z, 5/S, 8/B, 6/G). Also the distance used for a canvass around a point.

use crate::types::MAX_PLATE_LEN;

/// A pattern needs at least this many plate characters: `*` alone is a
/// dump of every read, not a search for a vehicle.
pub const MIN_LITERALS: usize = 2;
/// Longest pattern, wildcards included.
pub const MAX_PATTERN_LEN: usize = 2 * MAX_PLATE_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a plate pattern has letters, digits, `*` and `?` only (got {0:?})")]
    BadChar(char),
    #[error("a plate pattern needs at least {MIN_LITERALS} letters or digits")]
    TooFewLiterals,
    #[error("a plate pattern is at most {MAX_PATTERN_LEN} characters")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(u8),
    /// `?`: exactly one character.
    One,
    /// `*`: any run, empty included.
    Any,
}

/// A parsed plate pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatePattern {
    toks: Vec<Tok>,
    tolerant: bool,
    text: String,
}

/// The class a reader confuses a character with: its representative.
pub fn fold_char(c: u8) -> u8 {
    match c {
        b'O' | b'D' | b'Q' => b'0',
        b'I' => b'1',
        b'Z' => b'2',
        b'S' => b'5',
        b'B' => b'8',
        b'G' => b'6',
        other => other,
    }
}

/// A plate with every character replaced by its class ([`fold_char`]):
/// two plates an OCR engine could confuse fold to the same text.
pub fn fold_plate(plate: &str) -> String {
    plate.bytes().map(|b| char::from(fold_char(b))).collect()
}

impl PlatePattern {
    /// Parse what a person typed: case and spaces or dashes do not matter.
    /// `tolerant` makes confusable characters match each other.
    pub fn parse(input: &str, tolerant: bool) -> Result<Self, PatternError> {
        let mut toks = Vec::new();
        let mut text = String::new();
        for c in input.chars() {
            let tok = match c {
                ' ' | '-' => continue,
                '*' => {
                    if toks.last() == Some(&Tok::Any) {
                        continue;
                    }
                    Tok::Any
                }
                '?' => Tok::One,
                c if c.is_ascii_alphanumeric() => Tok::Char(c.to_ascii_uppercase() as u8),
                c => return Err(PatternError::BadChar(c)),
            };
            toks.push(tok);
            text.push(match tok {
                Tok::Char(b) => char::from(b),
                Tok::One => '?',
                Tok::Any => '*',
            });
        }
        if toks.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if toks.iter().filter(|t| matches!(t, Tok::Char(_))).count() < MIN_LITERALS {
            return Err(PatternError::TooFewLiterals);
        }
        Ok(PlatePattern {
            toks,
            tolerant,
            text,
        })
    }

    /// The pattern as normalised (upper case, no separators).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_tolerant(&self) -> bool {
        self.tolerant
    }

    /// The one plate this pattern matches, if it has no wildcard and is
    /// not tolerant: an index lookup answers it.
    pub fn exact(&self) -> Option<&str> {
        (!self.tolerant && self.toks.iter().all(|t| matches!(t, Tok::Char(_))))
            .then_some(self.text.as_str())
    }

    /// Whether the pattern has `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        self.toks.iter().any(|t| !matches!(t, Tok::Char(_)))
    }

    /// The characters before the first wildcard (folded when tolerant):
    /// every match starts with them, so a sorted index can seek there.
    pub fn literal_prefix(&self) -> String {
        self.toks
            .iter()
            .map_while(|t| match t {
                Tok::Char(b) if self.tolerant => Some(char::from(fold_char(*b))),
                Tok::Char(b) => Some(char::from(*b)),
                _ => None,
            })
            .collect()
    }

    /// Shortest and longest plate the pattern can match (`None`: no limit).
    pub fn length_bounds(&self) -> (usize, Option<usize>) {
        let min = self.toks.iter().filter(|t| **t != Tok::Any).count();
        let max = (!self.toks.contains(&Tok::Any)).then_some(min);
        (min, max)
    }

    fn same(&self, p: u8, c: u8) -> bool {
        if self.tolerant {
            fold_char(p) == fold_char(c)
        } else {
            p == c
        }
    }

    /// Whether `plate` (normalised: A–Z, 0–9) matches. Linear in practice:
    /// the classic glob walk that backtracks only to the last `*`.
    pub fn matches(&self, plate: &str) -> bool {
        let s = plate.as_bytes();
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match self.toks.get(p) {
                Some(Tok::Char(c)) if self.same(*c, s[i]) => {
                    p += 1;
                    i += 1;
                }
                Some(Tok::One) => {
                    p += 1;
                    i += 1;
                }
                Some(Tok::Any) => {
                    star = Some((p, i));
                    p += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        p = sp + 1;
                        i = si + 1;
                        star = Some((sp, si + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Any)
    }
}

/// Great-circle distance in metres between two points given in degrees ×
/// 10⁷ (haversine on a sphere of the Earth's mean radius; under 0.5 %
/// off at canvass distances).
pub fn distance_m(lat1_e7: i32, lon1_e7: i32, lat2_e7: i32, lon2_e7: i32) -> f64 {
    const R: f64 = 6_371_008.8;
    let rad = |e7: i32| (f64::from(e7) / 1e7).to_radians();
    let (p1, p2) = (rad(lat1_e7), rad(lat2_e7));
    let dp = p2 - p1;
    let dl = rad(lon2_e7) - rad(lon1_e7);
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, plate: &str) -> bool {
        PlatePattern::parse(p, false)
            .expect("pattern")
            .matches(plate)
    }

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(m("7ABC123", "7ABC123"));
        assert!(!m("7ABC123", "7ABC1234"));
        assert!(m("*4?21*", "7XY4A21"));
        assert!(m("*4?21*", "4Z21"));
        assert!(!m("*4?21*", "421"));
        assert!(m("7AB*", "7AB"));
        assert!(m("7a b-c*", "7ABC999"));
        assert!(m("??C123", "7AC123"));
        assert!(!m("??C123", "7C123"));
        assert!(m("*12*3*", "A1X2123"));
    }

    #[test]
    fn tolerance_confuses_only_the_listed_characters() {
        let p = PlatePattern::parse("8OS1", true).expect("pattern");
        assert!(p.matches("B051"));
        assert!(p.matches("8DSI"));
        assert!(!p.matches("80S7"), "1 and 7 are not a listed confusion");
        assert!(!PlatePattern::parse("8OS1", false)
            .expect("pattern")
            .matches("B051"));
        assert_eq!(p.exact(), None);
        assert_eq!(p.literal_prefix(), "8051");
        assert_eq!(fold_plate("6GQD"), "6600");
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert_eq!(
            PlatePattern::parse("*", false),
            Err(PatternError::TooFewLiterals)
        );
        assert_eq!(
            PlatePattern::parse("7%", false),
            Err(PatternError::BadChar('%'))
        );
        assert_eq!(
            PlatePattern::parse(&"A".repeat(25), false),
            Err(PatternError::TooLong)
        );
        let p = PlatePattern::parse("ab*12", false).expect("pattern");
        assert_eq!((p.as_str(), p.exact()), ("AB*12", None));
        assert_eq!(p.literal_prefix(), "AB");
        assert_eq!(p.length_bounds(), (4, None));
        assert_eq!(
            PlatePattern::parse("7abc123", false)
                .expect("pattern")
                .exact(),
            Some("7ABC123")
        );
    }

    #[test]
    fn distances_are_in_metres() {
        // One ten-thousandth of a degree of latitude is about 11.1 m.
        let d = distance_m(377_749_000, -1_224_194_000, 377_750_000, -1_224_194_000);
        assert!((d - 11.12).abs() < 0.05, "{d}");
        // San Francisco City Hall to Oakland City Hall: about 13.1 km.
        let d = distance_m(377_793_000, -1_224_193_000, 378_053_000, -1_222_722_000);
        assert!((d - 13_170.0).abs() < 200.0, "{d}");
    }

    /// The reference: regular-expression semantics of the same pattern.
    fn reference(toks: &[Tok], s: &[u8]) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Any, rest)) => (0..=s.len()).any(|k| reference(rest, &s[k..])),
            Some((Tok::One, rest)) => !s.is_empty() && reference(rest, &s[1..]),
            Some((Tok::Char(c), rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn the_glob_walk_agrees_with_the_reference(
            pattern in "[AB1*?]{0,8}",
            plate in "[AB1]{0,8}",
        ) {
            if let Ok(p) = PlatePattern::parse(&pattern, false) {
                prop_assert_eq!(p.matches(&plate), reference(&p.toks, plate.as_bytes()));
            }
        }
    }
}
