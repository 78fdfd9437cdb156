//! The web console for operators, supervisors, auditors and
//! administrators, served on the hub's HTTPS port beside the API
//! (`/console/…`), and the public transparency page (`/transparency`).
//!
//! - **Same rules as the commands.** Every page that touches read data
//!   or changes anything calls the API's own handler
//!   (`crate::api::…::handler(State(state), session.caller.clone(), …)`),
//!   so the permission checks, the purpose and case rules and the
//!   access record before the answer are the API's, not copies.
//! - **Sessions** are the API's sessions: the login gives a token, kept
//!   in the cookie [`SESSION_COOKIE`] (`Secure`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`); [`Session`] authenticates it like a
//!   bearer token (idle and absolute expiry, training, disabled users).
//! - **Forms** are POST with a CSRF field ([`Session::csrf`], a keyed hash
//!   of the session token, checked by [`Session::check`]); a POST whose
//!   `Origin` or `Sec-Fetch-Site` says another site is refused before any
//!   handler runs.
//! - **Headers** on every console response ([`security_headers`]): a
//!   strict Content-Security-Policy (nothing inline, nothing from another
//!   origin except the configured map tiles), `no-store`, no referrer, no
//!   framing.
//! - **No read data in URLs**: a plate, a search or a read is only ever
//!   in a POST body; photos are inlined in the page that shows them.
//! - **Pages** are server-rendered HTML ([`maud`], which escapes
//!   everything it prints) with one small script ([`assets`]) for the
//!   live alerts and the map picker. Nothing is loaded from outside.

pub mod alerts;
pub mod assets;
pub mod audits;
pub mod client;
pub mod dashboard;
pub mod export;
pub mod holds;
pub mod hotlists;
pub mod login;
pub mod map;
pub mod reads;
pub mod search;
pub mod transparency;
pub mod users;

use alpr_shared::types::UnixMillis;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, ApiState};
use crate::config::ConsoleConfig;
use crate::users::{Caller, Permission};

/// The console's settings and what its pages keep between requests (one
/// per hub, in [`Pages::console`]).
#[derive(Debug, Default)]
pub struct ConsoleState {
    pub config: ConsoleConfig,
    /// The dashboard's last retention count.
    pub(crate) retention: std::sync::Mutex<dashboard::RetentionCount>,
    /// The transparency page's last counts (one visitor recounts, the
    /// others wait for it).
    pub(crate) transparency: tokio::sync::Mutex<Option<(std::time::Instant, transparency::Counts)>>,
}

impl ConsoleState {
    pub fn new(config: ConsoleConfig) -> Self {
        ConsoleState {
            config,
            ..ConsoleState::default()
        }
    }
}

/// The session cookie; `__Host-` makes the browser refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "__Host-alpr_session";
/// The login form's CSRF cookie (before there is a session).
pub const LOGIN_COOKIE: &str = "__Host-alpr_login";

/// What the console's routes are given: the API's state, and what the
/// pages keep between requests. A handler may take either
/// `State<Pages>` or `State<ApiState>`.
#[derive(Clone)]
pub struct Pages {
    pub api: ApiState,
    pub console: Arc<ConsoleState>,
}

impl std::ops::Deref for Pages {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.api
    }
}

impl axum::extract::FromRef<Pages> for ApiState {
    fn from_ref(pages: &Pages) -> ApiState {
        pages.api.clone()
    }
}

/// Every console route, and the public transparency page, on the API's
/// state and the console's own.
pub fn routes(api: ApiState, console: Arc<ConsoleState>) -> Router<ApiState> {
    let pages = Pages { api, console };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/static/{name}", get(assets::serve))
        .merge(login::routes())
        .merge(dashboard::routes())
        .merge(search::routes())
        .merge(reads::routes())
        .merge(hotlists::routes())
        .merge(alerts::routes())
        .merge(holds::routes())
        .merge(audits::routes())
        .merge(export::routes())
        .merge(users::routes())
        .merge(transparency::routes())
        .layer(axum::middleware::from_fn_with_state(
            pages.clone(),
            security_headers,
        ))
        .with_state(pages)
}

/// The Content-Security-Policy of every console page.
pub fn content_security_policy(config: &ConsoleConfig) -> String {
    let tiles = config
        .tile_origin()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' data:{tiles}; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Refuse a cross-site POST; add the security headers, and the time the
/// answer took (`Server-Timing: app;dur=…`), to every answer.
pub async fn security_headers(State(state): State<Pages>, req: Request, next: Next) -> Response {
    if req.method() == Method::POST && cross_site(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "refused: a form of the console may only be sent from the console",
        )
            .into_response();
    }
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // How long the hub took to make the answer (browsers' developer
    // tools and `alpr-bench hub console` read it).
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        h.insert("server-timing", v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(&state.console.config)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

/// Whether a request says it comes from another site (`Sec-Fetch-Site`,
/// or, from a browser that does not send it, an `Origin` whose host is not
/// this one). A browser that sends `Sec-Fetch-Site` is believed: under
/// our `Referrer-Policy: no-referrer` it sends `Origin: null` with the
/// console's own forms.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, h)| !h.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// A cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the attributes every console cookie has.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64) -> String {
    format!("{name}={value}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}")
}

/// The CSRF token of a session token.
fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"alpr-console-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Compare without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A person logged in to the console.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The value every form of this session must carry as `csrf`.
    pub csrf: String,
    /// The session token (for logout).
    pub(crate) token: String,
}

impl Session {
    /// Refuse a form without this session's CSRF token.
    pub fn check(&self, csrf: &str) -> Result<(), ConsoleError> {
        if same(csrf, &self.csrf) {
            Ok(())
        } else {
            Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "the form was not from this session (CSRF check): open the page again",
            ))
        }
    }

    /// Whether the role may do `p` (pages offer only what it may).
    pub fn may(&self, p: Permission) -> bool {
        self.caller.role.may(p)
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

impl FromRequestParts<Pages> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Pages) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(Redirect::to("/console/login").into_response());
        };
        let source = crate::api::Source::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?
            .0;
        let users = state.users.clone();
        let t = token.clone();
        let caller = tokio::task::spawn_blocking(move || users.authenticate(&t, source))
            .await
            .map_err(|e| ConsoleError::from(ApiError::Internal(e.to_string())).into_response())?;
        match caller.map_err(ApiError::from) {
            Ok(caller) => Ok(Session {
                caller,
                csrf: csrf_of(&token),
                token,
            }),
            // No session, or it expired or was ended: log in again.
            Err(ApiError::Unauthorized(m)) => Err(login::page_with(
                StatusCode::UNAUTHORIZED,
                Some(&format!("Your session has ended: {m}. Log in again.")),
                None,
            )),
            Err(e) => Err(login::page_with(e.status(), Some(&e.to_string()), None)),
        }
    }
}

/// A console error: a page with the message and its status.
#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConsoleError {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::new(e.status(), e.to_string())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head { (head("Refused")) }
                body {
                    main id="page-error" {
                        h1 { "Not done" }
                        p class="error" id="error" role="alert" { (self.message) }
                        p { a href="/console/" { "Back to the console" } }
                    }
                }
            }
        };
        (self.status, body).into_response()
    }
}

/// What a console handler returns.
pub type PageResult = Result<Response, ConsoleError>;

/// One section of the console, offered to the roles that may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Search,
    Hotlists,
    Alerts,
    Holds,
    Audits,
    Export,
    Users,
}

impl Section {
    pub const ALL: [Section; 8] = [
        Section::Dashboard,
        Section::Search,
        Section::Hotlists,
        Section::Alerts,
        Section::Holds,
        Section::Audits,
        Section::Export,
        Section::Users,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Section::Dashboard => "/console/",
            Section::Search => "/console/search",
            Section::Hotlists => "/console/hotlists",
            Section::Alerts => "/console/alerts",
            Section::Holds => "/console/holds",
            Section::Audits => "/console/audits",
            Section::Export => "/console/export",
            Section::Users => "/console/users",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Section::Dashboard => "Dashboard",
            Section::Search => "Search",
            Section::Hotlists => "Hotlists",
            Section::Alerts => "Alerts",
            Section::Holds => "Holds",
            Section::Audits => "Audits",
            Section::Export => "Export",
            Section::Users => "Users",
        }
    }

    /// What a role needs to see the section (the dashboard: any role).
    pub fn permission(self) -> Option<Permission> {
        match self {
            Section::Dashboard => None,
            Section::Search => Some(Permission::Search),
            Section::Hotlists => Some(Permission::ManageLists),
            Section::Alerts => Some(Permission::HandleAlerts),
            Section::Holds => Some(Permission::ManageHolds),
            Section::Audits => Some(Permission::ReadAudits),
            Section::Export => Some(Permission::ExportEvidence),
            Section::Users => Some(Permission::ManageUsers),
        }
    }

    pub fn allowed(self, session: &Session) -> bool {
        self.permission().is_none_or(|p| session.may(p))
    }

    /// Refuse (403 page) a role that may not use the section.
    pub fn require(self, session: &Session) -> Result<(), ConsoleError> {
        match self.permission() {
            Some(p) => session.caller.require(p).map_err(ConsoleError::from),
            None => Ok(()),
        }
    }
}

/// The `<head>` of every page.
pub fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · ALPR console" }
        link rel="stylesheet" href="/console/static/console.css";
        script src="/console/static/console.js" defer {}
    }
}

/// A whole page: the header with the user and the sections the role may
/// use, then `body` in `<main id="page-{id}">`.
pub fn page(session: &Session, section: Section, id: &str, title: &str, body: Markup) -> Response {
    let c = &session.caller;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    nav aria-label="Sections" {
                        ul {
                            @for s in Section::ALL {
                                @if s.allowed(session) {
                                    li {
                                        a href=(s.path()) id={ "nav-" (s.label().to_lowercase()) }
                                            aria-current=[(s == section).then_some("page")] { (s.label()) }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span id="who" { (c.username) " · " (c.role) " · " (c.agency) }
                        form method="post" action="/console/logout" {
                            (session.csrf_field())
                            button type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main id="main" {
                    div id={ "page-" (id) } {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    };
    markup.into_response()
}

/// A message box: an error (`id="error"`) or a notice (`id="notice"`).
pub fn error_box(message: &str) -> Markup {
    html! { p class="error" id="error" role="alert" { (message) } }
}

pub fn notice_box(message: &str) -> Markup {
    html! { p class="notice" id="notice" role="status" { (message) } }
}

/// A time as people read it: `2026-11-29 14:03:07 UTC`.
pub fn when(t: UnixMillis) -> String {
    let s = t.to_string();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// An age as people read it: `42 s`, `17 min`, `3 h`, `5 d`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// Markup of text that is already safe (used only for constants).
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

/// A CSV file to download (audits): RFC 4180 quoting; a cell that a
/// spreadsheet would take for a formula is prefixed with `'`.
pub fn csv(filename: &str, header_row: &[&str], rows: &[Vec<String>]) -> Response {
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells.map(csv_cell).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(&mut header_row.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response()
}

fn csv_cell(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests;
