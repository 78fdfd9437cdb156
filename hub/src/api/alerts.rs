//! Routes for alerts ([`crate::alerts`]), for officers, operators and
//! supervisors ([`Permission::HandleAlerts`]); covert alerts only for
//! supervisors:
//!
//! - `GET /api/v1/alerts?open=true&node=NAME` — alerts, newest first;
//! - `GET /api/v1/alerts/{node}/{seq}` — one alert with its read and
//!   dispositions.
//!
//! Each view is in the access log (`view`) before the answer.

use alpr_shared::log::AccessAction;
use alpr_shared::types::DeviceId;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::alerts::{AlertDetail, AlertView};
use crate::users::{Caller, Permission, Role};

/// Most alerts one list answers.
const MAX_LIST: usize = 10_000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub open: bool,
    pub node: Option<String>,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{node}/{seq}", get(show))
        .route("/api/v1/hub-alerts/{n}", get(show_hub))
}

/// Covert alerts are for supervisors only.
fn sees_covert(caller: &Caller) -> bool {
    caller.role == Role::Supervisor
}

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    caller.require(Permission::HandleAlerts)?;
    let node = match &q.node {
        Some(n) => Some(
            DeviceId::new(n.as_str())
                .map_err(|e| ApiError::BadRequest(format!("node {n:?}: {e}")))?,
        ),
        None => None,
    };
    let storage = state.hub.storage.clone();
    let covert = sees_covert(&caller);
    let open = q.open;
    let views = tokio::task::spawn_blocking(move || -> Result<Vec<AlertView>, ApiError> {
        let rows: Vec<_> = storage
            .alerts(node.as_ref(), usize::MAX)
            .map_err(storage_err)?
            .into_iter()
            .filter(|r| covert || !r.covert)
            .filter(|r| !open || !r.progress.closed())
            .collect();
        let newest: Vec<_> = rows.into_iter().rev().take(MAX_LIST).collect();
        let mut views = crate::alerts::views(storage.as_ref(), &newest).map_err(storage_err)?;
        // Past matches the hub found in the reads it holds.
        for (n, a) in storage.hub_alerts(MAX_LIST).map_err(storage_err)? {
            if (covert || !a.record.covert) && node.as_ref().is_none_or(|d| *d == a.node) {
                views.push(crate::alerts::hub_view(n, &a));
            }
        }
        Ok(views)
    })
    .await
    .map_err(storage_err)??;
    let mut views = views;
    views.sort_by_key(|v| std::cmp::Reverse(v.raised_at));
    let mut record = caller.record(
        AccessAction::View,
        format!(
            "alerts{}{}",
            if q.open { " open" } else { "" },
            q.node
                .as_deref()
                .map(|n| format!(" node={n}"))
                .unwrap_or_default()
        ),
    );
    record.results = u32::try_from(views.len()).unwrap_or(u32::MAX);
    state.access.record(record).await?;
    Ok(Json(views))
}

/// A past match the hub found (`hub#N`), with the read it matched.
pub(crate) async fn show_hub(
    State(state): State<ApiState>,
    caller: Caller,
    Path(n): Path<u64>,
) -> Result<Json<AlertDetail>, ApiError> {
    caller.require(Permission::HandleAlerts)?;
    let storage = state.hub.storage.clone();
    let detail = tokio::task::spawn_blocking(move || -> Result<Option<AlertDetail>, ApiError> {
        // Numbered from 1 in order: the newest is the last.
        let Some((_, a)) = storage
            .hub_alerts(usize::MAX)
            .map_err(storage_err)?
            .into_iter()
            .find(|(k, _)| *k == n)
        else {
            return Ok(None);
        };
        crate::alerts::hub_detail(storage.as_ref(), n, &a).map_err(storage_err)
    })
    .await
    .map_err(storage_err)??;
    let detail = detail
        .filter(|d| sees_covert(&caller) || !d.alert.covert)
        .ok_or_else(|| ApiError::NotFound(format!("no alert hub#{n}")))?;
    let mut record = caller.record(
        AccessAction::View,
        format!(
            "alert hub#{n} read {}#{} plate={}",
            detail.alert.node, detail.alert.read_seq, detail.alert.matched_text
        ),
    );
    record.results = 1;
    state.access.record(record).await?;
    Ok(Json(detail))
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((node, seq)): Path<(String, u64)>,
) -> Result<Json<AlertDetail>, ApiError> {
    caller.require(Permission::HandleAlerts)?;
    let node = DeviceId::new(node.as_str())
        .map_err(|e| ApiError::BadRequest(format!("node {node:?}: {e}")))?;
    let storage = state.hub.storage.clone();
    let id = format!("{node}#{seq}");
    let detail = tokio::task::spawn_blocking(move || -> Result<Option<AlertDetail>, ApiError> {
        let Some(row) = storage.alert(&node, seq).map_err(storage_err)? else {
            return Ok(None);
        };
        crate::alerts::detail(storage.as_ref(), &row).map_err(storage_err)
    })
    .await
    .map_err(storage_err)??;
    let detail = detail
        .filter(|d| sees_covert(&caller) || !d.alert.covert)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let mut record = caller.record(
        AccessAction::View,
        format!(
            "alert {id} read {} plate={}",
            detail.alert.read_seq, detail.alert.matched_text
        ),
    );
    record.results = 1;
    state.access.record(record).await?;
    Ok(Json(detail))
}
