//! Who issued a plate, as read: the region (country) the OCR model
//! estimated and, for US plates, the state the state reader gave, with its
//! confidence, its top three and what on the plate it read it from.
//!
//! Encoding: [`Issuer`] takes the place of the `Option<String>` region that
//! reads carried before states were read, and encodes its first two
//! variants exactly as that did (postcard: `None` and `Unknown` are tag 0,
//! `Some(r)` and `Region(r)` tag 1 then the string), so every read signed
//! before keeps its bytes and its content hash, and still verifies. A read
//! with a state reading is tag 2. (A decoder older than this refuses tag 2
//! as malformed: upgrade hubs before edges.)

use serde::{Deserialize, Serialize};

use super::{check_text, Confidence, InvalidValue, CONFIDENCE_ONE, MAX_TEXT_LEN};

/// The US states and DC, by postal code: what a state reading may give.
pub const US_STATES: [&str; 51] = [
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN",
    "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ",
    "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA",
    "WI", "WV", "WY",
];

/// Most candidates a state reading keeps.
pub const MAX_STATE_CANDIDATES: usize = 3;

/// Whether `code` is a US state's (or DC's) postal code, upper case.
pub fn is_us_state(code: &str) -> bool {
    US_STATES.contains(&code)
}

/// Who issued the plate, as far as it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Issuer {
    /// Nothing read about the issuer.
    #[default]
    Unknown,
    /// The OCR model's region estimate only (e.g. "United States").
    Region(String),
    /// The state reader looked at the plate: its reading (which may be
    /// "could not tell"), and the region estimate if any.
    Read {
        region: Option<String>,
        state: StateReading,
    },
}

impl Issuer {
    /// From the OCR model's region estimate alone.
    pub fn from_region(region: Option<String>) -> Self {
        match region {
            Some(r) => Issuer::Region(r),
            None => Issuer::Unknown,
        }
    }

    /// The region estimate (a country), if any.
    pub fn region(&self) -> Option<&str> {
        match self {
            Issuer::Unknown => None,
            Issuer::Region(r) => Some(r),
            Issuer::Read { region, .. } => region.as_deref(),
        }
    }

    /// The state reading, when the state reader looked.
    pub fn state_reading(&self) -> Option<&StateReading> {
        match self {
            Issuer::Read { state, .. } => Some(state),
            _ => None,
        }
    }

    /// The state given (only when the reader was sure), upper case.
    pub fn state(&self) -> Option<&str> {
        self.state_reading().and_then(|s| s.state.as_deref())
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(r) = self.region() {
            check_text("region", r, MAX_TEXT_LEN)?;
        }
        if let Some(s) = self.state_reading() {
            s.validate()?;
        }
        Ok(())
    }
}

/// What the state reader made of a plate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReading {
    /// The state given, upper case: only when the reader was sure (above
    /// its threshold). `None`: "state not read", an honest answer.
    pub state: Option<String>,
    /// The reader's confidence in its top candidate (also when it did not
    /// give it).
    pub confidence: Confidence,
    /// Up to three candidates, most confident first.
    pub top: Vec<(String, Confidence)>,
    /// What on the plate the top candidate was read from, e.g.
    /// `printed "CALIFORNIA"`.
    pub evidence: Option<String>,
    /// The state reader and its models, e.g. `ppocr-v4@971d7d5f`.
    pub model: String,
}

impl StateReading {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let refuse = |field| Err(InvalidValue::OutOfRange { field });
        if self.top.len() > MAX_STATE_CANDIDATES {
            return refuse("state candidates");
        }
        if self.confidence > CONFIDENCE_ONE || self.top.iter().any(|(_, c)| *c > CONFIDENCE_ONE) {
            return refuse("state confidence");
        }
        if self.top.iter().any(|(code, _)| !is_us_state(code)) {
            return refuse("state candidate");
        }
        if let Some(s) = &self.state {
            // The state given is the reader's top candidate.
            if self.top.first().map(|(c, _)| c.as_str()) != Some(s.as_str()) {
                return refuse("state");
            }
        }
        if let Some(e) = &self.evidence {
            check_text("state evidence", e, MAX_TEXT_LEN)?;
        }
        check_text("state model", &self.model, MAX_TEXT_LEN)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(state: Option<&str>) -> StateReading {
        StateReading {
            state: state.map(str::to_owned),
            confidence: 9_100,
            top: vec![("CA".into(), 9_100), ("AZ".into(), 400)],
            evidence: Some("printed \"California\"".into()),
            model: "ppocr-v4@971d7d5f".into(),
        }
    }

    #[test]
    fn a_region_alone_encodes_as_the_old_optional_region_did() {
        // Reads signed before states were read keep their bytes.
        for old in [None, Some("United States".to_owned())] {
            let new = Issuer::from_region(old.clone());
            assert_eq!(
                postcard::to_allocvec(&new).expect("encodes"),
                postcard::to_allocvec(&old).expect("encodes"),
            );
            let back: Issuer = postcard::from_bytes(&postcard::to_allocvec(&old).expect("encodes"))
                .expect("decodes");
            assert_eq!(back, new);
        }
    }

    #[test]
    fn a_state_reading_round_trips_and_is_bounded() {
        let read = Issuer::Read {
            region: Some("United States".into()),
            state: reading(Some("CA")),
        };
        read.validate().expect("valid");
        let back: Issuer =
            postcard::from_bytes(&postcard::to_allocvec(&read).expect("encodes")).expect("decodes");
        assert_eq!(back, read);
        assert_eq!(back.state(), Some("CA"));
        assert_eq!(back.region(), Some("United States"));

        let abstained = Issuer::Read {
            region: None,
            state: reading(None),
        };
        abstained.validate().expect("not sure is valid");
        assert_eq!(abstained.state(), None);

        let not_top = StateReading {
            state: Some("AZ".into()),
            ..reading(None)
        };
        assert!(
            not_top.validate().is_err(),
            "the state given is the top one"
        );
        let unknown = StateReading {
            top: vec![("ZZ".into(), 9_000)],
            ..reading(None)
        };
        assert!(unknown.validate().is_err(), "not a state");
        let many = StateReading {
            top: vec![
                ("CA".into(), 10),
                ("AZ".into(), 9),
                ("NV".into(), 8),
                ("OR".into(), 7),
            ],
            ..reading(None)
        };
        assert!(many.validate().is_err(), "three candidates at most");
        assert_eq!(US_STATES.len(), 51);
        assert!(is_us_state("DC") && !is_us_state("ca"));
    }
}
