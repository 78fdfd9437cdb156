//! The hub's HTTPS JSON API for people: every command for people (`hub
//! login`, `hub user …`, `hub nodes`, `hub revoke`, `hub audit …`, and
//! later `hub search` and the web console) goes through it. The QUIC port
//! is for nodes only.
//!
//! - Served over rustls (ring) on its own TCP port (`api_listen`), with the
//!   hub's CA-issued certificate unless `api_cert`/`api_key` say
//!   otherwise; the bound address is logged as `api listening addr=…`.
//! - Bounded: `api_max_connections` connections at once (more are closed
//!   at accept), `api_body_limit` bytes of request body, and
//!   `api_request_timeout` per request (then 503).
//! - Paths are versioned: `/api/v1/…`. Errors are JSON `{"error": "…"}`
//!   with the status that fits ([`ApiError`]); a refused login for too
//!   many failures is 429 with `Retry-After`.
//!
//! # Adding routes (for `hub/src/search`, `hub/src/policy`, …)
//!
//! ```ignore
//! let app = api::router(state.clone(), body_limit, pages).merge(search::routes().with_state(state));
//! ```
//!
//! A module's routes are a `Router<ApiState>`; the console's pages
//! (`pages`) are built on it by the composition root. A handler takes
//! `State(state): State<ApiState>` and a [`Caller`] (the extractor
//! authenticates the `Authorization: Bearer` token, refuses a lapsed
//! training or a disabled user, and answers 401/403 itself), checks
//! `caller.require(Permission::X)?`, records the access with
//! `state.access.record(caller.record(action, query)).await?` **before**
//! touching read data, and returns `Result<Json<T>, ApiError>`. A route
//! that serves read data (plates, photos, places, times of reads) decides
//! itself what the access is, whatever the client sends, and records
//! every attempt: one refused (role, purpose), failed, or asking for a
//! read that is not there is recorded with its reason
//! ([`ApiState::refuse`], [`ApiState::or_refuse`]).
//!
//! Routes of this module: `GET /api/v1/health` (no login: no read data),
//! `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/whoami`,
//! `POST /api/v1/bootstrap`, users ([`users`]), nodes ([`nodes`]), audits
//! and the log bundle ([`audit`]).

pub mod alerts;
pub mod audit;
pub mod client;
pub mod export;
pub mod holds;
pub mod hotlists;
pub mod local_entries;
pub mod nodes;
pub mod policy;
pub mod retention;
pub mod search;
pub mod stream;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use alpr_shared::log::{AccessOutcome, AccessRecord};

use crate::access::{AccessError, AccessLog};
use crate::hub::Hub;
use crate::users::{Caller, Permission, UserError, Users};

/// What every route can reach; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub hub: Arc<Hub>,
    pub users: Arc<Users>,
    /// The hub's access log: record first, answer after.
    pub access: AccessLog,
    /// The hub's data folder (bootstrap file).
    pub data_dir: PathBuf,
    /// Searches of the stored reads (shares its plate index across requests).
    pub search: crate::search::Searcher,
    /// The retention job, and how often it runs.
    pub retention: Arc<crate::retention::Retention>,
    pub retention_interval: std::time::Duration,
}

impl ApiState {
    /// Record `record` in the access log as refused for `err`'s reason
    /// (a refusal, a failure, a read that is not there: every attempt at
    /// read data leaves a record) and give `err` back, or the access log's
    /// own failure.
    pub(crate) async fn refuse(&self, mut record: AccessRecord, err: ApiError) -> ApiError {
        record.outcome = AccessOutcome::Refused {
            reason: err.to_string(),
        };
        fit(&mut record);
        match self.access.record(record).await {
            Ok(_) => err,
            Err(e) => e.into(),
        }
    }

    /// The answer to a change a person asked for: `record` (refused with
    /// the reason when `result` failed) is in the access log before the
    /// answer leaves; the result as JSON, or its error as `to_api` maps it.
    pub(crate) async fn logged<T, E: std::fmt::Display>(
        &self,
        mut record: AccessRecord,
        result: Result<T, E>,
        to_api: impl FnOnce(E) -> ApiError,
    ) -> Result<axum::Json<T>, ApiError> {
        if let Err(e) = &result {
            record.outcome = AccessOutcome::refused(e);
        }
        self.access.record(record).await?;
        result.map(axum::Json).map_err(to_api)
    }

    /// `step`'s value, or its error after [`ApiState::refuse`] recorded it
    /// against `record`.
    pub(crate) async fn or_refuse<T>(
        &self,
        record: &AccessRecord,
        step: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match step {
            Ok(v) => Ok(v),
            Err(e) => Err(self.refuse(record.clone(), e).await),
        }
    }
}

/// Make a refusal's record valid whatever the client sent (text it typed
/// may be long or hold control characters): cut to each field's limit,
/// control characters shown as `?`.
fn fit(record: &mut AccessRecord) {
    use alpr_shared::log::access::{cut, MAX_QUERY_LEN};
    use alpr_shared::types::MAX_TEXT_LEN;
    let printable = |s: &mut String, max: usize| {
        if s.chars().any(char::is_control) {
            *s = s
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
        }
        cut(s, max);
    };
    printable(&mut record.query, MAX_QUERY_LEN);
    if let AccessOutcome::Refused { reason } = &mut record.outcome {
        printable(reason, MAX_QUERY_LEN);
    }
    for field in [&mut record.purpose, &mut record.case]
        .into_iter()
        .flatten()
    {
        printable(field, MAX_TEXT_LEN);
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// `?all=true`: every record, not only those in force (the holds' and
/// the local entries' lists).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub all: bool,
}

/// An API error: JSON `{"error": "…"}` with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400
    #[error("{0}")]
    BadRequest(String),
    /// 401: no session, or it expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the role may not, or the user may not act now (training,
    /// disabled).
    #[error("{0}")]
    Forbidden(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Duration,
    },
    /// 503: the access log or the database cannot be written now.
    #[error("{0}")]
    Unavailable(String),
    /// 500
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
}

impl ApiError {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let message = self.to_string();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: &message,
                retry_after_s: retry,
            }),
        )
            .into_response();
        if let Some(s) = retry {
            if let Ok(v) = header::HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            e => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Unauthorized(m) => ApiError::Unauthorized(m),
            UserError::Forbidden(m) => ApiError::Forbidden(m),
            UserError::Locked {
                message,
                retry_after,
            } => ApiError::TooManyRequests {
                message,
                retry_after,
            },
            UserError::Invalid(m) => ApiError::BadRequest(m),
            UserError::NotFound(m) => ApiError::NotFound(m),
            UserError::Conflict(m) => ApiError::Conflict(m),
            UserError::Access(e) => e.into(),
            UserError::Store(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl Caller {
    /// Refuse (403) unless the caller's role may do `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.may(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} ({}) may not {}: not part of that role",
                self.username,
                self.role,
                p.describe()
            )))
        }
    }
}

/// The peer's address (set for every request by [`serve`]).
fn peer(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip())
}

/// The bearer token of a request.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("log in first (`hub login`): no session token".into())
        })?;
        let users = state.users.clone();
        let token = token.to_owned();
        let source = peer(parts);
        tokio::task::spawn_blocking(move || users.authenticate(&token, source))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::from)
    }
}

/// The source address of a request, as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Source(peer(parts)))
    }
}

/// What `GET /api/v1/health` answers (no login, no read data).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HealthReport {
    /// What is wrong now; empty when healthy.
    pub problems: Vec<String>,
}

pub(crate) async fn health(State(state): State<ApiState>) -> Json<HealthReport> {
    Json(HealthReport {
        problems: state.hub.health.problems(),
    })
}

/// Every route of the API and `pages` (the console's), with their limits
/// (body size). Merge more routes onto it before [`serve`].
pub fn router(state: ApiState, body_limit: usize, pages: Router<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(users::routes())
        .merge(nodes::routes())
        .merge(audit::routes())
        .merge(policy::routes())
        .merge(holds::routes())
        .merge(alerts::routes())
        .merge(local_entries::routes())
        .merge(hotlists::routes())
        .merge(search::routes())
        .merge(export::routes())
        .merge(retention::routes())
        .merge(pages)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The API's TLS configuration: rustls with ring, the certificate chain
/// and key from PEM files.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = alpr_shared::cert::pem_certificates(cert_pem)
        .context("the API certificate")?
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect::<Vec<_>>();
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in the API certificate file"
    );
    let key =
        <rustls::pki_types::PrivateKeyDer as rustls::pki_types::pem::PemObject>::from_pem_slice(
            key_pem,
        )
        .context("the API key")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the API certificate and key")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Connection and time limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub max_connections: usize,
    pub request_timeout: Duration,
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `app` over TLS on `listener` until `cancel` fires; then stop
/// accepting and let requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    limits: ApiLimits,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let timeout = limits.request_timeout;
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::Unavailable(format!(
                    "the request took longer than {} s",
                    timeout.as_secs()
                ))
                .into_response(),
            }
        },
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "API accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "API connection refused: too many connections");
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, req).await }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "API connection");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tasks.close();
    tasks.wait().await;
    info!("API stopped");
    Ok(())
}
