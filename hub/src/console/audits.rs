//! `GET /console/audits` — the audits, for auditors and supervisors
//! ([`Permission::ReadAudits`]; a supervisor sees their own agency's rows
//! only, as the API decides):
//!
//! - **Access audit**: who accessed what, when and why, filtered by user,
//!   plate, purpose, case and time. The filters go in a POST body (a
//!   plate never in a URL); the table and its CSV come from the same API
//!   handler ([`crate::api::audit::access`]), which records the audit
//!   query before it answers.
//! - **Training lapses** ([`crate::api::audit::training`]), **retention
//!   runs** ([`crate::api::retention::audit`]), **holds**
//!   ([`crate::api::holds::audit`]) and **exports** (the access entries
//!   whose action is `export`), each shown on request and downloadable
//!   as CSV; each request is the API's, recorded by it.
//!
//! [`Permission::ReadAudits`]: crate::users::Permission::ReadAudits

use alpr_shared::control::holds::Hold;
use alpr_shared::log::AccessAction;
use alpr_shared::types::UnixMillis;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::{csv, error_box, page, when, ConsoleError, PageResult, Pages, Section, Session};
use crate::api::audit::{AccessAudit, AccessQuery, AccessRow, TrainingAudit, TrainingQuery};
use crate::api::retention::RetentionAudit;
use crate::api::{ApiError, ApiState};

/// Most access rows shown on the page; the CSV has them all.
pub const SHOWN_ROWS: usize = 1000;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/audits", get(show).post(access))
        .route("/console/audits/access.csv", post(access_csv))
        // `training`, `retention`, `holds`, `exports`; `NAME.csv` for the file.
        .route("/console/audits/{report}", post(report))
}

/// The access audit's filters, as the form sends them (empty: any).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccessForm {
    pub csrf: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub plate: String,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub case: String,
    /// `datetime-local`, taken as UTC.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

/// The form of a section without filters.
#[derive(Debug, Deserialize)]
pub struct PlainForm {
    pub csrf: String,
}

/// A `datetime-local` value (UTC) or a date; empty is none.
pub fn parse_time(field: &str, s: &str) -> Result<Option<UnixMillis>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let full = match s.len() {
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => s.to_owned(),
    };
    crate::users::parse_date(&full)
        .map(Some)
        .map_err(|_| format!("{field}: {s:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"))
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl AccessForm {
    fn query(&self) -> Result<AccessQuery, String> {
        Ok(AccessQuery {
            from: parse_time("From", &self.from)?,
            to: parse_time("To", &self.to)?,
            user: some(&self.user),
            plate: some(&self.plate),
            purpose: some(&self.purpose),
            case: some(&self.case),
        })
    }
}

/// What the page shows besides the forms.
#[derive(Default)]
struct Shown {
    error: Option<String>,
    access: Option<AccessAudit>,
    training: Option<TrainingAudit>,
    retention: Option<RetentionAudit>,
    holds: Option<Vec<Hold>>,
    exports: Option<Vec<AccessRow>>,
}

async fn show(State(state): State<ApiState>, session: Session) -> PageResult {
    Section::Audits.require(&session)?;
    Ok(render(
        &state,
        &session,
        &AccessForm::default(),
        Shown::default(),
    ))
}

async fn run_access(
    state: &ApiState,
    session: &Session,
    q: AccessQuery,
) -> Result<AccessAudit, crate::api::ApiError> {
    let Json(a) =
        crate::api::audit::access(State(state.clone()), session.caller.clone(), Query(q)).await?;
    Ok(a)
}

async fn access(
    State(state): State<ApiState>,
    session: Session,
    Form(f): Form<AccessForm>,
) -> PageResult {
    access_audit(&state, &session, &f, false).await
}

/// The access audit of form `f`: on the page, or (`as_csv`) as a file; a
/// form that does not parse is shown again with its error.
async fn access_audit(
    state: &ApiState,
    session: &Session,
    f: &AccessForm,
    as_csv: bool,
) -> PageResult {
    session.check(&f.csrf)?;
    Section::Audits.require(session)?;
    let q = match f.query() {
        Ok(q) => q,
        Err(e) => {
            let shown = Shown {
                error: Some(e),
                ..Shown::default()
            };
            return Ok(render(state, session, f, shown));
        }
    };
    let a = run_access(state, session, q).await?;
    if as_csv {
        let rows: Vec<Vec<String>> = a.rows.iter().map(access_cells).collect();
        return Ok(csv(&stamp("access-audit"), &ACCESS_HEADER, &rows));
    }
    let shown = Shown {
        access: Some(a),
        ..Shown::default()
    };
    Ok(render(state, session, f, shown))
}

const ACCESS_HEADER: [&str; 12] = [
    "time", "node", "seq", "user", "agency", "action", "purpose", "case", "query", "results",
    "outcome", "source",
];

fn access_cells(r: &AccessRow) -> Vec<String> {
    vec![
        r.time.to_string(),
        r.node.clone(),
        r.seq.to_string(),
        r.user.clone(),
        r.agency.clone(),
        r.action.clone(),
        r.purpose.clone().unwrap_or_default(),
        r.case.clone().unwrap_or_default(),
        r.query.clone(),
        r.results.to_string(),
        r.outcome.clone(),
        r.source.clone(),
    ]
}

fn stamp(name: &str) -> String {
    format!("{name}-{}.csv", crate::users::date(UnixMillis::now()))
}

async fn access_csv(
    State(state): State<ApiState>,
    session: Session,
    Form(f): Form<AccessForm>,
) -> PageResult {
    access_audit(&state, &session, &f, true).await
}

/// The audits shown on request, besides the access audit.
#[derive(Debug, Clone, Copy)]
enum Report {
    Training,
    Retention,
    Holds,
    Exports,
}

/// What a report's API handler answered.
enum Fetched {
    Training(TrainingAudit),
    Retention(RetentionAudit),
    Holds(Vec<Hold>),
    Exports(Vec<AccessRow>),
}

impl Report {
    fn parse(name: &str) -> Option<Report> {
        Some(match name {
            "training" => Report::Training,
            "retention" => Report::Retention,
            "holds" => Report::Holds,
            "exports" => Report::Exports,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Report::Training => "training",
            Report::Retention => "retention",
            Report::Holds => "holds",
            Report::Exports => "exports",
        }
    }

    /// The report through its API handler (which records the audit).
    async fn fetch(self, state: &ApiState, session: &Session) -> Result<Fetched, ApiError> {
        let (s, caller) = (State(state.clone()), session.caller.clone());
        Ok(match self {
            Report::Training => {
                let Json(t) =
                    crate::api::audit::training(s, caller, Query(TrainingQuery::default())).await?;
                Fetched::Training(t)
            }
            Report::Retention => {
                let Json(r) = crate::api::retention::audit(s, caller).await?;
                Fetched::Retention(r)
            }
            Report::Holds => {
                let Json(h) = crate::api::holds::audit(s, caller).await?;
                Fetched::Holds(h)
            }
            Report::Exports => {
                let a = run_access(state, session, AccessQuery::default()).await?;
                Fetched::Exports(
                    a.rows
                        .into_iter()
                        .filter(|r| r.action == AccessAction::Export.as_str())
                        .collect(),
                )
            }
        })
    }
}

impl Fetched {
    /// The page's part.
    fn shown(self) -> Shown {
        let mut shown = Shown::default();
        match self {
            Fetched::Training(t) => shown.training = Some(t),
            Fetched::Retention(r) => shown.retention = Some(r),
            Fetched::Holds(h) => shown.holds = Some(h),
            Fetched::Exports(e) => shown.exports = Some(e),
        }
        shown
    }

    /// The CSV's header and rows.
    fn table(&self) -> (&'static [&'static str], Vec<Vec<String>>) {
        match self {
            Fetched::Training(t) => (
                &[
                    "user",
                    "agency",
                    "role",
                    "training_expires",
                    "lapsed_now",
                    "accesses_before_lapse",
                    "accesses_after_lapse",
                ],
                t.users
                    .iter()
                    .map(|u| {
                        vec![
                            u.username.clone(),
                            u.agency.clone(),
                            u.role.to_string(),
                            u.training_expires.clone(),
                            if u.lapsed_now { "yes" } else { "no" }.to_owned(),
                            u.before.len().to_string(),
                            u.after_lapse.len().to_string(),
                        ]
                    })
                    .collect(),
            ),
            Fetched::Retention(r) => (
                &["record", "time", "node", "ranges", "reads", "reason"],
                r.purges
                    .iter()
                    .map(|p| {
                        vec![
                            p.record.to_string(),
                            p.at.to_string(),
                            p.node.clone(),
                            ranges(&p.ranges),
                            p.reads.to_string(),
                            p.reason.clone(),
                        ]
                    })
                    .collect(),
            ),
            Fetched::Holds(h) => (
                &[
                    "id",
                    "case",
                    "reason",
                    "placed_by",
                    "agency",
                    "placed_at",
                    "placed_on",
                    "scope",
                    "released_by",
                    "released_at",
                    "release_reason",
                ],
                h.iter().map(hold_cells).collect(),
            ),
            Fetched::Exports(e) => (&ACCESS_HEADER, e.iter().map(access_cells).collect()),
        }
    }
}

/// `POST /console/audits/{report}`: the report on the page;
/// `…/{report}.csv`: the same rows as a file.
async fn report(
    State(state): State<ApiState>,
    session: Session,
    Path(name): Path<String>,
    Form(f): Form<PlainForm>,
) -> PageResult {
    session.check(&f.csrf)?;
    Section::Audits.require(&session)?;
    let (base, as_csv) = match name.strip_suffix(".csv") {
        Some(base) => (base, true),
        None => (name.as_str(), false),
    };
    let report = Report::parse(base).ok_or_else(|| {
        ConsoleError::new(StatusCode::NOT_FOUND, format!("no audit named {base:?}"))
    })?;
    let fetched = report.fetch(&state, &session).await?;
    if as_csv {
        let (header, rows) = fetched.table();
        Ok(csv(
            &stamp(&format!("{}-audit", report.name())),
            header,
            &rows,
        ))
    } else {
        Ok(render(
            &state,
            &session,
            &AccessForm::default(),
            fetched.shown(),
        ))
    }
}

fn ranges(r: &[alpr_shared::log::SeqRange]) -> String {
    r.iter()
        .map(|r| format!("{}-{}", r.first, r.last))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A hold's scope in words.
fn scope(h: &Hold) -> String {
    let s = &h.scope;
    let mut parts = Vec::new();
    if !s.plates.is_empty() {
        parts.push(format!("plates {}", s.plates.join(", ")));
    }
    if !s.nodes.is_empty() {
        parts.push(format!("nodes {}", s.nodes.join(", ")));
    }
    if let Some(f) = s.from {
        parts.push(format!("from {}", when(f)));
    }
    if let Some(t) = s.to {
        parts.push(format!("to {}", when(t)));
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

fn hold_cells(h: &Hold) -> Vec<String> {
    let r = h.released.as_ref();
    vec![
        h.id.clone(),
        h.case.clone(),
        h.reason.clone(),
        h.placed_by.clone(),
        h.agency.clone(),
        h.placed_at.to_string(),
        h.placed_on.clone(),
        scope(h),
        r.map(|r| r.by.clone()).unwrap_or_default(),
        r.map(|r| r.at.to_string()).unwrap_or_default(),
        r.map(|r| r.reason.clone()).unwrap_or_default(),
    ]
}

fn access_table(id: &str, row_class: &str, rows: &[AccessRow]) -> Markup {
    html! {
        table id=(id) {
            thead {
                tr {
                    th { "Time" } th { "User" } th { "Agency" } th { "Action" } th { "Purpose" } th { "Case" }
                    th { "What" } th class="num" { "Results" } th { "Outcome" } th { "From" } th { "Logged by" }
                }
            }
            tbody {
                @for r in rows.iter().take(SHOWN_ROWS) {
                    tr class=(row_class) {
                        td { (when(r.time)) }
                        td { (r.user) }
                        td { (r.agency) }
                        td { (r.action) }
                        td { (r.purpose.as_deref().unwrap_or("—")) }
                        td { (r.case.as_deref().unwrap_or("—")) }
                        td { (r.query) }
                        td class="num" { (r.results) }
                        td {
                            @if r.outcome == "allowed" { (r.outcome) } @else { span class="bad" { (r.outcome) } }
                        }
                        td { (r.source) }
                        td { (r.node) "#" (r.seq) }
                    }
                }
            }
        }
        @if rows.len() > SHOWN_ROWS {
            p class="warn" { "Showing the first " (SHOWN_ROWS) " of " (rows.len()) " rows: download the CSV for all of them." }
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A section's buttons: show it here, or download it as CSV.
fn section_form(name: &str, session: &Session) -> Markup {
    html! {
        form method="post" action={ "/console/audits/" (name) } {
            (session.csrf_field())
            button type="submit" id={ (name) "-show" } { "Show" }
            " "
            button type="submit" class="secondary" id={ (name) "-csv" }
                formaction={ "/console/audits/" (name) ".csv" } { "Download CSV" }
        }
    }
}

fn render(state: &ApiState, session: &Session, f: &AccessForm, shown: Shown) -> Response {
    let policy = state.hub.policy.current();
    let purposes = &policy.policy().purposes;
    let body = html! {
        @if let Some(e) = &shown.error { (error_box(e)) }
        section id="access-audit" {
            h2 { "Who accessed what" }
            form id="access-form" method="post" action="/console/audits" {
                (session.csrf_field())
                div class="row" {
                    div { label for="access-user" { "User" } input id="access-user" name="user" value=(f.user); }
                    div { label for="access-plate" { "Plate" } input id="access-plate" name="plate" value=(f.plate) autocomplete="off"; }
                    div {
                        label for="access-purpose" { "Purpose" }
                        select id="access-purpose" name="purpose" {
                            option value="" { "any" }
                            @for p in purposes {
                                option value=(p.code) selected[p.code == f.purpose] { (p.label) }
                            }
                        }
                    }
                    div { label for="access-case" { "Case" } input id="access-case" name="case" value=(f.case); }
                    div { label for="access-from" { "From (UTC)" } input id="access-from" name="from" type="datetime-local" value=(f.from); }
                    div { label for="access-to" { "To (UTC)" } input id="access-to" name="to" type="datetime-local" value=(f.to); }
                }
                button type="submit" id="access-filter" { "Show accesses" }
                " "
                button type="submit" class="secondary" id="access-csv" formaction="/console/audits/access.csv" { "Download CSV" }
            }
            @if let Some(a) = &shown.access {
                p id="access-summary" {
                    (plural(a.rows.len(), "access", "accesses")) " from " (when(a.from)) " to " (when(a.to)) "."
                    @if a.truncated { " " span class="warn" { "More matched than one audit answers: narrow the window." } }
                }
                (access_table("access", "access", &a.rows))
                @if !a.searches_without_case.is_empty() {
                    h3 { "Searches that named no case number" }
                    (access_table("searches-without-case", "access-without-case", &a.searches_without_case))
                }
            }
        }
        section id="training" {
            h2 { "Training lapses" }
            p class="muted" { "Users whose training has lapsed, and any access allowed after it lapsed (a violation)." }
            (section_form("training", session))
            @if let Some(t) = &shown.training {
                p { (plural(t.users.len(), "user", "users")) " with a lapsed training; " strong { (t.violations) } " accesses after a lapse." }
                table id="training-users" {
                    thead { tr { th { "User" } th { "Agency" } th { "Role" } th { "Training expired" } th class="num" { "Accesses before" } th class="num" { "Accesses after lapse" } } }
                    tbody {
                        @for u in &t.users {
                            tr class="lapsed" {
                                td { (u.username) } td { (u.agency) } td { (u.role) }
                                td { (u.training_expires) @if u.lapsed_now { " (lapsed now)" } }
                                td class="num" { (u.before.len()) }
                                td class="num" { @if u.after_lapse.is_empty() { "0" } @else { span class="bad" { (u.after_lapse.len()) } } }
                            }
                        }
                    }
                }
            }
        }
        section id="retention" {
            h2 { "Retention runs" }
            p class="muted" { "Every purge the hub signed into its log, and reads overdue." }
            (section_form("retention", session))
            @if let Some(r) = &shown.retention {
                p {
                    "Retention " (r.retention_days) " days; " (r.purges.len()) " purges; "
                    @if r.overdue > 0 { span class="bad" { (r.overdue) " reads overdue" } } @else { "no read overdue" }
                    "; " (r.held) " kept under a hold."
                }
                table id="purges" {
                    thead { tr { th { "Record" } th { "Time" } th { "Node" } th { "Entries" } th class="num" { "Reads" } th { "Reason" } } }
                    tbody {
                        @for p in &r.purges {
                            tr class="purge" {
                                td { (p.record) } td { (when(p.at)) } td { (p.node) } td { (ranges(&p.ranges)) }
                                td class="num" { (p.reads) } td { (p.reason) }
                            }
                        }
                    }
                }
            }
        }
        section id="holds-audit" {
            h2 { "Legal holds" }
            p class="muted" { "Every hold, placed and released, with who and when." }
            (section_form("holds", session))
            @if let Some(h) = &shown.holds {
                table id="holds-audit-table" {
                    thead { tr { th { "Case" } th { "Reason" } th { "Placed" } th { "Scope" } th { "Released" } } }
                    tbody {
                        @for x in h {
                            tr class="hold-audit" {
                                td { (x.case) } td { (x.reason) }
                                td { (x.placed_by) " (" (x.agency) "), " (when(x.placed_at)) " on " (x.placed_on) }
                                td { (scope(x)) }
                                td {
                                    @match &x.released {
                                        Some(r) => { (r.by) ", " (when(r.at)) ": " (r.reason) }
                                        None => span class="ok" { "in force" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="exports" {
            h2 { "Exports" }
            p class="muted" { "Evidence exported to another agency (access entries whose action is export)." }
            (section_form("exports", session))
            @if let Some(x) = &shown.exports {
                p { (plural(x.len(), "export", "exports")) "." }
                (access_table("exports-table", "export", x))
            }
        }
    };
    page(session, Section::Audits, "audits", "Audits", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_time_is_read_as_utc_and_a_bad_one_says_which_field() {
        assert_eq!(parse_time("From", " "), Ok(None));
        let t = parse_time("From", "2026-11-28T16:05")
            .expect("valid")
            .expect("set");
        assert_eq!(t.to_string().get(..19), Some("2026-11-28T16:05:00"));
        assert!(parse_time("From", "2026-11-28").expect("a date").is_some());
        let e = parse_time("To", "yesterday").expect_err("not a time");
        assert!(e.starts_with("To:"), "{e}");
    }
}
