//! Routes for the policy document ([`crate::policy`]):
//!
//! - `GET /api/v1/policy` — the signed policy in force (any user: officers
//!   need its purposes; it holds no read data, and password hashes are
//!   left out of the summary);
//! - `POST /api/v1/policy` [`PolicySettings`] — administrators
//!   ([`Permission::ManagePolicy`]): the next version, signed and pushed to
//!   every edge; an invalid change is refused with the reason and changes
//!   nothing. Either way the attempt is in the access log.

use alpr_shared::log::{AccessAction, AccessOutcome};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::policy::{PolicyError, PolicySettings};
use crate::users::{Caller, Permission};

/// The policy as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyReply {
    /// Hex of the encoded [`alpr_shared::control::SignedPolicy`], signed
    /// by the hub.
    pub signed: String,
    /// For people and scripts ([`crate::policy::summary`]).
    pub summary: serde_json::Value,
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/policy", get(show).post(set))
}

fn reply(p: &alpr_shared::control::SignedPolicy) -> PolicyReply {
    PolicyReply {
        signed: hex::encode(p.encode()),
        summary: crate::policy::summary(p),
    }
}

pub(crate) async fn show(State(state): State<ApiState>, _caller: Caller) -> Json<PolicyReply> {
    Json(reply(&state.hub.policy.current()))
}

pub(crate) async fn set(
    State(state): State<ApiState>,
    caller: Caller,
    Json(settings): Json<PolicySettings>,
) -> Result<Json<PolicyReply>, ApiError> {
    caller.require(Permission::ManagePolicy)?;
    let from = state.hub.policy.current().version();
    let result = state.hub.policy.update(settings).await;
    let mut record = caller.record(
        AccessAction::PolicyChange,
        format!(
            "policy v{from} -> {}",
            match &result {
                Ok(p) => format!("v{}", p.version()),
                Err(_) => "unchanged".into(),
            }
        ),
    );
    if let Err(e) = &result {
        record.outcome = AccessOutcome::refused(e);
    }
    state.access.record(record).await?;
    match result {
        Ok(p) => Ok(Json(reply(&p))),
        Err(PolicyError::Refused(e)) => Err(ApiError::BadRequest(format!(
            "{e}; the policy is unchanged at version {from}"
        ))),
        Err(PolicyError::Config(e)) => Err(ApiError::BadRequest(format!(
            "{e}; the policy is unchanged at version {from}"
        ))),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}
