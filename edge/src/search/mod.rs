//! `edge search`: an officer logged in on this node searches its stored
//! reads — plate exact, wildcard or OCR-tolerant, a time range, a radius
//! around a point — for a purpose from the policy's list (with a case
//! number where the policy asks for one). The access is sealed into the
//! node's own log, durably, before any result is returned; a refusal is
//! recorded too.

use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord, SignedEntry};
use alpr_shared::search::{distance_m, PlatePattern};
use alpr_shared::types::{Location, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::policy::{EdgeAccess, LOCAL_SOURCE};

/// Most results one search returns.
pub const MAX_RESULTS: usize = 1000;
/// Entries read from the store per page while scanning.
const PAGE: usize = 1024;

/// What `edge search` asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchRequest {
    pub token: String,
    pub pattern: String,
    #[serde(default)]
    pub tolerant: bool,
    #[serde(default)]
    pub from: Option<UnixMillis>,
    #[serde(default)]
    pub to: Option<UnixMillis>,
    /// Degrees (latitude, longitude) and a radius in metres.
    #[serde(default)]
    pub near: Option<(f64, f64)>,
    #[serde(default)]
    pub radius_m: Option<f64>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub case: Option<String>,
    /// Return each hit's crop image (the CLI writes them to files).
    #[serde(default)]
    pub with_crops: bool,
}

/// One read found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHit {
    pub seq: u64,
    pub plate: String,
    pub captured_at: String,
    /// Where the time came from (GPS, NTP, the local clock, …).
    pub time_source: String,
    pub location: String,
    /// Measured (GPS) or written in the configuration or a site.
    pub location_source: String,
    pub camera: String,
    /// Confidence in 1/10000.
    pub confidence: u16,
    /// This node's signature on the read verifies.
    pub signature_verified: bool,
    pub crop_sha256: String,
    /// Whether this node still holds the crop image.
    pub crop_held: bool,
    /// The crop JPEG (hex), when asked for and held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_jpeg_hex: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchAnswer {
    pub user: String,
    pub purpose: String,
    pub case: Option<String>,
    pub policy_version: u64,
    pub hits: Vec<SearchHit>,
    /// More reads matched than were returned.
    pub truncated: bool,
}

impl SearchRequest {
    /// The data elements queried, as the access record states them.
    fn query_text(&self) -> String {
        let mut q = format!("plate={}", self.pattern.trim());
        if self.tolerant {
            q.push_str(" mode=tolerant");
        }
        if let Some(f) = self.from {
            q.push_str(&format!(" from={f}"));
        }
        if let Some(t) = self.to {
            q.push_str(&format!(" to={t}"));
        }
        if let (Some((lat, lon)), Some(r)) = (self.near, self.radius_m) {
            q.push_str(&format!(" near={lat:.6},{lon:.6} radius={r:.0}m"));
        }
        if self.with_crops {
            q.push_str(" crops");
        }
        q.chars().filter(|c| !c.is_control()).take(1000).collect()
    }
}

/// Search, with every check of the law and the policy first; the access is
/// recorded (allowed or refused) before the answer.
pub async fn search(access: &EdgeAccess, req: SearchRequest) -> Result<SearchAnswer, String> {
    let now = UnixMillis::now();
    let query = req.query_text();
    let (user, agency, policy) = match access.session(&req.token, now) {
        Ok(s) => s,
        // No session: no user to record; nothing was touched.
        Err(e) => return Err(e),
    };
    let refuse = |reason: String| AccessRecord {
        user: user.clone(),
        agency: agency.clone(),
        action: AccessAction::Search,
        purpose: req.purpose.clone().map(|p| clip(&p)),
        case: req.case.clone().map(|c| clip(&c)),
        query: query.clone(),
        results: 0,
        outcome: AccessOutcome::Refused { reason },
        source: LOCAL_SOURCE.into(),
    };
    let checked = check(&req, &policy);
    let (purpose, pattern) = match checked {
        Ok(v) => v,
        Err(why) => {
            access.record(refuse(why.clone())).await?;
            return Err(why);
        }
    };
    let found = match scan(access, &req, &pattern) {
        Ok(f) => f,
        Err(why) => {
            access.record(refuse(why.clone())).await?;
            return Err(why);
        }
    };
    let (hits, truncated) = found;
    access
        .record(AccessRecord {
            user: user.clone(),
            agency,
            action: AccessAction::Search,
            purpose: Some(purpose.clone()),
            case: req.case.clone(),
            query,
            results: u32::try_from(hits.len()).unwrap_or(u32::MAX),
            outcome: AccessOutcome::Allowed,
            source: LOCAL_SOURCE.into(),
        })
        .await?;
    Ok(SearchAnswer {
        user,
        purpose,
        case: req.case,
        policy_version: policy.version(),
        hits,
        truncated,
    })
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The purpose and case rules of the policy, and the pattern.
fn check(
    req: &SearchRequest,
    policy: &alpr_shared::control::SignedPolicy,
) -> Result<(String, PlatePattern), String> {
    let codes = || {
        policy
            .policy()
            .purposes
            .iter()
            .map(|p| p.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(purpose) = req
        .purpose
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    else {
        return Err(format!(
            "no purpose given: every search needs one from the policy's list ({})",
            codes()
        ));
    };
    let Some(p) = policy.policy().purpose(purpose) else {
        return Err(format!(
            "{purpose:?} is not a purpose in policy v{} (one of: {})",
            policy.version(),
            codes()
        ));
    };
    let case = req.case.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if p.case_required && case.is_none() {
        return Err(format!(
            "a case number is required for the purpose {purpose:?} ({})",
            p.label
        ));
    }
    if let Some(c) = case {
        if c.len() > 100 || c.chars().any(char::is_control) {
            return Err("the case number is too long or has control characters".into());
        }
    }
    if req.near.is_some() != req.radius_m.is_some() {
        return Err("--near and --radius go together".into());
    }
    if let Some(r) = req.radius_m {
        if !(r.is_finite() && r > 0.0 && r <= 100_000.0) {
            return Err("the radius must be between 0 and 100 km".into());
        }
    }
    if let Some((lat, lon)) = req.near {
        if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
            return Err("--near is not a latitude,longitude in degrees".into());
        }
    }
    let pattern = PlatePattern::parse(&req.pattern, req.tolerant)
        .map_err(|e| format!("plate pattern {:?}: {e}", req.pattern))?;
    Ok((purpose.to_string(), pattern))
}

/// The stored reads that match.
fn scan(
    access: &EdgeAccess,
    req: &SearchRequest,
    pattern: &PlatePattern,
) -> Result<(Vec<SearchHit>, bool), String> {
    let store = access.store();
    let from = req.from.unwrap_or(UnixMillis(0));
    let to = req.to.unwrap_or(UnixMillis(u64::MAX));
    let near = req
        .near
        .zip(req.radius_m)
        .map(|((lat, lon), r)| ((lat * 1e7) as i32, (lon * 1e7) as i32, r));
    let mut hits = Vec::new();
    let mut truncated = false;
    let mut push = |e: &SignedEntry, hits: &mut Vec<SearchHit>| -> bool {
        if hits.len() >= MAX_RESULTS {
            truncated = true;
            return false;
        }
        if let Some(h) = hit(access, e, pattern, from, to, near, req.with_crops) {
            hits.push(h);
        }
        true
    };
    let err = |e: crate::store::StoreError| format!("cannot read this node's store: {e}");
    if let (Some(plate), false) = (pattern.exact(), pattern.is_tolerant()) {
        for seq in store.reads_of_plate(plate, from, to).map_err(err)? {
            if let Some(e) = store.entries_from(seq, 1).map_err(err)?.first() {
                if e.seq() == seq && !push(e, &mut hits) {
                    break;
                }
            }
        }
    } else {
        let len = store.status().len;
        let mut next = 0;
        'pages: while next < len {
            let page = store.entries_from(next, PAGE).map_err(err)?;
            let Some(last) = page.last() else { break };
            next = last.seq() + 1;
            for e in &page {
                if !push(e, &mut hits) {
                    break 'pages;
                }
            }
        }
    }
    Ok((hits, truncated))
}

fn hit(
    access: &EdgeAccess,
    e: &SignedEntry,
    pattern: &PlatePattern,
    from: UnixMillis,
    to: UnixMillis,
    near: Option<(i32, i32, f64)>,
    with_crop: bool,
) -> Option<SearchHit> {
    let r = e.read()?;
    let at = e.header.captured_at;
    if at < from || at > to || !pattern.matches(&r.plate) {
        return None;
    }
    if let Some((lat, lon, radius)) = near {
        let (Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. }) =
            &r.location
        else {
            return None;
        };
        if distance_m(lat, lon, *lat_e7, *lon_e7) > radius {
            return None;
        }
    }
    let crop = access.store().image_bytes(&r.crop_hash).ok().flatten();
    let location_source = match &r.location {
        Location::Gps { .. } => "gps (measured)",
        Location::Configured { .. } => "configured position",
        Location::Site { .. } => "surveyed site",
        Location::Unknown => "unknown",
    };
    Some(SearchHit {
        seq: e.seq(),
        plate: r.plate.clone(),
        captured_at: at.to_string(),
        time_source: format!("{:?}", e.header.time_source),
        location: r.location.to_string(),
        location_source: location_source.into(),
        camera: r.camera.clone(),
        confidence: r.confidence,
        signature_verified: e.signature_valid(&access.node_key),
        crop_sha256: r.crop_hash.to_string(),
        crop_held: crop.is_some(),
        crop_jpeg_hex: crop.filter(|_| with_crop).map(hex::encode),
    })
}
