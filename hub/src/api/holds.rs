//! Routes for legal holds ([`crate::holds`]), for operators and
//! supervisors ([`Permission::ManageHolds`]):
//!
//! - `POST /api/v1/holds` [`PlaceHold`] — place a hold; the hold as placed;
//! - `POST /api/v1/holds/{id}/release` [`ReleaseHold`] — release that hold
//!   only; the hold as released;
//! - `GET /api/v1/holds?all=true` — the holds in force (all with `all`);
//! - `GET /api/v1/holds/{id}` — one hold;
//! - `GET /api/v1/audit/holds` — every hold, placed and released, for
//!   auditors.
//!
//! Placing and releasing are in the access log (`hold`, `hold-release`),
//! refused attempts too, before the answer.

use alpr_shared::control::holds::{Hold, HoldScope};
use alpr_shared::control::holds_doc::HoldsDocError;
use alpr_shared::log::AccessAction;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, ListQuery};
use crate::holds::{HoldsError, NewHold};
use crate::users::{Caller, Permission};

/// Longest case number and reason accepted.
const MAX_TEXT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceHold {
    pub case: String,
    pub reason: String,
    pub scope: HoldScope,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseHold {
    pub reason: String,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/holds", get(list).post(place))
        .route("/api/v1/holds/{id}", get(show))
        .route("/api/v1/holds/{id}/release", post(release))
        .route("/api/v1/audit/holds", get(audit))
}

/// `GET /api/v1/audit/holds` — every hold, placed and released, with who
/// and when, for auditors ([`Permission::ReadAudits`]); the audit itself
/// is in the access log.
pub(crate) async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<Hold>>, ApiError> {
    caller.require(Permission::ReadAudits)?;
    state
        .access
        .record(caller.record(AccessAction::AuditQuery, "audit holds"))
        .await?;
    Ok(Json(state.hub.holds.holds()))
}

fn check_text(what: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("a hold needs a {what}")));
    }
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "the {what} must be at most {MAX_TEXT} bytes, without control characters"
        )));
    }
    Ok(())
}

fn describe(scope: &HoldScope) -> String {
    let mut parts = Vec::new();
    if !scope.plates.is_empty() {
        parts.push(format!("plates={}", scope.plates.join(",")));
    }
    if !scope.nodes.is_empty() {
        parts.push(format!("nodes={}", scope.nodes.join(",")));
    }
    if let Some(f) = scope.from {
        parts.push(format!("from={}", f.0));
    }
    if let Some(t) = scope.to {
        parts.push(format!("to={}", t.0));
    }
    if let Some(p) = scope.place {
        parts.push(format!("near={},{} r={}m", p.lat_e7, p.lon_e7, p.radius_m));
    }
    let mut s = parts.join(" ");
    alpr_shared::log::access::cut(
        &mut s,
        alpr_shared::log::access::MAX_QUERY_LEN.saturating_sub(64),
    );
    s
}

fn to_api(e: HoldsError) -> ApiError {
    match e {
        HoldsError::Doc(HoldsDocError::NoSuchHold(id)) => {
            ApiError::NotFound(format!("no hold {id}"))
        }
        HoldsError::Doc(HoldsDocError::AlreadyReleased(id)) => {
            ApiError::Conflict(format!("hold {id} is already released"))
        }
        HoldsError::Doc(e @ (HoldsDocError::EmptyScope | HoldsDocError::BadId(_))) => {
            ApiError::BadRequest(e.to_string())
        }
        e => ApiError::Unavailable(e.to_string()),
    }
}

pub(crate) async fn place(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<PlaceHold>,
) -> Result<Json<Hold>, ApiError> {
    caller.require(Permission::ManageHolds)?;
    check_text("case", &req.case)?;
    check_text("reason", &req.reason)?;
    let mut scope = req.scope;
    scope.normalise_plates();
    let query = describe(&scope);
    let result = state
        .hub
        .holds
        .add(NewHold {
            case: req.case.clone(),
            reason: req.reason,
            placed_by: caller.username.clone(),
            agency: caller.agency.clone(),
            scope,
        })
        .await;
    let mut record = caller.record(
        AccessAction::Hold,
        match &result {
            Ok(h) => format!("hold {} {query}", h.id),
            Err(_) => format!("hold {query}"),
        },
    );
    record.case = Some(req.case);
    state.logged(record, result, to_api).await
}

pub(crate) async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<ReleaseHold>,
) -> Result<Json<Hold>, ApiError> {
    caller.require(Permission::ManageHolds)?;
    check_text("reason", &req.reason)?;
    let case = state.hub.holds.get(&id).map(|h| h.case);
    let result = state
        .hub
        .holds
        .release(&id, &caller.username, &req.reason)
        .await;
    let mut shown = id.clone();
    alpr_shared::log::access::cut(&mut shown, 64);
    let mut record = caller.record(AccessAction::HoldRelease, format!("release hold {shown}"));
    record.case = case;
    state.logged(record, result, to_api).await
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Hold>>, ApiError> {
    caller.require(Permission::ManageHolds)?;
    let holds = state.hub.holds.holds();
    Ok(Json(if q.all {
        holds
    } else {
        holds.into_iter().filter(Hold::active).collect()
    }))
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Hold>, ApiError> {
    caller.require(Permission::ManageHolds)?;
    state
        .hub
        .holds
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no hold {id}")))
}
