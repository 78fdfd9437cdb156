//! Routes for bulk hotlists ([`crate::hotlist`]):
//!
//! - `POST /api/v1/hotlists/{source}/import?format=&columns=&category=&force=`
//!   — the list file as the body (`application/octet-stream`, up to
//!   `hotlist.max_file_bytes`: this route only lifts the API's body limit);
//!   the [`ImportReport`]. Operators and supervisors
//!   ([`Permission::ManageLists`]); every attempt, refused ones too, is in
//!   the access log (`hotlist-import`) before the answer;
//! - `GET /api/v1/hotlists/{source}/import` — whether the caller may
//!   import into `source` (asked before uploading);
//! - `GET /api/v1/hotlists` — every source with its latest generation;
//! - `GET /api/v1/hotlists/{source}?plate=P` — one source, and the rows
//!   its latest generation lists for plate `P`;
//! - `GET /api/v1/hotlists/{source}/generations` — every generation
//!   imported, with who imported it and what changed.
//!
//! Lists are seen by whoever manages them or handles their alerts.

use alpr_shared::hotlist::generation::GenerationError;
use alpr_shared::hotlist::import::{Columns, Format};
use alpr_shared::hotlist::{Category, HotEntry};
use alpr_shared::log::AccessAction;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::hotlist::{GenerationView, HotlistError, ImportReport, ImportRequest, SourceView};
use crate::users::{Caller, Permission};

/// What an import takes beside the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportQuery {
    /// `ncic`, `ca-doj` or `csv`; the source's format when absent.
    pub format: Option<Format>,
    /// CSV column mapping, `HEADER=CODE,…`.
    pub columns: Option<String>,
    /// Category of every row of a `ca-doj` file (`stolen-vehicle`, …).
    pub category: Option<String>,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ShowQuery {
    pub plate: Option<String>,
}

/// `GET /api/v1/hotlists/{source}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceDetail {
    pub source: SourceView,
    /// The plate asked for, normalised, and the rows listing it.
    pub plate: Option<String>,
    pub entries: Vec<HotEntry>,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/hotlists", get(list))
        .route("/api/v1/hotlists/{source}", get(show))
        .route("/api/v1/hotlists/{source}/generations", get(generations))
        .route(
            "/api/v1/hotlists/{source}/import",
            // The file is read below with the configured limit.
            post(import)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .get(may_import),
        )
}

/// `GET /api/v1/hotlists/{source}/import`: whether the caller may import
/// into `source` (the source as it is now), asked before an upload: a
/// refusal answered before a large body is read reaches the uploader as a
/// broken connection, not as the reason.
pub(crate) async fn may_import(
    State(state): State<ApiState>,
    caller: Caller,
    Path(source): Path<String>,
) -> Result<Json<ImportReady>, ApiError> {
    caller.require(Permission::ManageLists)?;
    let hotlists = &state.hub.hotlists;
    let view = hotlists
        .sources()
        .into_iter()
        .find(|s| s.name == source)
        .ok_or_else(|| to_api(HotlistError::UnknownSource(source)))?;
    Ok(Json(ImportReady {
        source: view,
        max_file_bytes: hotlists.config().max_file_bytes as u64,
    }))
}

/// The answer to `GET /api/v1/hotlists/{source}/import`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReady {
    pub source: SourceView,
    /// Largest file the hub takes (`hotlist.max_file_bytes`).
    pub max_file_bytes: u64,
}

fn may_see(caller: &Caller) -> Result<(), ApiError> {
    if caller.role.may(Permission::HandleAlerts) {
        return Ok(());
    }
    caller.require(Permission::ManageLists)
}

fn to_api(e: HotlistError) -> ApiError {
    match e {
        HotlistError::UnknownSource(_) => ApiError::NotFound(e.to_string()),
        HotlistError::TooLarge { .. }
        | HotlistError::Parse(_)
        | HotlistError::Generation(GenerationError::Invalid(_)) => {
            ApiError::BadRequest(e.to_string())
        }
        HotlistError::Refused(_) => ApiError::Conflict(e.to_string()),
        HotlistError::Store(_) => ApiError::Unavailable(e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

pub(crate) async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    Path(source): Path<String>,
    Query(q): Query<ImportQuery>,
    body: axum::body::Body,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require(Permission::ManageLists)?;
    let hotlists = state.hub.hotlists.clone();
    let mut shown = source.clone();
    alpr_shared::log::access::cut(&mut shown, 64);
    let query = format!(
        "import {shown}{}{}",
        q.format.map(|f| format!(" format={f}")).unwrap_or_default(),
        if q.force { " forced" } else { "" }
    );
    let result = async {
        let columns = match &q.columns {
            Some(c) => Columns::parse(c).map_err(HotlistError::Parse)?,
            None => Columns::default(),
        };
        let category = match &q.category {
            Some(c) => Some(Category::from_name(c).ok_or_else(|| {
                HotlistError::Parse(alpr_shared::hotlist::import::ImportError::Invalid(format!(
                    "no category {c:?}"
                )))
            })?),
            None => None,
        };
        if hotlists.config().source(&source).is_none() {
            return Err(HotlistError::UnknownSource(source.clone()));
        }
        let max = hotlists.config().max_file_bytes;
        let file = axum::body::to_bytes(body, max)
            .await
            .map_err(|_| HotlistError::TooLarge { size: max + 1, max })?;
        let excluded = state
            .hub
            .policy
            .current()
            .policy()
            .hotlists
            .excluded_categories
            .clone();
        hotlists
            .import(
                ImportRequest {
                    source: source.clone(),
                    format: q.format,
                    columns,
                    category,
                    force: q.force,
                    user: caller.username.clone(),
                    excluded,
                },
                file.to_vec(),
            )
            .await
    }
    .await;
    let record = caller.record(
        AccessAction::HotlistImport,
        match &result {
            Ok(r) => format!(
                "{query}: generation {} of {} rows",
                r.record.info.number, r.record.info.rows
            ),
            Err(_) => query,
        },
    );
    state.logged(record, result, to_api).await
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    may_see(&caller)?;
    Ok(Json(state.hub.hotlists.sources()))
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(source): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<SourceDetail>, ApiError> {
    may_see(&caller)?;
    let hotlists = &state.hub.hotlists;
    let view = hotlists
        .sources()
        .into_iter()
        .find(|s| s.name == source)
        .ok_or_else(|| to_api(HotlistError::UnknownSource(source.clone())))?;
    let plate = q
        .plate
        .as_deref()
        .map(alpr_shared::hotlist::import::normalise_plate);
    let entries = match (&plate, hotlists.latest(&source)) {
        (Some(p), Some(g)) if !p.is_empty() => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || g.lookup(&p))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
        _ => Vec::new(),
    };
    Ok(Json(SourceDetail {
        source: view,
        plate,
        entries,
    }))
}

pub(crate) async fn generations(
    State(state): State<ApiState>,
    caller: Caller,
    Path(source): Path<String>,
) -> Result<Json<Vec<GenerationView>>, ApiError> {
    may_see(&caller)?;
    state
        .hub
        .hotlists
        .history(&source)
        .await
        .map(Json)
        .map_err(to_api)
}
