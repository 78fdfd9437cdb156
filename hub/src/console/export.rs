//! `GET/POST /console/export`: a case's evidence bundle for a recipient
//! agency, downloaded from the browser (supervisors).
//!
//! The bundle is made by the API's own handler ([`crate::api::export::export`]):
//! the recipient rules (listed, in-state, public), the case's holds, the
//! access record made durable before the first byte, and the bundle that
//! `hub verify` checks offline are the API's. The console only names the
//! download (`CASE.alprbundle`) and shows a refusal above the form again.

use alpr_shared::control::AgencyKind;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_box, page, PageResult, Pages, Section, Session};
use crate::api::ApiState;
use crate::export::ExportRequest;
use crate::users::Permission;

/// The download's extension.
pub const EXTENSION: &str = "alprbundle";

pub fn routes() -> Router<Pages> {
    Router::new().route("/console/export", get(show).post(run))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExportForm {
    pub csrf: String,
    pub case: String,
    /// The recipient agency's ORI.
    pub to: String,
    pub purpose: String,
}

/// The download's file name: the case number with anything but letters,
/// digits, `-`, `_` and `.` made `_`, never hidden, never empty.
pub fn filename(case: &str) -> String {
    let mut stem: String = case
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem = stem.trim_start_matches('.').to_owned();
    if stem.is_empty() {
        stem = "case".into();
    }
    format!("{stem}.{EXTENSION}")
}

async fn show(State(state): State<ApiState>, session: Session) -> PageResult {
    Section::Export.require(&session)?;
    Ok(render(
        &state,
        &session,
        &ExportForm::default(),
        None,
        StatusCode::OK,
    ))
}

async fn run(
    State(state): State<ApiState>,
    session: Session,
    Form(form): Form<ExportForm>,
) -> PageResult {
    session.check(&form.csrf)?;
    // The role, the case and the recipient are the API's to check, and
    // every attempt its to record.
    let req = ExportRequest {
        case: form.case.trim().to_owned(),
        to: form.to.trim().to_owned(),
        purpose: Some(form.purpose.trim().to_owned()).filter(|p| !p.is_empty()),
    };
    match crate::api::export::export(State(state.clone()), session.caller.clone(), Json(req)).await
    {
        Ok(mut resp) => {
            let disposition = format!("attachment; filename=\"{}\"", filename(&form.case));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        Err(e) => Ok(render(
            &state,
            &session,
            &form,
            Some(&e.to_string()),
            e.status(),
        )),
    }
}

fn render(
    state: &ApiState,
    session: &Session,
    form: &ExportForm,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = html! {
        @if let Some(e) = error { (error_box(e)) }
        (form_markup(state, session, form))
    };
    let mut resp = page(session, Section::Export, "export", "Export evidence", body);
    *resp.status_mut() = status;
    resp.into_response()
}

fn form_markup(state: &ApiState, session: &Session, f: &ExportForm) -> Markup {
    let policy = state.hub.policy.current();
    let doc = policy.policy();
    let (allowed, refused): (Vec<_>, Vec<_>) = doc
        .agencies
        .iter()
        .partition(|a| a.kind == AgencyKind::InStatePublic);
    html! {
        p {
            "A case's reads are those its legal holds cover. The bundle carries each read with its photos and signature, "
            "the node certificates and checkpoints, the holds and this export's own access record; "
            "the recipient checks it offline with " code { "hub verify" } "."
        }
        @if session.may(Permission::ManageHolds) {
            p { a href=(Section::Holds.path()) { "Holds: place one for the case first" } }
        }
        form id="export-form" method="post" action="/console/export" {
            (session.csrf_field())
            div class="row" {
                div {
                    label for="export-case" { "Case number" }
                    input id="export-case" name="case" value=(f.case) autocomplete="off";
                }
                div {
                    label for="export-recipient" { "Recipient agency" }
                    select id="export-recipient" name="to" {
                        option value="" selected[f.to.is_empty()] { "— choose the agency —" }
                        @for a in &allowed {
                            option value=(a.ori) selected[f.to == a.ori] { (a.name) " (" (a.ori) ")" }
                        }
                        @if !refused.is_empty() {
                            optgroup label="May not receive ALPR data (Civil Code §1798.90.55)" {
                                @for a in &refused {
                                    option value=(a.ori) disabled { (a.name) " (" (a.ori) ", " (a.kind.as_str()) ")" }
                                }
                            }
                        }
                    }
                }
                div {
                    label for="export-purpose" { "Purpose" }
                    select id="export-purpose" name="purpose" {
                        option value="" selected[f.purpose.is_empty()] { "— none given —" }
                        @for p in &doc.purposes {
                            option value=(p.code) selected[f.purpose == p.code] { (p.label) }
                        }
                    }
                }
            }
            @if allowed.is_empty() {
                p class="warn" {
                    "The policy lists no in-state public agency: an administrator adds recipients with "
                    code { "hub policy set" } "."
                }
            }
            button type="submit" id="export" { "Export and download" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filename;

    #[test]
    fn the_download_is_named_after_the_case_and_nothing_else() {
        assert_eq!(filename("26-0100"), "26-0100.alprbundle");
        assert_eq!(filename(" 26/01 \"x\" "), "26_01__x_.alprbundle");
        assert_eq!(filename("../../etc"), "_.._etc.alprbundle");
        assert_eq!(filename("..."), "case.alprbundle");
        assert_eq!(filename("Fall 2026 №5"), "Fall_2026__5.alprbundle");
    }
}
