//! A query checked and planned: which index answers it first, and the
//! bounds it keeps to.

use super::*;

/// A query checked and normalised.
pub(super) struct Plan {
    pub(super) pattern: Option<PlatePattern>,
    pub(super) from: UnixMillis,
    pub(super) to: UnixMillis,
    pub(super) near: Option<Near>,
    pub(super) node: Option<DeviceId>,
    pub(super) limit: usize,
}

impl SearchQuery {
    pub(super) fn plan(&self) -> Result<Plan, SearchError> {
        let pattern = self
            .plate
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(|p| PlatePattern::parse(p, self.tolerant))
            .transpose()?;
        let from = self.from.unwrap_or(UnixMillis(0));
        let to = self.to.unwrap_or(UnixMillis(u64::MAX));
        if from > to {
            return Err(SearchError::BadQuery(format!(
                "`from` ({from}) is after `to` ({to})"
            )));
        }
        if let Some(n) = &self.near {
            if !(-90.0..=90.0).contains(&n.lat) || !(-180.0..=180.0).contains(&n.lon) {
                return Err(SearchError::BadQuery(format!(
                    "{},{} is not a latitude,longitude in degrees",
                    n.lat, n.lon
                )));
            }
            if !(n.radius_m > 0.0 && n.radius_m <= MAX_RADIUS_M) {
                return Err(SearchError::BadQuery(format!(
                    "a canvass radius is more than 0 and at most {MAX_RADIUS_M} m (got {})",
                    n.radius_m
                )));
            }
        }
        if pattern.is_none() && self.near.is_none() {
            return Err(SearchError::BadQuery(
                "give a plate pattern or a place (near a point within a radius): \
                 a node or a time range alone is not a search for a vehicle"
                    .into(),
            ));
        }
        let node = self
            .node
            .as_deref()
            .map(|n| {
                DeviceId::new(n).map_err(|e| SearchError::BadQuery(format!("node {n:?}: {e}")))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(SearchError::BadQuery(format!(
                "a limit is 1 to {MAX_LIMIT} (got {limit})"
            )));
        }
        Ok(Plan {
            pattern,
            from,
            to,
            near: self.near,
            node,
            limit,
        })
    }

    /// The query in one line, as the access log records it. Fails as
    /// [`Searcher::search`] would on a bad query.
    pub fn describe(&self) -> Result<String, SearchError> {
        let plan = self.plan()?;
        let mut parts = Vec::new();
        if let Some(p) = &plan.pattern {
            let mode = if p.is_tolerant() {
                "tolerant"
            } else if p.has_wildcards() {
                "wildcard"
            } else {
                "exact"
            };
            parts.push(format!("plate={} mode={mode}", p.as_str()));
        }
        if let Some(f) = self.from {
            parts.push(format!("from={f}"));
        }
        if let Some(t) = self.to {
            parts.push(format!("to={t}"));
        }
        if let Some(n) = &plan.near {
            parts.push(format!("near={:.6},{:.6} r={}m", n.lat, n.lon, n.radius_m));
        }
        if let Some(n) = &plan.node {
            parts.push(format!("node={n}"));
        }
        parts.push(format!("limit={}", plan.limit));
        Ok(parts.join(" "))
    }
}

/// A hit whose signature is to be checked: node, entry, distance, key.
pub(super) type Checking<'a> = (
    &'a DeviceId,
    SignedEntry,
    Option<f64>,
    Result<PublicKey, String>,
);

/// Keys that verify a node's entries: (first seq, key) of each certificate
/// that took effect, in order.
pub(super) type KeyRanges = Vec<(u64, Option<PublicKey>)>;
