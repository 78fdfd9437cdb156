//! `GET/POST /console/search`: the search form and its results.
//!
//! The form is turned into a [`SearchQuery`] and run by the API's own
//! handler ([`crate::api::search::search`]): the purpose and case rules,
//! the refusal record and the access record before the answer are the
//! API's. A refusal shows the form again with the reason. The plate and
//! every other term only travel in the POST body.
//!
//! At most [`ROWS`] hits are asked for and shown, newest first, with the
//! number that matched: a search matching a million reads renders as fast
//! as one matching a hundred, and the access record counts what was shown.

use std::collections::BTreeMap;

use alpr_shared::log::AccessAction;
use alpr_shared::types::UnixMillis;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::map::{self, Circle, MapInput, Marker};
use super::reads::{
    clock_text, coordinates, percent, place_source_text, place_text, signature_verdict,
};
use super::{error_box, page, when, PageResult, Pages, Section, Session};
use crate::api::search::{Reason, SearchRequest};
use crate::api::ApiError;
use crate::search::{Near, PlaceSource, SearchQuery, SearchResults, MAX_RADIUS_M};

/// Most hits one search page asks for and shows.
pub const ROWS: usize = 500;
/// The radius the form offers before anyone changes it, in metres.
const DEFAULT_RADIUS_M: &str = "500";

pub fn routes() -> Router<Pages> {
    Router::new().route("/console/search", get(show).post(run))
}

/// The search form, as typed (kept to show it again).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchForm {
    pub csrf: String,
    pub purpose: String,
    pub case: String,
    pub plate: String,
    /// `exact`, `wildcard` or `tolerant`.
    pub mode: String,
    /// `datetime-local` values, read as UTC.
    pub from: String,
    pub to: String,
    pub lat: String,
    pub lon: String,
    pub radius_m: String,
    pub node: String,
}

/// Why a form could not become a query (shown above the form).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormError(String);

/// A time from a `datetime-local` input (`2026-11-28T16:00`), or typed in
/// RFC 3339; UTC either way. `end`: a time without seconds means the end
/// of that minute.
fn parse_time(field: &str, s: &str, end: bool) -> Result<Option<UnixMillis>, FormError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let has_zone = s.ends_with(['Z', 'z']) || s.get(19..).is_some_and(|t| t.contains(['+', '-']));
    let minute_only = s.len() == 16;
    let full = match (minute_only, has_zone) {
        (true, _) => format!("{s}:00Z"),
        (false, true) => s.to_owned(),
        (false, false) => format!("{s}Z"),
    };
    let t = alpr_shared::cli::parse_time(&full).map_err(|e| FormError(format!("{field}: {e}")))?;
    Ok(Some(if end && minute_only {
        UnixMillis(t.0 + 59_999)
    } else {
        t
    }))
}

fn parse_number(field: &str, s: &str) -> Result<f64, FormError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| FormError(format!("{field}: {s:?} is not a number")))
}

impl SearchForm {
    /// The query the form asks for (the API checks the rest).
    pub fn query(&self) -> Result<SearchQuery, FormError> {
        let plate = self.plate.trim();
        let tolerant = match self.mode.as_str() {
            "" | "exact" => {
                if plate.contains(['*', '?']) {
                    return Err(FormError(
                        "the plate has * or ?: choose the mode \"wildcard\" to use them".into(),
                    ));
                }
                false
            }
            "wildcard" => false,
            "tolerant" => true,
            other => {
                return Err(FormError(format!(
                    "{other:?} is not a mode: exact, wildcard or tolerant"
                )))
            }
        };
        let near = match (self.lat.trim(), self.lon.trim()) {
            ("", "") => None,
            (lat, lon) if lat.is_empty() || lon.is_empty() => {
                return Err(FormError(format!(
                    "a place needs both a latitude and a longitude (got {lat:?} and {lon:?})"
                )))
            }
            (lat, lon) => {
                if self.radius_m.trim().is_empty() {
                    return Err(FormError(format!(
                        "a place needs a radius in metres (at most {MAX_RADIUS_M})"
                    )));
                }
                Some(Near {
                    lat: parse_number("latitude", lat)?,
                    lon: parse_number("longitude", lon)?,
                    radius_m: parse_number("radius", &self.radius_m)?,
                })
            }
        };
        Ok(SearchQuery {
            plate: Some(plate.to_uppercase()).filter(|p| !p.is_empty()),
            tolerant,
            from: parse_time("from", &self.from, false)?,
            to: parse_time("to", &self.to, true)?,
            near,
            node: Some(self.node.trim().to_owned()).filter(|n| !n.is_empty()),
            limit: Some(ROWS),
        })
    }

    /// The form's terms as typed, for the record of a form that makes no
    /// query.
    fn as_typed(&self) -> String {
        format!(
            "plate={} mode={} from={} to={} near={},{} r={} node={}",
            self.plate.trim(),
            self.mode,
            self.from,
            self.to,
            self.lat.trim(),
            self.lon.trim(),
            self.radius_m.trim(),
            self.node.trim()
        )
    }

    fn reason(&self) -> Reason {
        Reason {
            purpose: Some(self.purpose.clone()),
            case: Some(self.case.clone()),
        }
    }
}

async fn show(State(state): State<Pages>, session: Session) -> PageResult {
    Section::Search.require(&session)?;
    let form = SearchForm {
        mode: "exact".into(),
        radius_m: DEFAULT_RADIUS_M.into(),
        ..SearchForm::default()
    };
    let nodes = node_names(&state).await;
    Ok(render(
        &state,
        &session,
        &form,
        &nodes,
        None,
        None,
        StatusCode::OK,
    ))
}

/// The nodes the hub knows (suggestions for the node field; no read data).
async fn node_names(state: &Pages) -> Vec<String> {
    let storage = state.hub.storage.clone();
    tokio::task::spawn_blocking(move || storage.nodes())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|n| n.into_iter().map(|(d, _)| d.to_string()).collect())
        .unwrap_or_default()
}

async fn run(
    State(state): State<Pages>,
    session: Session,
    Form(form): Form<SearchForm>,
) -> PageResult {
    session.check(&form.csrf)?;
    // The role and the purpose are the API's to check and record.
    let nodes = node_names(&state).await;
    let query = match form.query() {
        Ok(q) => q,
        Err(e) => {
            // A form that makes no query is an attempt too.
            let mut record = session.caller.record(AccessAction::Search, form.as_typed());
            record.purpose = form.reason().purpose.filter(|p| !p.trim().is_empty());
            record.case = form.reason().case.filter(|c| !c.trim().is_empty());
            let err = state
                .refuse(record, ApiError::BadRequest(e.to_string()))
                .await;
            return Ok(render(
                &state,
                &session,
                &form,
                &nodes,
                Some(&err.to_string()),
                None,
                err.status(),
            ));
        }
    };
    let req = SearchRequest {
        query,
        reason: form.reason(),
    };
    match crate::api::search::search(State(state.api.clone()), session.caller.clone(), Json(req))
        .await
    {
        Ok(Json(results)) => Ok(render(
            &state,
            &session,
            &form,
            &nodes,
            None,
            Some(&results),
            StatusCode::OK,
        )),
        Err(e) => Ok(render(
            &state,
            &session,
            &form,
            &nodes,
            Some(&e.to_string()),
            None,
            e.status(),
        )),
    }
}

fn render(
    state: &Pages,
    session: &Session,
    form: &SearchForm,
    nodes: &[String],
    error: Option<&str>,
    results: Option<&SearchResults>,
    status: StatusCode,
) -> Response {
    let body = html! {
        @if let Some(e) = error { (error_box(e)) }
        (form_markup(state, session, form, nodes, results))
        @if let Some(r) = results { (results_markup(state, session, form, r)) }
    };
    let mut resp = page(session, Section::Search, "search", "Search reads", body);
    *resp.status_mut() = status;
    resp.into_response()
}

fn form_markup(
    state: &Pages,
    session: &Session,
    f: &SearchForm,
    nodes: &[String],
    results: Option<&SearchResults>,
) -> Markup {
    let policy = state.hub.policy.current();
    let doc = policy.policy();
    let pick_area = pick_area(f, results);
    let modes = [
        ("exact", "Exact plate"),
        ("wildcard", "Wildcard (* any run, ? one character)"),
        (
            "tolerant",
            "OCR-tolerant (0/O/D/Q, 1/I, 2/Z, 5/S, 8/B, 6/G match)",
        ),
    ];
    html! {
        form id="search-form" method="post" action="/console/search" {
            (session.csrf_field())
            fieldset {
                legend { "Why (recorded in the access log)" }
                div class="row" {
                    div {
                        label for="purpose" { "Purpose" }
                        // Not `required`: the hub refuses a search without
                        // a purpose itself, says why, and logs the refusal.
                        select id="purpose" name="purpose" {
                            option value="" selected[f.purpose.is_empty()] { "— choose a purpose —" }
                            @for p in &doc.purposes {
                                option value=(p.code) selected[f.purpose == p.code] {
                                    (p.label)
                                    @if p.case_required { " (case number required)" }
                                }
                            }
                        }
                    }
                    div {
                        label for="case" { "Case number" }
                        input id="case" name="case" value=(f.case) autocomplete="off";
                    }
                }
            }
            fieldset {
                legend { "Vehicle" }
                div class="row" {
                    div {
                        label for="plate" { "Plate" }
                        input id="plate" name="plate" value=(f.plate) autocomplete="off"
                            spellcheck="false" class="plate";
                    }
                    div {
                        label for="mode" { "Match" }
                        select id="mode" name="mode" {
                            @for (value, label) in modes {
                                option value=(value) selected[f.mode == value] { (label) }
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { "When (UTC)" }
                div class="row" {
                    div {
                        label for="from" { "From" }
                        input id="from" name="from" type="datetime-local" value=(f.from);
                    }
                    div {
                        label for="to" { "To" }
                        input id="to" name="to" type="datetime-local" value=(f.to);
                    }
                }
            }
            fieldset {
                legend { "Where" }
                div class="row" {
                    div {
                        label for="lat" { "Latitude" }
                        input id="lat" name="lat" inputmode="decimal" value=(f.lat) placeholder="38.58160";
                    }
                    div {
                        label for="lon" { "Longitude" }
                        input id="lon" name="lon" inputmode="decimal" value=(f.lon) placeholder="-121.49440";
                    }
                    div {
                        label for="radius_m" { "Radius (m, at most " (MAX_RADIUS_M) ")" }
                        input id="radius_m" name="radius_m" inputmode="decimal" value=(f.radius_m);
                    }
                    div {
                        label for="node" { "Node" }
                        input id="node" name="node" value=(f.node) autocomplete="off"
                            placeholder="any" list="node-names";
                        datalist id="node-names" {
                            @for n in nodes { option value=(n) {} }
                        }
                    }
                }
                p class="muted" { "Type the place, or click the map to set the latitude and longitude." }
                (map::render(&state.console.config, "pick-map", &pick_area, Some(("lat", "lon"))))
            }
            button type="submit" id="search" { "Search" }
        }
    }
}

/// The picker map's area: the place typed, with its radius, and what the
/// last search placed (to canvass around it).
fn pick_area(f: &SearchForm, results: Option<&SearchResults>) -> MapInput {
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let circle = match (num(&f.lat), num(&f.lon)) {
        (Some(lat), Some(lon))
            if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
        {
            Some(Circle {
                lat,
                lon,
                radius_m: num(&f.radius_m)
                    .filter(|r| *r > 0.0 && *r <= MAX_RADIUS_M)
                    .unwrap_or(500.0),
            })
        }
        _ => None,
    };
    let placed = results.map(|r| results_map(r, None)).unwrap_or_default();
    MapInput { circle, ..placed }
}

/// The results' map: the hits with coordinates, the nodes at their
/// configured positions (as their reads carry them), the canvass circle.
fn results_map(r: &SearchResults, near: Option<Near>) -> MapInput {
    let mut nodes: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut reads = Vec::new();
    for h in &r.hits {
        let Some((lat, lon)) = coordinates(&h.location) else {
            continue;
        };
        if h.place_source == PlaceSource::Configured {
            nodes.entry(h.node.as_str()).or_insert((lat, lon));
        }
        reads.push(Marker {
            lat,
            lon,
            label: format!(
                "{} · {} · {}#{}",
                h.plate,
                when(h.captured_at),
                h.node,
                h.seq
            ),
        });
    }
    MapInput {
        nodes: nodes
            .into_iter()
            .map(|(name, (lat, lon))| Marker {
                lat,
                lon,
                label: name.to_owned(),
            })
            .collect(),
        reads,
        circle: near.map(|n| Circle {
            lat: n.lat,
            lon: n.lon,
            radius_m: n.radius_m,
        }),
    }
}

fn results_markup(
    state: &Pages,
    session: &Session,
    form: &SearchForm,
    r: &SearchResults,
) -> Markup {
    let near = form.query().ok().and_then(|q| q.near);
    let placed = results_map(r, near);
    html! {
        h2 { "Results" }
        p id="result-count" {
            strong { (r.matched) } " read(s) matched"
            @if r.matched_capped { " (at least: the search stopped at its scan limit)" }
            @if r.truncated {
                "; the newest " (r.hits.len()) " are shown — narrow the search to see the others"
            }
            "."
        }
        @if let Some(p) = r.plates_matched { p { (p) " distinct plate(s) matched the pattern." } }
        @if let Some(u) = r.unplaced.filter(|u| *u > 0) {
            p class="warn" {
                (u) " read(s) of the time window carry no coordinates (a surveyed site or no GPS fix) and could not be placed in the canvass."
            }
        }
        p class="muted" { "Recorded in the access log as: " code { (r.query) } }
        (map::render(&state.console.config, "results-map", &placed, None))
        table id="results" {
            thead {
                tr {
                    th scope="col" { "Plate" }
                    th scope="col" { "Time (UTC) and clock" }
                    th scope="col" { "Place and its source" }
                    th scope="col" { "Node#seq" }
                    th scope="col" class="num" { "Confidence" }
                    th scope="col" { "Crop" }
                    th scope="col" { "Signature" }
                    th scope="col" { span class="muted" { "Open" } }
                }
            }
            tbody {
                @for h in &r.hits {
                    tr class="hit" {
                        td class="plate" { (h.plate) }
                        td { (when(h.captured_at)) br; span class="muted" { (clock_text(h.time_source)) } }
                        td {
                            (place_text(&h.location))
                            @if let Some(d) = h.distance_m { " (" (format!("{d:.0}")) " m from the point)" }
                            br; span class="muted" { (place_source_text(&h.location)) }
                        }
                        td { (h.node) "#" (h.seq) }
                        td class="num" { (percent(h.confidence)) }
                        td { @if h.crop_held { "held" } @else { span class="muted" { "not at the hub" } } }
                        td { (signature_verdict(h, None)) }
                        td {
                            form method="post" action="/console/read" {
                                (session.csrf_field())
                                input type="hidden" name="node" value=(h.node);
                                input type="hidden" name="seq" value=(h.seq);
                                input type="hidden" name="purpose" value=(form.purpose);
                                input type="hidden" name="case" value=(form.case);
                                button type="submit" class="open-read secondary"
                                    aria-label={ "Open read " (h.node) "#" (h.seq) } { "Open" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alpr_shared::types::{Location, TimeSource};

    use super::*;
    use crate::search::SearchHit;

    fn form() -> SearchForm {
        SearchForm {
            plate: "7abc123".into(),
            mode: "exact".into(),
            ..SearchForm::default()
        }
    }

    #[test]
    fn a_form_becomes_the_query_it_says() {
        let q = SearchForm {
            from: "2026-11-28T16:00".into(),
            to: "2026-11-28T17:30".into(),
            lat: " 38.5816".into(),
            lon: "-121.4944".into(),
            radius_m: "250".into(),
            node: "pole-7".into(),
            ..form()
        }
        .query()
        .expect("a query");
        assert_eq!(q.plate.as_deref(), Some("7ABC123"));
        assert!(!q.tolerant);
        assert_eq!(
            q.from.map(|t| t.to_string()).as_deref(),
            Some("2026-11-28T16:00:00.000Z")
        );
        // "To 17:30" takes in the whole minute.
        assert_eq!(
            q.to.map(|t| t.to_string()).as_deref(),
            Some("2026-11-28T17:30:59.999Z")
        );
        assert_eq!(
            q.near,
            Some(Near {
                lat: 38.5816,
                lon: -121.4944,
                radius_m: 250.0
            })
        );
        assert_eq!(q.node.as_deref(), Some("pole-7"));
        assert_eq!(q.limit, Some(ROWS));
        let tolerant = SearchForm {
            mode: "tolerant".into(),
            ..form()
        };
        assert!(tolerant.query().expect("tolerant").tolerant);
    }

    fn hit(node: &str, seq: u64, location: Location) -> SearchHit {
        SearchHit {
            node: node.into(),
            seq,
            plate: format!("PLATE{seq}"),
            captured_at: UnixMillis(1_764_000_000_000 + seq),
            time_source: TimeSource::Ntp,
            place_source: match location {
                Location::Gps { .. } => PlaceSource::Gps,
                Location::Configured { .. } => PlaceSource::Configured,
                Location::Site { .. } => PlaceSource::Site,
                Location::Unknown => PlaceSource::Unknown,
            },
            location,
            distance_m: None,
            camera: "cam0".into(),
            confidence: 9000,
            crop_held: true,
            signature: true,
            signature_problem: None,
        }
    }

    #[test]
    fn the_results_map_marks_poles_at_their_configured_place_and_every_placed_read() {
        let pole = Location::Configured {
            lat_e7: 385_816_000,
            lon_e7: -1_214_944_000,
            accuracy_cm: 300,
        };
        let car = |lat_e7| Location::Gps {
            lat_e7,
            lon_e7: -1_214_800_000,
            accuracy_cm: 500,
        };
        let results = SearchResults {
            query: "plate=PLATE* mode=wildcard".into(),
            matched: 5,
            matched_capped: false,
            truncated: false,
            unplaced: None,
            plates_matched: Some(5),
            hits: vec![
                hit("pole-7", 1, pole.clone()),
                hit("pole-7", 2, pole),
                hit("car-3", 3, car(385_700_000)),
                hit("car-3", 4, car(385_710_000)),
                hit(
                    "pole-9",
                    5,
                    Location::Site {
                        site_id: "s9".into(),
                    },
                ),
            ],
        };
        let map = results_map(&results, None);
        // One marker per pole with a configured position; a moving car's
        // GPS fixes are reads, not a node's place; a site has no coordinates.
        assert_eq!(map.nodes.len(), 1);
        assert_eq!(map.nodes[0].label, "pole-7");
        assert!((map.nodes[0].lat - 38.5816).abs() < 1e-9);
        assert_eq!(map.reads.len(), 4);
        assert!(map.reads[2].label.starts_with("PLATE3 · "));
        assert!(map.circle.is_none());
    }

    #[test]
    fn a_wrong_form_says_what_to_change() {
        let wild = SearchForm {
            plate: "7AB*".into(),
            ..form()
        };
        assert!(wild.query().expect_err("* in exact").0.contains("wildcard"));
        let half = SearchForm {
            lat: "38.5".into(),
            ..form()
        };
        assert!(half.query().expect_err("no lon").0.contains("longitude"));
        let time = SearchForm {
            from: "yesterday".into(),
            ..form()
        };
        assert!(time.query().expect_err("bad time").0.starts_with("from:"));
        let mode = SearchForm {
            mode: "fuzzy".into(),
            ..form()
        };
        assert!(mode.query().expect_err("bad mode").0.contains("not a mode"));
    }
}
