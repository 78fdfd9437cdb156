//! Routes for searching reads (policy 426.3, §1798.90.52):
//!
//! - `POST /api/v1/search` [`SearchRequest`] → [`SearchResults`];
//! - `POST /api/v1/read` [`ViewRequest`] → [`ReadDetail`] (one read with
//!   its images).
//!
//! Both need [`Permission::Search`], current training (the session checks
//! it), a purpose from the policy's list and a case number where the
//! policy asks for one. A refusal for want of them is logged too. The
//! search runs first, then its access record — the data elements queried,
//! who, for which agency, why, how many reads — is made durable, and only
//! then is anything returned.

use alpr_shared::control::SignedPolicy;
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
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
    let refused = match caller.require(Permission::Search) {
        Err(e) => Some((e.to_string(), e)),
        Ok(()) => refusal(&state.hub.policy.current(), reason)
            .map(|why| (why.clone(), ApiError::BadRequest(why))),
    };
    if let Some((why, err)) = refused {
        let mut r = record;
        r.outcome = AccessOutcome::Refused { reason: why };
        state.access.record(r).await?;
        return Err(err);
    }
    Ok(record)
}

fn failed(e: SearchError) -> ApiError {
    if e.is_bad_query() {
        ApiError::BadRequest(e.to_string())
    } else {
        ApiError::Unavailable(e.to_string())
    }
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<SearchRequest>,
) -> Result<Json<SearchResults>, ApiError> {
    let described = req.query.describe().map_err(failed)?;
    let mut record = admit(
        &state,
        &caller,
        AccessAction::Search,
        described,
        &req.reason,
    )
    .await?;
    let searcher = state.search.clone();
    let results = tokio::task::spawn_blocking(move || searcher.search(&req.query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(failed)?;
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
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(failed)?;
    let Some(detail) = detail else {
        return Err(ApiError::NotFound(format!(
            "no read {}#{} with its content at the hub",
            req.node, req.seq
        )));
    };
    record.query = format!("{} plate={}", record.query, detail.hit.plate);
    record.results = 1;
    state.access.record(record).await?;
    Ok(Json(detail))
}
