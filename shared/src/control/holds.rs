//! Legal holds (policy 426.4): what a hold names, and which reads it
//! covers. A hold keeps reads from retention's purge until that very hold
//! is explicitly released.
//!
//! These are the plain values. The replicated document that several
//! writers edit — the hub and edges, some offline — and that merges with
//! automerge lives beside them; whatever the merge, a hold appears in
//! [`Hold`] form and is active while `released` is `None`.

use serde::{Deserialize, Serialize};

use crate::search::distance_m;
use crate::types::{Location, ReadContent, UnixMillis};

/// A point and radius: reads within `radius_m` metres of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub lat_e7: i32,
    pub lon_e7: i32,
    pub radius_m: u32,
}

/// What a hold covers: a read is covered when it matches every part that
/// is given (an empty list or `None` does not restrict). A hold with no
/// part at all covers nothing: it is refused when placed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldScope {
    /// Normalised plates (A–Z, 0–9).
    #[serde(default)]
    pub plates: Vec<String>,
    /// Node names.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Captured at or after.
    #[serde(default)]
    pub from: Option<UnixMillis>,
    /// Captured at or before.
    #[serde(default)]
    pub to: Option<UnixMillis>,
    #[serde(default)]
    pub place: Option<Place>,
}

impl HoldScope {
    /// The plates as a hold keeps them: A–Z and 0–9 only, upper case;
    /// a plate left empty is dropped.
    pub fn normalise_plates(&mut self) {
        for p in &mut self.plates {
            *p = p
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_uppercase();
        }
        self.plates.retain(|p| !p.is_empty());
    }

    /// Whether the scope names anything at all.
    pub fn is_empty(&self) -> bool {
        self.plates.is_empty()
            && self.nodes.is_empty()
            && self.from.is_none()
            && self.to.is_none()
            && self.place.is_none()
    }

    /// Whether a read of `node`, captured at `at`, is covered. A read whose
    /// content is gone cannot be matched by plate or place; `content`
    /// `None` is covered only by a scope that names neither.
    pub fn covers(&self, node: &str, at: UnixMillis, content: Option<&ReadContent>) -> bool {
        if self.is_empty() {
            return false;
        }
        if !self.nodes.is_empty() && !self.nodes.iter().any(|n| n == node) {
            return false;
        }
        if self.from.is_some_and(|f| at < f) || self.to.is_some_and(|t| at > t) {
            return false;
        }
        if !self.plates.is_empty() && !content.is_some_and(|c| self.plates.contains(&c.plate)) {
            return false;
        }
        if let Some(place) = &self.place {
            let here = content.and_then(|c| match &c.location {
                Location::Gps { lat_e7, lon_e7, .. }
                | Location::Configured { lat_e7, lon_e7, .. } => Some((*lat_e7, *lon_e7)),
                Location::Site { .. } | Location::Unknown => None,
            });
            match here {
                Some((lat, lon)) => {
                    if distance_m(place.lat_e7, place.lon_e7, lat, lon) > f64::from(place.radius_m)
                    {
                        return false;
                    }
                }
                None => return false,
            }
        }
        true
    }
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub by: String,
    pub at: UnixMillis,
    pub reason: String,
}

/// One legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Unique: random, made where the hold was placed.
    pub id: String,
    pub case: String,
    pub reason: String,
    /// Username of who placed it, and their agency (ORI).
    pub placed_by: String,
    pub agency: String,
    pub placed_at: UnixMillis,
    /// Where it was placed: `hub` or a node's name.
    pub placed_on: String,
    pub scope: HoldScope,
    pub released: Option<Release>,
}

/// Longest case number and reason of a hold (bytes).
pub const MAX_HOLD_TEXT: usize = 200;
/// Longest name in a hold (who placed it, their agency, a node).
const MAX_HOLD_NAME: usize = 128;

impl Hold {
    pub fn active(&self) -> bool {
        self.released.is_none()
    }

    /// What is wrong with a hold as a node placed it, if anything: the
    /// rules `hub hold add` and `edge hold add` apply (a scope that names
    /// something, plates normalised, a case and a reason within bounds).
    pub fn problem(&self) -> Option<String> {
        let text = |what: &str, s: &str, max: usize| {
            (s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control)).then(|| {
                format!("the {what} is empty, over {max} bytes or has a control character")
            })
        };
        if self.scope.is_empty() {
            return Some("its scope names nothing".into());
        }
        if let Some(p) = self.scope.plates.iter().find(|p| {
            p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }) {
            return Some(format!("plate {p:?} is not normalised (A-Z, 0-9)"));
        }
        text("case", &self.case, MAX_HOLD_TEXT)
            .or_else(|| text("reason", &self.reason, MAX_HOLD_TEXT))
            .or_else(|| text("placer", &self.placed_by, MAX_HOLD_NAME))
            .or_else(|| text("agency", &self.agency, MAX_HOLD_NAME))
            .or_else(|| text("node", &self.placed_on, MAX_HOLD_NAME))
            .or_else(|| {
                self.scope
                    .nodes
                    .iter()
                    .find_map(|n| text("scope's node", n, MAX_HOLD_NAME))
            })
    }
}

/// A hold as people place it on a command line (`hub hold add`,
/// `edge hold add`).
#[derive(Debug, Clone, clap::Args)]
pub struct HoldArgs {
    /// Case number.
    #[arg(long)]
    pub case: String,
    /// Why the reads are held.
    #[arg(long)]
    pub reason: String,
    /// A plate to hold (repeatable).
    #[arg(long = "plate")]
    pub plates: Vec<String>,
    /// A node whose reads to hold (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Captured at or after (RFC 3339 UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Captured at or before (RFC 3339 UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Reads around a point: LAT,LON in degrees (with --radius).
    #[arg(long, value_name = "LAT,LON", requires = "radius")]
    pub near: Option<String>,
    /// Radius in metres.
    #[arg(long, value_name = "M", requires = "near")]
    pub radius: Option<u32>,
}

/// Why the arguments of a hold do not make one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldArgsError {
    #[error("--from/--to: {0}")]
    Time(crate::cli::ArgError),
    #[error("--near: {0}")]
    Place(crate::cli::ArgError),
    #[error("--near and --radius go together")]
    HalfPlace,
    #[error("a hold must name at least one --plate, --node, --from/--to or --near/--radius")]
    Empty,
}

impl HoldArgs {
    /// The scope asked for; an error says what is wrong before anything
    /// is sent.
    pub fn scope(&self) -> Result<HoldScope, HoldArgsError> {
        let time = |s: &Option<String>| {
            s.as_deref()
                .map(crate::cli::parse_time)
                .transpose()
                .map_err(HoldArgsError::Time)
        };
        let place = match (&self.near, self.radius) {
            (Some(p), Some(radius_m)) => {
                let (lat, lon) = crate::cli::parse_point(p).map_err(HoldArgsError::Place)?;
                Some(Place {
                    lat_e7: (lat * 1e7).round() as i32,
                    lon_e7: (lon * 1e7).round() as i32,
                    radius_m,
                })
            }
            (None, None) => None,
            _ => return Err(HoldArgsError::HalfPlace),
        };
        let scope = HoldScope {
            plates: self.plates.clone(),
            nodes: self.nodes.clone(),
            from: time(&self.from)?,
            to: time(&self.to)?,
            place,
        };
        if scope.is_empty() {
            return Err(HoldArgsError::Empty);
        }
        Ok(scope)
    }
}

/// Whether any active hold in `holds` covers the read.
pub fn held(holds: &[Hold], node: &str, at: UnixMillis, content: Option<&ReadContent>) -> bool {
    holds
        .iter()
        .any(|h| h.active() && h.scope.covers(node, at, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    fn read(plate: &str, location: Location) -> ReadContent {
        ReadContent {
            location,
            camera: "cam0".into(),
            plate: plate.into(),
            confidence: 9000,
            char_confidence: vec![9000; plate.len()],
            issuer: Default::default(),
            detector_model: "d".into(),
            ocr_model: "o".into(),
            crop_hash: Hash32::ZERO,
            overview_hash: Hash32::ZERO,
        }
    }

    #[test]
    fn a_scope_covers_what_matches_every_part_it_names() {
        let at = UnixMillis(1_000);
        let here = Location::Gps {
            lat_e7: 385_816_000,
            lon_e7: -1_214_944_000,
            accuracy_cm: 400,
        };
        let r = read("7ABC123", here.clone());
        let plate = HoldScope {
            plates: vec!["7ABC123".into()],
            ..HoldScope::default()
        };
        assert!(plate.covers("car-7", at, Some(&r)));
        assert!(!plate.covers("car-7", at, Some(&read("7ABC124", here.clone()))));
        assert!(
            !plate.covers("car-7", at, None),
            "a purged read has no plate"
        );
        let window = HoldScope {
            nodes: vec!["car-7".into()],
            from: Some(UnixMillis(500)),
            to: Some(UnixMillis(1_500)),
            ..HoldScope::default()
        };
        assert!(window.covers("car-7", at, Some(&r)));
        assert!(!window.covers("pole-1", at, Some(&r)));
        assert!(!window.covers("car-7", UnixMillis(2_000), Some(&r)));
        let near = HoldScope {
            place: Some(Place {
                lat_e7: 385_817_000,
                lon_e7: -1_214_944_000,
                radius_m: 50,
            }),
            ..HoldScope::default()
        };
        assert!(near.covers("car-7", at, Some(&r)), "11 m away");
        let site = read(
            "7ABC123",
            Location::Site {
                site_id: "s".into(),
            },
        );
        assert!(
            !near.covers("pole-1", at, Some(&site)),
            "a site has no coordinates"
        );
        assert!(!HoldScope::default().covers("car-7", at, Some(&r)));
    }

    #[test]
    fn hold_arguments_make_a_scope_or_say_what_is_missing() {
        let args = |plates: &[&str], near: Option<&str>, radius: Option<u32>| HoldArgs {
            case: "26-1".into(),
            reason: "robbery".into(),
            plates: plates.iter().map(|p| (*p).to_owned()).collect(),
            nodes: Vec::new(),
            from: Some("2026-11-28T00:00:00Z".into()),
            to: None,
            near: near.map(str::to_owned),
            radius,
        };
        let s = args(&["7ABC123"], Some("38.5,-121.5"), Some(200))
            .scope()
            .expect("scope");
        assert_eq!(s.plates, ["7ABC123"]);
        assert_eq!(
            s.place,
            Some(Place {
                lat_e7: 385_000_000,
                lon_e7: -1_215_000_000,
                radius_m: 200
            })
        );
        assert!(s.from.is_some());
        assert_eq!(
            args(&[], Some("38.5,-121.5"), None).scope(),
            Err(HoldArgsError::HalfPlace)
        );
        assert!(matches!(
            args(&[], Some("north"), Some(5)).scope(),
            Err(HoldArgsError::Place(_))
        ));
        let mut empty = args(&[], None, None);
        empty.from = None;
        assert_eq!(empty.scope(), Err(HoldArgsError::Empty));
    }

    #[test]
    fn only_active_holds_hold() {
        let mut h = Hold {
            id: "h1".into(),
            case: "26-1".into(),
            reason: "homicide".into(),
            placed_by: "sgt".into(),
            agency: "CA0000001".into(),
            placed_at: UnixMillis(0),
            placed_on: "hub".into(),
            scope: HoldScope {
                nodes: vec!["car-7".into()],
                ..HoldScope::default()
            },
            released: None,
        };
        assert!(held(std::slice::from_ref(&h), "car-7", UnixMillis(5), None));
        h.released = Some(Release {
            by: "sgt".into(),
            at: UnixMillis(9),
            reason: "case closed".into(),
        });
        assert!(!held(&[h], "car-7", UnixMillis(5), None));
    }
}
