//! Routes for searching reads (policy 426.3, §1798.90.52):
//!
//! - `POST /api/v1/search` [`SearchRequest`] → [`SearchResults`];
//! - `POST /api/v1/read` [`ViewRequest`] → [`ReadDetail`] (one read with
//!   its images).
//!
//! Both need [`Permission::Search`], current training (the session checks
//! it), a purpose from the policy's list and a case number where the
//! policy asks for one. The search runs first, then its access record —
//! the data elements queried, who, for which agency, why, how many reads —
//! is made durable, and only then is anything returned. Every other end is
//! recorded too, with its reason: a refusal for want of a role or a
//! purpose, a query that cannot run, a search or view that failed, a view
//! of a read the hub does not hold.

use alpr_shared::control::SignedPolicy;
use alpr_shared::log::{AccessAction, AccessRecord};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::search::{ReadDetail, SearchError, SearchQuery, SearchResults};
use crate::users::{Caller, Permission};

/// Why a person searches: a purpose code from the policy and, where the
/// policy asks for one, a case number.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reason {
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub case: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: SearchQuery,
    #[serde(flatten)]
    pub reason: Reason,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewRequest {
    pub node: String,
    pub seq: u64,
    #[serde(flatten)]
    pub reason: Reason,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/search", post(search))
        .route("/api/v1/read", post(view))
}

/// The reason's refusal under `policy`, if it does not do.
pub fn refusal(policy: &SignedPolicy, reason: &Reason) -> Option<String> {
    let doc = policy.policy();
    let listed = || {
        doc.purposes
            .iter()
            .map(|p| p.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(code) = reason.purpose.as_deref().filter(|p| !p.trim().is_empty()) else {
        return Some(format!(
            "a purpose is required (§1798.90.52): one of {}",
            listed()
        ));
    };
    let Some(purpose) = doc.purpose(code) else {
        return Some(format!(
            "{code:?} is not a purpose in policy v{}: one of {}",
            doc.version,
            listed()
        ));
    };
    let has_case = reason.case.as_deref().is_some_and(|c| !c.trim().is_empty());
    if purpose.case_required && !has_case {
        return Some(format!(
            "purpose {code} needs a case number (policy v{}): give --case",
            doc.version
        ));
    }
    None
}

/// Refuse (and log the refusal) unless the caller may search with this
/// reason; the access record to complete otherwise.
pub(crate) async fn admit(
    state: &ApiState,
    caller: &Caller,
    action: AccessAction,
    query: String,
    reason: &Reason,
) -> Result<AccessRecord, ApiError> {
    let mut record = caller.record(action, query);
    record.purpose = reason.purpose.clone().filter(|p| !p.trim().is_empty());
    record.case = reason.case.clone().filter(|c| !c.trim().is_empty());
    let allowed = caller.require(Permission::Search).and_then(|()| {
        match refusal(&state.hub.policy.current(), reason) {
            Some(why) => Err(ApiError::BadRequest(why)),
            None => Ok(()),
        }
    });
    state.or_refuse(&record, allowed).await?;
    Ok(record)
}

fn failed(e: SearchError) -> ApiError {
    if e.is_bad_query() {
        ApiError::BadRequest(e.to_string())
    } else {
        ApiError::Unavailable(e.to_string())
    }
}

/// A query as the client sent it, for the record of one that cannot run.
fn as_sent(q: &SearchQuery) -> String {
    let mut s = serde_json::to_string(q).unwrap_or_default();
    alpr_shared::log::access::cut(&mut s, alpr_shared::log::access::MAX_QUERY_LEN);
    s
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<SearchRequest>,
) -> Result<Json<SearchResults>, ApiError> {
    let described = req.query.describe().map_err(failed);
    let what = described
        .as_ref()
        .map_or_else(|_| as_sent(&req.query), Clone::clone);
    let mut record = admit(&state, &caller, AccessAction::Search, what, &req.reason).await?;
    state.or_refuse(&record, described).await?;
    let searcher = state.search.clone();
    let results = tokio::task::spawn_blocking(move || searcher.search(&req.query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
        .and_then(|r| r.map_err(failed));
    let results = state.or_refuse(&record, results).await?;
    record.query = results.query.clone();
    record.results = u32::try_from(results.hits.len()).unwrap_or(u32::MAX);
    state.access.record(record).await?;
    Ok(Json(results))
}

pub(crate) async fn view(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<ViewRequest>,
) -> Result<Json<ReadDetail>, ApiError> {
    let what = format!("read={}#{}", req.node, req.seq);
    let mut record = admit(&state, &caller, AccessAction::View, what, &req.reason).await?;
    let searcher = state.search.clone();
    let (node, seq) = (req.node.clone(), req.seq);
    let detail = tokio::task::spawn_blocking(move || searcher.read(&node, seq))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
        .and_then(|r| r.map_err(failed))
        .and_then(|d| {
            d.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no read {}#{} with its content at the hub",
                    req.node, req.seq
                ))
            })
        });
    let detail = state.or_refuse(&record, detail).await?;
    record.query = format!("{} plate={}", record.query, detail.hit.plate);
    record.results = 1;
    state.access.record(record).await?;
    Ok(Json(detail))
}
