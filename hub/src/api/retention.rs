//! Routes for retention ([`crate::retention`]):
//!
//! - `GET /api/v1/retention` — administrators and auditors
//!   ([`Permission::ViewNodes`]): reads due now, reads kept under a hold,
//!   and the last run;
//! - `POST /api/v1/retention/run` — administrators
//!   ([`Permission::ManagePolicy`]): run it now;
//! - `GET /api/v1/audit/retention` — auditors ([`Permission::ReadAudits`]):
//!   every purge the hub signed (node, ranges, when), and reads overdue.
//!
//! Each is in the access log before it answers.

use alpr_shared::log::AccessAction;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::retention::{PurgeDone, RunReport};
use crate::users::{Caller, Permission};

/// `GET /api/v1/retention`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionStatus {
    pub retention_days: u32,
    /// How often the job runs (seconds).
    pub interval_s: u64,
    /// Reads past retention now, not under a hold: what the next run purges.
    pub due: u64,
    /// Reads past retention kept because a hold covers them.
    pub held: u64,
    /// The last run since the hub started, if any.
    pub last: Option<RunReport>,
}

/// `GET /api/v1/audit/retention`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionAudit {
    pub retention_days: u32,
    pub purges: Vec<PurgeDone>,
    /// Reads past retention, under no hold, still held by the hub.
    pub overdue: u64,
    pub held: u64,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/retention", get(status))
        .route("/api/v1/retention/run", post(run))
        .route("/api/v1/audit/retention", get(audit))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

pub(crate) async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<RetentionStatus>, ApiError> {
    caller.require(Permission::ViewNodes)?;
    let days = state.hub.policy.current().policy().hub_retention_days;
    let survey = state.retention.survey(days).await.map_err(unavailable)?;
    state
        .access
        .record(caller.record(AccessAction::AuditQuery, "retention status"))
        .await?;
    Ok(Json(RetentionStatus {
        retention_days: days,
        interval_s: state.retention_interval.as_secs(),
        due: survey.purged,
        held: survey.held,
        last: state.retention.last(),
    }))
}

pub(crate) async fn run(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<RunReport>, ApiError> {
    caller.require(Permission::ManagePolicy)?;
    let days = state.hub.policy.current().policy().hub_retention_days;
    // Recorded before the purge: the purge itself is in the hub's log too.
    state
        .access
        .record(caller.record(
            AccessAction::PolicyChange,
            format!("retention run ({days} days)"),
        ))
        .await?;
    let report = state.retention.run(days).await.map_err(unavailable)?;
    Ok(Json(report))
}

pub(crate) async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<RetentionAudit>, ApiError> {
    caller.require(Permission::ReadAudits)?;
    let days = state.hub.policy.current().policy().hub_retention_days;
    let survey = state.retention.survey(days).await.map_err(unavailable)?;
    let storage = state.hub.storage.clone();
    let purges = tokio::task::spawn_blocking(move || crate::retention::purges(&*storage))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    state
        .access
        .record(caller.record(AccessAction::AuditQuery, "retention audit"))
        .await?;
    Ok(Json(RetentionAudit {
        retention_days: days,
        purges,
        overdue: survey.purged,
        held: survey.held,
    }))
}
