//! `POST /console/read`: one read in full — its photos, when and where it
//! was taken and how the node knew, and whether its signature verifies.
//!
//! The read is fetched by the API's own handler
//! ([`crate::api::search::view`]), which refuses without a purpose (and a
//! case where the policy asks for one) and records the view, with the
//! plate, before answering. The read's node and sequence number come in
//! the POST body of a search result's row, never in a URL.

use alpr_shared::log::AccessAction;
use alpr_shared::types::{Confidence, Location, TimeSource, CONFIDENCE_ONE};
use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use maud::{html, Markup};
use serde::Deserialize;

use super::map::{self, MapInput, Marker};
use super::{page, when, PageResult, Pages, Section, Session};
use crate::api::search::{Reason, ViewRequest};
use crate::api::ApiError;
use crate::search::{ReadDetail, SearchHit};

pub fn routes() -> Router<Pages> {
    Router::new().route("/console/read", post(show))
}

/// A search result's "Open" button.
#[derive(Debug, Deserialize)]
pub struct ReadForm {
    pub csrf: String,
    pub node: String,
    pub seq: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub case: String,
}

/// Where the capture time came from, as an auditor weighs it.
pub fn clock_text(source: TimeSource) -> &'static str {
    match source {
        TimeSource::Gps => "GPS time",
        TimeSource::Ntp => "system clock synchronised by NTP",
        TimeSource::LocalClock => "system clock, not known to be synchronised",
        TimeSource::Exif => "the photo's EXIF time (the camera's own clock)",
        TimeSource::FileTime => "the image file's modification time",
        TimeSource::CameraClock => "the camera's clock (its RTCP sender reports)",
    }
}

/// Where the read was, as coordinates or a site name.
pub fn place_text(location: &Location) -> String {
    match location {
        Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
            format!(
                "{:.6}, {:.6}",
                f64::from(*lat_e7) / 1e7,
                f64::from(*lon_e7) / 1e7
            )
        }
        Location::Site { site_id } => format!("site {site_id}"),
        Location::Unknown => "unknown".to_owned(),
    }
}

/// Where the position came from. A configured position is never called
/// measured.
pub fn place_source_text(location: &Location) -> String {
    let accuracy = |cm: u32| {
        if cm == alpr_shared::types::ACCURACY_UNKNOWN {
            "accuracy not given".to_owned()
        } else {
            format!("±{:.1} m", f64::from(cm) / 100.0)
        }
    };
    match location {
        Location::Gps { accuracy_cm, .. } => {
            format!("GPS fix, measured at the read ({})", accuracy(*accuracy_cm))
        }
        Location::Configured { accuracy_cm, .. } => format!(
            "the node's configured position, not measured ({} claimed)",
            accuracy(*accuracy_cm)
        ),
        Location::Site { .. } => "a surveyed site (no coordinates in the read)".to_owned(),
        Location::Unknown => "no position known (no GPS fix)".to_owned(),
    }
}

/// The coordinates of a read, in degrees, when it has any.
pub fn coordinates(location: &Location) -> Option<(f64, f64)> {
    match location {
        Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
            Some((f64::from(*lat_e7) / 1e7, f64::from(*lon_e7) / 1e7))
        }
        Location::Site { .. } | Location::Unknown => None,
    }
}

/// A confidence as a percentage.
pub fn percent(c: Confidence) -> String {
    format!("{:.1} %", f64::from(c) * 100.0 / f64::from(CONFIDENCE_ONE))
}

/// The signature verdict of a hit: `Valid…` (class `ok`) or why not
/// (class `bad`).
pub fn signature_verdict(hit: &SearchHit, id: Option<&str>) -> Markup {
    html! {
        @if hit.signature {
            span id=[id] class="ok" { "Valid: signed by the node, content matches its commitment" }
        } @else {
            span id=[id] class="bad" {
                "NOT valid: " (hit.signature_problem.as_deref().unwrap_or("the signature does not verify"))
            }
        }
    }
}

fn data_uri(jpeg: &[u8]) -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    )
}

async fn show(
    State(state): State<Pages>,
    session: Session,
    Form(form): Form<ReadForm>,
) -> PageResult {
    session.check(&form.csrf)?;
    // The role and the purpose are the API's to check and record.
    let Ok(seq) = form.seq.trim().parse::<u64>() else {
        let mut record = session.caller.record(
            AccessAction::View,
            format!("read={}#{}", form.node.trim(), form.seq.trim()),
        );
        record.purpose = Some(form.purpose.clone()).filter(|p| !p.trim().is_empty());
        record.case = Some(form.case.clone()).filter(|c| !c.trim().is_empty());
        let why = format!("{:?} is not a read's sequence number", form.seq);
        return Err(state.refuse(record, ApiError::BadRequest(why)).await.into());
    };
    let req = ViewRequest {
        node: form.node.trim().to_owned(),
        seq,
        reason: Reason {
            purpose: Some(form.purpose.clone()),
            case: Some(form.case.clone()),
        },
    };
    let Json(detail) =
        crate::api::search::view(State(state.api.clone()), session.caller.clone(), Json(req))
            .await?;
    let title = format!("Read {}#{}", detail.hit.node, detail.hit.seq);
    Ok(page(
        &session,
        Section::Search,
        "read",
        &title,
        body(&state, &form, &detail),
    ))
}

fn body(state: &Pages, form: &ReadForm, d: &ReadDetail) -> Markup {
    let h = &d.hit;
    let place = coordinates(&h.location).map(|(lat, lon)| MapInput {
        reads: vec![Marker {
            lat,
            lon,
            label: format!("{} at {}", h.plate, when(h.captured_at)),
        }],
        ..MapInput::default()
    });
    html! {
        p class="muted" {
            "Viewed for purpose " strong { (form.purpose) }
            @if !form.case.trim().is_empty() { ", case " strong { (form.case) } }
            ". This view is in the access log."
        }
        p { "Signature: " (signature_verdict(h, Some("signature"))) }
        div class="photos" {
            @if let Some(crop) = &d.crop_jpeg {
                figure {
                    img class="photo" src=(data_uri(crop)) alt={ "Plate crop of " (h.plate) };
                    figcaption { "Plate crop" }
                }
            }
            @if let Some(overview) = &d.overview_jpeg {
                figure {
                    img class="photo" src=(data_uri(overview)) alt="Overview photo of the vehicle";
                    figcaption { "Overview" }
                }
            }
            @if d.crop_jpeg.is_none() && d.overview_jpeg.is_none() {
                p class="warn" { "The hub does not hold this read's photos (not uploaded yet, or purged)." }
            }
        }
        dl class="facts" {
            dt { "Plate" } dd id="read-plate" class="plate" { (h.plate) }
            @if let Some(r) = &d.region { dt { "Region" } dd { (r) } }
            dt { "State" } dd id="read-state" { (state_text(d.state.as_ref())) }
            dt { "Time" } dd id="read-time" { (when(h.captured_at)) }
            dt { "Clock" } dd id="read-clock" { (clock_text(h.time_source)) }
            dt { "Location" } dd id="read-location" { (place_text(&h.location)) }
            dt { "Location source" } dd id="read-location-source" { (place_source_text(&h.location)) }
            dt { "Node" } dd id="read-node" { (h.node) "#" (h.seq) ", camera " (h.camera) }
            dt { "Confidence" } dd id="read-confidence" {
                (percent(h.confidence))
                @if !d.char_confidence.is_empty() {
                    span class="muted" {
                        " (characters: "
                        (d.char_confidence.iter().map(|c| percent(*c)).collect::<Vec<_>>().join(", "))
                        ")"
                    }
                }
            }
            dt { "Models" } dd { "detector " (d.detector_model) ", OCR " (d.ocr_model) }
        }
        @if let Some(input) = place {
            (map::render(&state.console.config, "read-map", &input, None))
        }
        p { a href=(Section::Search.path()) { "New search" } }
    }
}

/// The state as read, honestly: given with its confidence and what it was
/// read from, or not read (with the reader's best guesses, marked as such).
fn state_text(reading: Option<&alpr_shared::types::StateReading>) -> String {
    let Some(r) = reading else {
        return "not read (this edge read no state)".into();
    };
    let guesses = || {
        r.top
            .iter()
            .map(|(code, c)| format!("{code} {}", percent(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &r.state {
        Some(code) => {
            let from = r
                .evidence
                .as_deref()
                .map(|e| format!(", from {e}"))
                .unwrap_or_default();
            format!("{code} ({}{from}; {})", percent(r.confidence), r.model)
        }
        None if r.top.is_empty() => format!("not read ({} could not tell)", r.model),
        None => format!("not read (unsure: {}; {})", guesses(), r.model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_position_is_never_called_measured() {
        let configured = Location::Configured {
            lat_e7: 385_816_000,
            lon_e7: -1_214_944_000,
            accuracy_cm: 500,
        };
        let text = place_source_text(&configured);
        assert!(text.contains("not measured"), "{text}");
        assert!(!text.contains("GPS"), "{text}");
        assert_eq!(place_text(&configured), "38.581600, -121.494400");
        let gps = Location::Gps {
            lat_e7: 1,
            lon_e7: 2,
            accuracy_cm: alpr_shared::types::ACCURACY_UNKNOWN,
        };
        assert!(place_source_text(&gps).starts_with("GPS fix, measured"));
        assert!(place_source_text(&gps).contains("accuracy not given"));
        assert_eq!(percent(8750), "87.5 %");
    }
}
