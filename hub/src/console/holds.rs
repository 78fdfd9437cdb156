//! The holds page (`/console/holds`, operators and supervisors): the
//! legal holds in force and those released, placing one (a case, a
//! reason, and what it covers: plates, nodes, a time range, a place) and
//! releasing one with the reason. It calls the API's own handlers
//! ([`crate::api::holds`]), so the checks and the access record are the
//! API's.

use alpr_shared::control::holds::{Hold, HoldScope, Place};
use alpr_shared::types::UnixMillis;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_box, notice_box, page, when, PageResult, Pages, Section, Session};
use crate::api::holds::{PlaceHold, ReleaseHold};
use crate::api::ApiState;
use crate::api::ListQuery;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/holds", get(show).post(place))
        .route("/console/holds/{id}/release", post(release))
}

/// The form of a new hold (kept when it is refused).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HoldForm {
    pub csrf: String,
    pub case: String,
    pub reason: String,
    /// Plates, separated by commas or spaces.
    pub plates: String,
    /// Node names, separated by commas or spaces.
    pub nodes: String,
    /// `datetime-local` values, read as UTC.
    pub from: String,
    pub to: String,
    /// A place: latitude and longitude in degrees and a radius in metres.
    pub lat: String,
    pub lon: String,
    pub radius_m: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseForm {
    pub csrf: String,
    pub reason: String,
}

async fn show(State(state): State<ApiState>, session: Session) -> PageResult {
    Section::Holds.require(&session)?;
    render(&state, &session, None, None, &HoldForm::default()).await
}

async fn render(
    state: &ApiState,
    session: &Session,
    error: Option<&str>,
    notice: Option<&str>,
    form: &HoldForm,
) -> PageResult {
    let holds = crate::api::holds::list(
        State(state.clone()),
        session.caller.clone(),
        Query(ListQuery { all: true }),
    )
    .await?
    .0;
    let (active, released): (Vec<&Hold>, Vec<&Hold>) = holds.iter().partition(|h| h.active());
    let body = html! {
        @if let Some(e) = error { (error_box(e)) }
        @if let Some(n) = notice { (notice_box(n)) }
        p class="muted" {
            "A hold keeps the reads it covers from being purged, on the hub and on every node, "
            "until that very hold is released."
        }
        h2 { "Holds in force" }
        table id="holds" {
            thead { tr {
                th scope="col" { "Case" } th scope="col" { "Reason" } th scope="col" { "Covers" }
                th scope="col" { "Placed" } th scope="col" { "Release" }
            } }
            tbody {
                @for h in &active {
                    tr class="hold" data-id=(h.id) {
                        td class="hold-case" { (h.case) }
                        td { (h.reason) }
                        td class="hold-scope" { (scope_text(&h.scope)) }
                        td { (placed(h)) }
                        td {
                            form class="release-form" method="post" action={ "/console/holds/" (h.id) "/release" } {
                                (session.csrf_field())
                                label for={ "release-reason-" (h.id) } { "Why release it" }
                                input id={ "release-reason-" (h.id) } class="release-reason" name="reason" required
                                    placeholder="case closed";
                                button type="submit" class="release-hold danger" { "Release" }
                            }
                        }
                    }
                }
            }
        }
        @if active.is_empty() { p class="muted" { "No hold is in force." } }
        (hold_form(session, form))
        @if !released.is_empty() {
            h2 { "Released holds" }
            table id="released-holds" {
                thead { tr {
                    th scope="col" { "Case" } th scope="col" { "Reason" } th scope="col" { "Covered" }
                    th scope="col" { "Placed" } th scope="col" { "Released" }
                } }
                tbody {
                    @for h in &released {
                        tr class="released-hold" data-id=(h.id) {
                            td { (h.case) }
                            td { (h.reason) }
                            td { (scope_text(&h.scope)) }
                            td { (placed(h)) }
                            td {
                                @if let Some(r) = &h.released {
                                    (r.by) " at " (when(r.at)) ": " (r.reason)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(session, Section::Holds, "holds", "Legal holds", body))
}

fn placed(h: &Hold) -> String {
    format!(
        "{} ({}) at {}, on {}",
        h.placed_by,
        h.agency,
        when(h.placed_at),
        h.placed_on
    )
}

/// What a scope covers, in words.
fn scope_text(s: &HoldScope) -> String {
    let mut parts = Vec::new();
    if !s.plates.is_empty() {
        parts.push(format!("plates {}", s.plates.join(", ")));
    }
    if !s.nodes.is_empty() {
        parts.push(format!("nodes {}", s.nodes.join(", ")));
    }
    match (s.from, s.to) {
        (Some(f), Some(t)) => parts.push(format!("from {} to {}", when(f), when(t))),
        (Some(f), None) => parts.push(format!("from {}", when(f))),
        (None, Some(t)) => parts.push(format!("until {}", when(t))),
        (None, None) => {}
    }
    if let Some(p) = s.place {
        parts.push(format!(
            "within {} m of {:.5}, {:.5}",
            p.radius_m,
            f64::from(p.lat_e7) / 1e7,
            f64::from(p.lon_e7) / 1e7
        ));
    }
    parts.join("; ")
}

fn hold_form(session: &Session, f: &HoldForm) -> Markup {
    html! {
        form id="hold-form" method="post" action="/console/holds" {
            (session.csrf_field())
            fieldset {
                legend { "Place a hold" }
                div class="row" {
                    div {
                        label for="hold-case" { "Case number" }
                        input id="hold-case" name="case" value=(f.case) required;
                    }
                    div {
                        label for="hold-reason" { "Reason" }
                        input id="hold-reason" name="reason" value=(f.reason) required;
                    }
                }
                p class="muted" { "What it covers: a read is held when it matches every part given (at least one)." }
                div class="row" {
                    div {
                        label for="hold-plates" { "Plates (comma-separated)" }
                        input id="hold-plates" name="plates" value=(f.plates) autocomplete="off";
                    }
                    div {
                        label for="hold-nodes" { "Nodes (comma-separated)" }
                        input id="hold-nodes" name="nodes" value=(f.nodes) autocomplete="off";
                    }
                    div {
                        label for="hold-from" { "Captured from (UTC)" }
                        input id="hold-from" name="from" type="datetime-local" step="1" value=(f.from);
                    }
                    div {
                        label for="hold-to" { "Captured until (UTC)" }
                        input id="hold-to" name="to" type="datetime-local" step="1" value=(f.to);
                    }
                }
                div class="row" {
                    div {
                        label for="hold-lat" { "Latitude (degrees)" }
                        input id="hold-lat" name="lat" value=(f.lat) inputmode="decimal";
                    }
                    div {
                        label for="hold-lon" { "Longitude (degrees)" }
                        input id="hold-lon" name="lon" value=(f.lon) inputmode="decimal";
                    }
                    div {
                        label for="hold-radius" { "Radius (m)" }
                        input id="hold-radius" name="radius_m" value=(f.radius_m) inputmode="numeric";
                    }
                }
                button type="submit" id="place-hold" { "Place hold" }
            }
        }
    }
}

/// A `datetime-local` value (`2026-11-28T16:00` or with seconds), as UTC.
fn utc_time(what: &str, s: &str) -> Result<Option<UnixMillis>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let full = if s.len() == 16 {
        format!("{s}:00Z")
    } else {
        format!("{}Z", s.trim_end_matches('Z'))
    };
    alpr_shared::cli::parse_time(&full)
        .map(Some)
        .map_err(|_| format!("{what} {s:?} is not a date and time (YYYY-MM-DDTHH:MM)"))
}

fn list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\t', '\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The scope of the form; an empty one is left for the API to refuse.
fn scope_of(f: &HoldForm) -> Result<HoldScope, String> {
    let place = match (f.lat.trim(), f.lon.trim(), f.radius_m.trim()) {
        ("", "", "") => None,
        (lat, lon, r) if !lat.is_empty() && !lon.is_empty() && !r.is_empty() => {
            let (lat, lon) = alpr_shared::cli::parse_point(&format!("{lat},{lon}"))
                .map_err(|e| e.to_string())?;
            let radius_m: u32 = r
                .parse()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| format!("the radius {r:?} is not a whole number of metres"))?;
            Some(Place {
                lat_e7: (lat * 1e7).round() as i32,
                lon_e7: (lon * 1e7).round() as i32,
                radius_m,
            })
        }
        _ => return Err("a place needs a latitude, a longitude and a radius".into()),
    };
    let scope = HoldScope {
        plates: list(&f.plates),
        nodes: list(&f.nodes),
        from: utc_time("from", &f.from)?,
        to: utc_time("until", &f.to)?,
        place,
    };
    if let (Some(a), Some(b)) = (scope.from, scope.to) {
        if a > b {
            return Err("the time range ends before it starts".into());
        }
    }
    Ok(scope)
}

async fn place(
    State(state): State<ApiState>,
    session: Session,
    Form(form): Form<HoldForm>,
) -> PageResult {
    Section::Holds.require(&session)?;
    session.check(&form.csrf)?;
    let scope = match scope_of(&form) {
        Ok(s) => s,
        Err(e) => return render(&state, &session, Some(&e), None, &form).await,
    };
    let result = crate::api::holds::place(
        State(state.clone()),
        session.caller.clone(),
        Json(PlaceHold {
            case: form.case.trim().to_owned(),
            reason: form.reason.trim().to_owned(),
            scope,
        }),
    )
    .await;
    match result {
        Ok(Json(h)) => {
            let notice = format!("Hold placed for case {}: {}.", h.case, scope_text(&h.scope));
            render(&state, &session, None, Some(&notice), &HoldForm::default()).await
        }
        Err(e) => render(&state, &session, Some(&e.to_string()), None, &form).await,
    }
}

async fn release(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ReleaseForm>,
) -> PageResult {
    Section::Holds.require(&session)?;
    session.check(&form.csrf)?;
    let result = crate::api::holds::release(
        State(state.clone()),
        session.caller.clone(),
        Path(id),
        Json(ReleaseHold {
            reason: form.reason.trim().to_owned(),
        }),
    )
    .await;
    let (error, notice) = match result {
        Ok(Json(h)) => (None, Some(format!("Hold for case {} released.", h.case))),
        Err(e) => (Some(e.to_string()), None),
    };
    render(
        &state,
        &session,
        error.as_deref(),
        notice.as_deref(),
        &HoldForm::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_form_makes_its_scope_or_says_what_is_wrong() {
        let f = HoldForm {
            plates: "7ABC123, 8XYZ999".into(),
            from: "2026-11-28T16:00".into(),
            to: "2026-11-28T18:30:15".into(),
            lat: "38.58".into(),
            lon: "-121.49".into(),
            radius_m: "500".into(),
            ..HoldForm::default()
        };
        let s = scope_of(&f).expect("a scope");
        assert_eq!(s.plates, ["7ABC123", "8XYZ999"]);
        assert_eq!(
            s.from.map(|t| t.to_string()).as_deref(),
            Some("2026-11-28T16:00:00.000Z")
        );
        assert_eq!(
            s.to.map(|t| t.to_string()).as_deref(),
            Some("2026-11-28T18:30:15.000Z")
        );
        assert_eq!(s.place.map(|p| p.lat_e7), Some(385_800_000));
        let half = HoldForm {
            lat: "38.58".into(),
            ..HoldForm::default()
        };
        assert!(scope_of(&half).is_err_and(|e| e.contains("radius")));
        let backwards = HoldForm {
            from: "2026-11-28T18:00".into(),
            to: "2026-11-28T16:00".into(),
            ..HoldForm::default()
        };
        assert!(scope_of(&backwards).is_err_and(|e| e.contains("ends before")));
        let garbled = HoldForm {
            from: "tomorrow".into(),
            ..HoldForm::default()
        };
        assert!(scope_of(&garbled).is_err_and(|e| e.contains("tomorrow")));
    }
}
