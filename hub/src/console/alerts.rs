//! The console's alerts: the list (`GET /console/alerts`), kept live by
//! server-sent events (`GET /console/alerts/live`), and one alert with its
//! read and its disposition stages (`GET /console/alerts/{node}/{seq}`,
//! `GET /console/hub-alerts/{n}` for a past match the hub found), where a
//! dispatcher or supervisor records the next stage (POST to the same
//! address).
//!
//! Every answer comes from the API's handlers ([`crate::api::alerts`]):
//! the role and covert checks, the stage rules and the access records are
//! theirs. The live list logs one view when it opens, then polls the
//! alerts index once a second (a cheap fingerprint of it; nothing in the
//! hub announces a new alert) and sends the rows again when they changed;
//! it ends when the session ends (logout, expiry, idle: an open list is
//! not activity), the role may no longer handle alerts, or the hub stops.

use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use alpr_shared::log::alert::{ActionTaken, ReadCheck, Stage, StatusCheck};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine;
use maud::{html, Markup};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    age, error_box, notice_box, page, when, ConsoleError, PageResult, Pages, Section, Session,
};
use crate::alerts::{AlertDetail, AlertView, REMINDER};
use crate::api::alerts::{DisposeRequest, ListQuery};
use crate::api::{ApiError, ApiState};
use crate::store::{HubStorage, StoreError};
use crate::users::Permission;

/// Most rows the list shows (open first, then newest), each with its photo.
const MAX_ROWS: usize = 200;
/// How often the live list looks at the alerts index.
const TICK: Duration = Duration::from_secs(1);
/// Every this many ticks the live list checks the session again.
const SESSION_TICKS: u32 = 30;

pub fn routes() -> Router<Pages> {
    Router::new()
        .route("/console/alerts", get(list_page))
        .route("/console/alerts/live", get(live))
        .route(
            "/console/alerts/{node}/{seq}",
            get(node_alert).post(dispose_node),
        )
        .route("/console/hub-alerts/{n}", get(hub_alert).post(dispose_hub))
}

#[derive(Debug, Deserialize)]
pub struct DisposeForm {
    pub csrf: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub note: String,
}

fn unavailable(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn data_uri(jpeg: &[u8]) -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    )
}

/// The console page of an alert (its opaque id, never a plate).
fn alert_link(v: &AlertView) -> String {
    match v.id.strip_prefix("hub#") {
        Some(n) if v.source == "hub" => format!("/console/hub-alerts/{n}"),
        _ => format!("/console/alerts/{}/{}", v.node, v.seq),
    }
}

/// What a form offers for a stage.
fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Read(ReadCheck::Correct) => "Read: correct (plate and state match the photo)",
        Stage::Read(ReadCheck::WrongState) => "Read: wrong state",
        Stage::Read(ReadCheck::Misread) => "Read: misread",
        Stage::Read(ReadCheck::DismissedUnreviewed) => "Read: dismissed unreviewed",
        Stage::Status(StatusCheck::ConfirmedActive) => {
            "Status: confirmed active in the state system"
        }
        Stage::Status(StatusCheck::NoLongerActive) => "Status: no longer active",
        Stage::Action(ActionTaken::Stop) => "Action: stop",
        Stage::Action(ActionTaken::NoStop) => "Action: no stop",
        Stage::Action(ActionTaken::Unable) => "Action: unable to act",
    }
}

/// The rows to show: open first, then newest, at most [`MAX_ROWS`], each
/// with the plate crop if the hub holds it.
async fn shown(
    state: &ApiState,
    mut views: Vec<AlertView>,
) -> Result<Vec<(AlertView, Option<Vec<u8>>)>, ConsoleError> {
    views.sort_by_key(|v| (!v.open, std::cmp::Reverse(v.raised_at)));
    views.truncate(MAX_ROWS);
    let storage = state.hub.storage.clone();
    tokio::task::spawn_blocking(move || {
        views
            .into_iter()
            .map(|v| {
                let photos =
                    crate::alerts::read_photos(storage.as_ref(), &v.node, v.read_seq, false)?;
                Ok((v, photos.crop))
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)
}

/// The `<tr>` rows of the alerts table (also what a live event carries).
fn rows(shown: &[(AlertView, Option<Vec<u8>>)]) -> Markup {
    html! {
        @for (v, crop) in shown {
            tr class={ "alert " (if v.open { "open" } else { "closed" }) (if v.list_stale { " stale" } else { "" }) } {
                td class="alert-plate plate" { (v.plate_read) }
                td {
                    @if let Some(c) = crop {
                        img class="photo" src=(data_uri(c)) alt={ "Plate photo of the read " (v.node) "#" (v.read_seq) };
                    } @else {
                        span class="muted" { "no photo at the hub" }
                    }
                    // Beside the plate read and under its crop: what matched
                    // instead, and that the crop comes first.
                    @if let Some(alt) = &v.alternative {
                        br;
                        strong class="bad alternative" { (alt.notice()) }
                    }
                }
                td class="entry" {
                    span class="plate" { (v.entry.plate) } " " (v.entry.state)
                    br;
                    (v.entry.category)
                    @if !v.entry.note.is_empty() { " · " (v.entry.note) }
                }
                td class="match-kind" { (v.match_kind) }
                td class="list-age" {
                    (age(v.list_age_ms))
                    @if v.list_stale { " " strong class="bad" { "STALE" } }
                }
                td { (v.node) @if v.past_match { br; span class="muted" { "past match" } } }
                td { time datetime=(v.raised_at.to_string()) { (when(v.raised_at)) } }
                td class="status" { (v.status) }
                td { a class="alert-open" href=(alert_link(v)) { "Open" } }
            }
        }
        @if shown.is_empty() {
            tr { td colspan="9" class="muted" { "No alerts." } }
        }
    }
}

async fn list_page(State(state): State<ApiState>, session: Session) -> PageResult {
    // The role is the API's to check and record.
    let Json(views) = crate::api::alerts::list(
        State(state.clone()),
        session.caller.clone(),
        Query(ListQuery::default()),
    )
    .await?;
    let open = views.iter().filter(|v| v.open).count();
    let total = views.len();
    let shown = shown(&state, views).await?;
    Ok(page(
        &session,
        Section::Alerts,
        "alerts",
        "Alerts",
        html! {
            p class="warn" { (REMINDER) }
            p {
                (open) " open of " (total) " alerts. "
                span id="live-status" class="muted" { "Not live: the list updates itself while this page's script runs." }
            }
            @if total > shown.len() {
                p class="muted" { "Showing the " (shown.len()) " most pressing: open first, then newest." }
            }
            table id="alerts" data-live="/console/alerts/live" {
                thead {
                    tr {
                        th scope="col" { "Plate read" }
                        th scope="col" { "Photo" }
                        th scope="col" { "Listed as" }
                        th scope="col" { "Match" }
                        th scope="col" { "List age" }
                        th scope="col" { "Node" }
                        th scope="col" { "Raised" }
                        th scope="col" { "Status" }
                        th scope="col" { "Alert" }
                    }
                }
                tbody { (rows(&shown)) }
            }
        },
    ))
}

/// A cheap summary of everything the list shows: it changes when an alert
/// arrives or a stage is recorded (at a node or here).
fn fingerprint(storage: &dyn HubStorage) -> Result<u64, StoreError> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in storage.alerts(None, usize::MAX)? {
        (
            r.node.as_str(),
            r.seq,
            r.progress.encode(),
            r.dispositions.len(),
        )
            .hash(&mut h);
    }
    storage.hub_alerts(1)?.first().map(|(n, _)| *n).hash(&mut h);
    storage.hub_dispositions(None)?.len().hash(&mut h);
    Ok(h.finish())
}

async fn fingerprint_of(state: &ApiState) -> Result<u64, ConsoleError> {
    let storage = state.hub.storage.clone();
    tokio::task::spawn_blocking(move || fingerprint(storage.as_ref()))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
}

fn rows_event(html: &str) -> Event {
    // maud writes no raw line breaks of its own; typed text may hold one.
    Event::default()
        .event("alerts")
        .data(html.replace('\r', ""))
}

/// One live list's state between events.
struct Live {
    state: ApiState,
    session: Session,
    source: IpAddr,
    /// The rows sent first (the logged view), until sent.
    first: Option<String>,
    /// The rows last sent, and the index's fingerprint they were made at.
    sent: String,
    mark: u64,
    ticks: u32,
    stop: CancellationToken,
}

impl Live {
    /// Whether the session still stands and its role may still see alerts
    /// (a list left open is not activity: the session still idles out).
    async fn allowed(&self) -> bool {
        let users = self.state.users.clone();
        let token = self.session.token.clone();
        let source = self.source;
        matches!(
            tokio::task::spawn_blocking(move || users.still_authenticated(&token, source)).await,
            Ok(Ok(c)) if c.role.may(Permission::HandleAlerts)
        )
    }

    /// The rows as they stand now, if the index changed since last sent.
    async fn changed(&mut self) -> Option<String> {
        let mark = fingerprint_of(&self.state).await.ok()?;
        if mark == self.mark {
            return None;
        }
        let storage = self.state.hub.storage.clone();
        let caller = self.session.caller.clone();
        let views = tokio::task::spawn_blocking(move || {
            crate::api::alerts::collect(storage.as_ref(), &caller, false, None)
        })
        .await
        .ok()?
        .ok()?;
        let html = rows(&shown(&self.state, views).await.ok()?).into_string();
        self.mark = mark;
        if html == self.sent {
            return None;
        }
        self.sent = html.clone();
        Some(html)
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Live)> {
        if let Some(html) = self.first.take() {
            return Some((Ok(rows_event(&html)), self));
        }
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(TICK) => {}
            }
            self.ticks = self.ticks.wrapping_add(1);
            if self.ticks.is_multiple_of(SESSION_TICKS) && !self.allowed().await {
                return None;
            }
            if let Some(html) = self.changed().await {
                return Some((Ok(rows_event(&html)), self));
            }
        }
    }
}

/// `GET /console/alerts/live`: event `alerts` with the table's rows, now
/// and whenever they change.
async fn live(State(state): State<ApiState>, session: Session) -> Result<Response, ConsoleError> {
    let source: IpAddr = session
        .caller
        .source
        .parse()
        .map_err(|_| ConsoleError::new(StatusCode::BAD_REQUEST, "no source address"))?;
    let mark = fingerprint_of(&state).await?;
    // The one access record of this stream.
    let Json(views) = crate::api::alerts::list(
        State(state.clone()),
        session.caller.clone(),
        Query(ListQuery::default()),
    )
    .await?;
    let first = rows(&shown(&state, views).await?).into_string();
    let live = Live {
        stop: state.hub.shutdown(),
        state,
        session,
        source,
        first: Some(first.clone()),
        sent: first,
        mark,
        ticks: 0,
    };
    let stream = futures_util::stream::unfold(live, Live::next);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Which alert a page shows.
enum Which {
    Node(String, u64),
    Hub(u64),
}

impl Which {
    fn link(&self) -> String {
        match self {
            Which::Node(node, seq) => format!("/console/alerts/{node}/{seq}"),
            Which::Hub(n) => format!("/console/hub-alerts/{n}"),
        }
    }

    /// The alert through the API (which logs the view).
    async fn show(&self, state: &ApiState, session: &Session) -> Result<AlertDetail, ApiError> {
        let s = State(state.clone());
        let caller = session.caller.clone();
        let Json(d) = match self {
            Which::Node(node, seq) => {
                crate::api::alerts::show(s, caller, Path((node.clone(), *seq))).await?
            }
            Which::Hub(n) => crate::api::alerts::show_hub(s, caller, Path(*n)).await?,
        };
        Ok(d)
    }

    /// Record a stage through the API (which checks the rules and logs it).
    async fn dispose(
        &self,
        state: &ApiState,
        session: &Session,
        req: DisposeRequest,
    ) -> Result<AlertDetail, ApiError> {
        let s = State(state.clone());
        let caller = session.caller.clone();
        let Json(d) = match self {
            Which::Node(node, seq) => {
                crate::api::alerts::dispose(s, caller, Path((node.clone(), *seq)), Json(req))
                    .await?
            }
            Which::Hub(n) => {
                crate::api::alerts::dispose_hub(s, caller, Path(*n), Json(req)).await?
            }
        };
        Ok(d)
    }
}

async fn node_alert(
    State(state): State<ApiState>,
    session: Session,
    Path((node, seq)): Path<(String, u64)>,
) -> PageResult {
    show_page(&state, &session, Which::Node(node, seq)).await
}

async fn hub_alert(
    State(state): State<ApiState>,
    session: Session,
    Path(n): Path<u64>,
) -> PageResult {
    show_page(&state, &session, Which::Hub(n)).await
}

async fn show_page(state: &ApiState, session: &Session, which: Which) -> PageResult {
    let d = which.show(state, session).await?;
    alert_page(state, session, &which, &d, None).await
}

async fn dispose_node(
    State(state): State<ApiState>,
    session: Session,
    Path((node, seq)): Path<(String, u64)>,
    Form(form): Form<DisposeForm>,
) -> PageResult {
    dispose_page(&state, &session, Which::Node(node, seq), form).await
}

async fn dispose_hub(
    State(state): State<ApiState>,
    session: Session,
    Path(n): Path<u64>,
    Form(form): Form<DisposeForm>,
) -> PageResult {
    dispose_page(&state, &session, Which::Hub(n), form).await
}

/// Record the stage; the alert again with a notice, or the refusal (a
/// stage the rules do not allow now, a bad note) with the form.
async fn dispose_page(
    state: &ApiState,
    session: &Session,
    which: Which,
    form: DisposeForm,
) -> PageResult {
    session.check(&form.csrf)?;
    let req = DisposeRequest {
        stage: form.stage,
        note: form.note,
    };
    match which.dispose(state, session, req).await {
        Ok(d) => {
            let done = d
                .alert
                .dispositions
                .iter()
                .rev()
                .find(|s| s.by == "hub")
                .map(|s| s.stage.clone())
                .unwrap_or_default();
            let notice = format!("Recorded at the hub: {done}. Now {}.", d.alert.status);
            alert_page(state, session, &which, &d, Some(Ok(notice))).await
        }
        Err(e @ (ApiError::Conflict(_) | ApiError::BadRequest(_))) => {
            let status = e.status();
            let d = which.show(state, session).await?;
            let mut resp = alert_page(state, session, &which, &d, Some(Err(e.to_string()))).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

/// The alert page: the reminder, the alert, its read with its photos, the
/// stages so far, and the form for the next one.
async fn alert_page(
    state: &ApiState,
    session: &Session,
    which: &Which,
    d: &AlertDetail,
    message: Option<Result<String, String>>,
) -> PageResult {
    let a = &d.alert;
    let storage = state.hub.storage.clone();
    let (node, read_seq) = (a.node.clone(), a.read_seq);
    let crate::alerts::ReadPhotos { crop, overview } = tokio::task::spawn_blocking(move || {
        crate::alerts::read_photos(storage.as_ref(), &node, read_seq, true)
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)?;
    let next = crate::alerts::next_stages(a.progress);
    let e = &a.entry;
    let vehicle: Vec<&str> = [&e.vehicle_year, &e.make, &e.model, &e.colour]
        .into_iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let list = match &a.list {
        alpr_shared::hotlist::ListRef::Bulk {
            source, generation, ..
        } => format!("{source}, generation {generation}"),
        alpr_shared::hotlist::ListRef::Local { id } => format!("local entry {id}"),
    };
    let title = format!("Alert {}", a.id);
    Ok(page(
        session,
        Section::Alerts,
        "alert",
        &title,
        html! {
            p class="warn" id="reminder" { (d.reminder) }
            @match &message {
                Some(Ok(n)) => (notice_box(n)),
                Some(Err(m)) => (error_box(m)),
                None => {},
            }
            p { a href="/console/alerts" { "All alerts" } }
            h2 { "The alert" }
            table class="facts" {
                tbody {
                    tr { th scope="row" { "Plate read" } td class="alert-plate plate" { (a.plate_read) } }
                    @if let Some(alt) = &a.alternative {
                        tr { th scope="row" { "Matched instead" } td { strong class="bad alternative" { (alt.notice()) } } }
                    }
                    tr { th scope="row" { "Listed as" } td { span class="plate" { (e.plate) } " " (e.state) " · " (e.category) } }
                    @if !e.note.is_empty() { tr { th scope="row" { "Reason" } td { (e.note) } } }
                    @if !vehicle.is_empty() { tr { th scope="row" { "Vehicle" } td { (vehicle.join(" ")) } } }
                    @if !(e.nic.is_empty() && e.ori.is_empty() && e.oca.is_empty()) {
                        tr { th scope="row" { "NIC · ORI · OCA" } td { (e.nic) " · " (e.ori) " · " (e.oca) } }
                    }
                    tr { th scope="row" { "Match" } td class="match-kind" { (a.match_kind) } }
                    tr { th scope="row" { "List" } td { (list) } }
                    tr {
                        th scope="row" { "List age" }
                        td class="list-age" {
                            (super::age(a.list_age_ms))
                            @if a.list_stale { " " strong class="bad" { "STALE: older than policy allows" } }
                        }
                    }
                    tr { th scope="row" { "Level" } td { (a.level) @if a.covert { " · covert" } } }
                    tr { th scope="row" { "Raised" } td { (when(a.raised_at)) " by " (if a.source == "hub" { "the hub (past match)" } else { "the node" }) } }
                    tr { th scope="row" { "Status" } td id="alert-status" { (a.status) } }
                }
            }
            h2 { "The read" }
            @if let Some(c) = &crop {
                img class="photo" src=(data_uri(c)) alt="Plate photo of the read";
            }
            @if let Some(o) = &overview {
                img class="photo" src=(data_uri(o)) alt="Overview photo of the read";
            }
            @if crop.is_none() && overview.is_none() {
                p class="muted" { "The hub holds no photo of this read." }
            }
            table class="facts" {
                tbody {
                    tr { th scope="row" { "Plate" } td id="alert-read-plate" class="plate" { (d.read_plate.as_deref().unwrap_or("(content purged)")) } }
                    tr { th scope="row" { "Time" } td { (d.read_at.map_or_else(|| "?".to_owned(), when)) } }
                    tr { th scope="row" { "Place" } td { (d.read_location.as_deref().unwrap_or("?")) } }
                    tr { th scope="row" { "Node · camera" } td { (a.node) "#" (a.read_seq) " · " (d.camera.as_deref().unwrap_or("?")) } }
                }
            }
            h2 { "Dispositions" }
            @if a.dispositions.is_empty() {
                p class="muted" { "No stage recorded yet." }
            }
            ol id="dispositions" {
                @for s in &a.dispositions {
                    li class="disposition" {
                        strong { (s.stage) } " · " (when(s.at)) " · " (s.user) " (" (s.agency) ") "
                        (if s.by == "hub" { "at the hub" } else { "at the node" })
                        @if !s.note.is_empty() { ": " (s.note) }
                    }
                }
            }
            h2 { "Record the next stage" }
            @if next.is_empty() {
                p { "Nothing more is expected: the alert is closed." }
            } @else {
                form id="dispose-form" method="post" action=(which.link()) {
                    (session.csrf_field())
                    label for="stage" { "Stage" }
                    select id="stage" name="stage" required {
                        @for s in &next {
                            option value=(crate::alerts::stage_name(*s)) { (stage_label(*s)) }
                        }
                    }
                    label for="note" { "Note" }
                    input id="note" name="note" maxlength="1024";
                    button type="submit" id="dispose" { "Record" }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::hotlist::{AlertLevel, Category, HotEntry, ListRef, MatchKind};
    use alpr_shared::log::AlertRecord;
    use alpr_shared::types::{DeviceId, UnixMillis};

    fn past_match(stale: bool) -> AlertView {
        let a = crate::store::HubAlert {
            node: DeviceId::new("pole-4").expect("name"),
            at: UnixMillis(1_764_000_000_000),
            record: AlertRecord {
                read_seq: 17,
                list: ListRef::Bulk {
                    source: "ncic".into(),
                    generation: 3,
                    issued_at: UnixMillis(1_763_990_000_000),
                },
                entry: HotEntry {
                    plate: "7ABC123".into(),
                    state: "CA".into(),
                    category: Category::StolenVehicle,
                    note: "<script>alert(1)</script>".into(),
                    ..HotEntry::default()
                },
                kind: MatchKind::Exact,
                matched_text: "7ABC123".into(),
                level: AlertLevel::Standard,
                covert: false,
                list_age_ms: 30 * 3_600_000,
                list_stale: stale,
                past_match: true,
            },
        };
        crate::alerts::hub_view(3, &a, Vec::new())
    }

    #[test]
    fn a_row_links_by_id_flags_a_stale_list_and_escapes_the_entry() {
        let html = rows(&[(past_match(true), None)]).into_string();
        assert!(html.contains("href=\"/console/hub-alerts/3\""), "{html}");
        assert!(!html.contains("href=\"/console/hub-alerts/7ABC123"));
        assert!(html.contains("<td class=\"alert-plate plate\">7ABC123</td>"));
        assert!(html.contains("STALE"));
        assert!(html.contains("30 h"), "the list's age: {html}");
        assert!(!html.contains("<script>"), "escaped: {html}");
        assert!(html.contains("no photo at the hub"));
        let fresh = rows(&[(past_match(false), Some(vec![0xff, 0xd8]))]).into_string();
        assert!(!fresh.contains("STALE"));
        assert!(
            fresh.contains("src=\"data:image/jpeg;base64,/9g=\""),
            "{fresh}"
        );
        assert!(rows(&[]).into_string().contains("No alerts."));
    }

    #[test]
    fn a_row_of_an_alternative_shows_the_plate_read_and_the_alternative_beside_it() {
        let mut a = past_match(false);
        a.plate_read = "YG8E4F".into();
        a.matched_text = "YG9E4F".into();
        a.alternative = Some(alpr_shared::log::alert::AlternativeMatch {
            text: "YG9E4F".into(),
            rank: 1,
            probability: 2_100,
        });
        let html = rows(&[(a, None)]).into_string();
        assert!(
            html.contains("<td class=\"alert-plate plate\">YG8E4F</td>"),
            "{html}"
        );
        assert!(
            html.contains(
                "ALTERNATIVE READING YG9E4F matched, not the plate as read: compare the crop"
            ),
            "{html}"
        );
        let plain = rows(&[(past_match(false), None)]).into_string();
        assert!(!plain.contains("ALTERNATIVE"), "{plain}");
    }
}
