//! Routes for alerts ([`crate::alerts`]), for officers, operators and
//! supervisors ([`Permission::HandleAlerts`]); covert alerts only for
//! supervisors:
//!
//! - `GET /api/v1/alerts?open=true&node=NAME` — alerts, newest first;
//! - `GET /api/v1/alerts/{node}/{seq}` — one alert with its read and
//!   dispositions (`GET /api/v1/hub-alerts/{n}`: a past match the hub
//!   found);
//! - `POST /api/v1/alerts/{node}/{seq}/dispose` [`DisposeRequest`] (and
//!   `POST /api/v1/hub-alerts/{n}/dispose`) — a dispatcher or supervisor
//!   records a disposition stage at the hub, under the rules an officer's
//!   stages keep ([`alpr_shared::log::alert::Progress::check`]), applied
//!   to the alert's stages from the node and the hub together; a stage
//!   the rules refuse is 409 with the rule.
//!
//! Each view is in the access log (`view`) before the answer; each stage
//! recorded at the hub is in it (`alert-disposition`) before it is stored.
//! A refused or failed one, or one of an alert that is not there (or is
//! covert to the caller), is recorded too, with the reason.

use alpr_shared::log::alert::{DispositionRecord, Stage};
use alpr_shared::log::{AccessAction, AccessOutcome};
use alpr_shared::types::{DeviceId, UnixMillis};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::alerts::{AlertDetail, AlertView};
use crate::store::{HubDisposition, HubStorage, WriteOp};
use crate::users::{Caller, Permission, Role};

/// Most alerts one list answers.
const MAX_LIST: usize = 10_000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub open: bool,
    pub node: Option<String>,
}

/// One disposition stage recorded at the hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisposeRequest {
    /// `read:correct|wrong-state|misread|dismissed`,
    /// `status:active|inactive`, `action:stop|no-stop|unable`.
    pub stage: String,
    #[serde(default)]
    pub note: String,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{node}/{seq}", get(show))
        .route("/api/v1/alerts/{node}/{seq}/dispose", post(dispose))
        .route("/api/v1/hub-alerts/{n}", get(show_hub))
        .route("/api/v1/hub-alerts/{n}/dispose", post(dispose_hub))
}

/// Covert alerts are for supervisors only.
fn sees_covert(caller: &Caller) -> bool {
    caller.role == Role::Supervisor
}

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// Which alert: one in a node's log, or a past match the hub found.
#[derive(Debug, Clone)]
enum AlertKey {
    Node(DeviceId, u64),
    Hub(u64),
}

impl AlertKey {
    fn id(&self) -> String {
        match self {
            AlertKey::Node(node, seq) => format!("{node}#{seq}"),
            AlertKey::Hub(n) => format!("hub#{n}"),
        }
    }

    /// The alert with its read, as the caller may see it (a covert alert
    /// is not found for one who may not see it).
    async fn load(&self, state: &ApiState, caller: &Caller) -> Result<AlertDetail, ApiError> {
        let storage = state.hub.storage.clone();
        let key = self.clone();
        let detail = tokio::task::spawn_blocking(move || key.find(storage.as_ref()))
            .await
            .map_err(storage_err)??;
        detail
            .filter(|d| sees_covert(caller) || !d.alert.covert)
            .ok_or_else(|| ApiError::NotFound(format!("no alert {}", self.id())))
    }

    fn find(&self, storage: &dyn HubStorage) -> Result<Option<AlertDetail>, ApiError> {
        match self {
            AlertKey::Node(node, seq) => {
                let Some(row) = storage.alert(node, *seq).map_err(storage_err)? else {
                    return Ok(None);
                };
                crate::alerts::detail(storage, &row).map_err(storage_err)
            }
            AlertKey::Hub(n) => {
                // Numbered from 1 in order: the newest is the last.
                let Some((_, a)) = storage
                    .hub_alerts(usize::MAX)
                    .map_err(storage_err)?
                    .into_iter()
                    .find(|(k, _)| k == n)
                else {
                    return Ok(None);
                };
                crate::alerts::hub_detail(storage, *n, &a).map_err(storage_err)
            }
        }
    }
}

fn node_key(node: &str, seq: u64) -> Result<AlertKey, ApiError> {
    let node =
        DeviceId::new(node).map_err(|e| ApiError::BadRequest(format!("node {node:?}: {e}")))?;
    Ok(AlertKey::Node(node, seq))
}

/// The alerts `caller` may see (covert ones for a supervisor only), newest
/// first, without an access record: for [`list`], and for the console's
/// live list after its first (logged) answer.
pub(crate) fn collect(
    storage: &dyn HubStorage,
    caller: &Caller,
    open: bool,
    node: Option<&DeviceId>,
) -> Result<Vec<AlertView>, ApiError> {
    let covert = sees_covert(caller);
    let rows: Vec<_> = storage
        .alerts(node, usize::MAX)
        .map_err(storage_err)?
        .into_iter()
        .filter(|r| covert || !r.covert)
        .collect();
    let newest: Vec<_> = rows.into_iter().rev().take(MAX_LIST).collect();
    let mut views = crate::alerts::views(storage, &newest).map_err(storage_err)?;
    // Past matches the hub found in the reads it holds.
    let hub_alerts = storage.hub_alerts(MAX_LIST).map_err(storage_err)?;
    if !hub_alerts.is_empty() {
        let mut stages: std::collections::HashMap<String, Vec<HubDisposition>> =
            std::collections::HashMap::new();
        for (id, d) in storage.hub_dispositions(None).map_err(storage_err)? {
            stages.entry(id).or_default().push(d);
        }
        for (n, a) in hub_alerts {
            if (covert || !a.record.covert) && node.is_none_or(|d| *d == a.node) {
                let mine = stages.remove(&format!("hub#{n}")).unwrap_or_default();
                views.push(crate::alerts::hub_view(n, &a, mine));
            }
        }
    }
    // Open: after the node's and the hub's stages are combined.
    views.retain(|v| !open || v.open);
    views.sort_by_key(|v| std::cmp::Reverse(v.raised_at));
    Ok(views)
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
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
    let node = caller.require(Permission::HandleAlerts).and_then(|()| {
        q.node
            .as_deref()
            .map(|n| DeviceId::new(n).map_err(|e| ApiError::BadRequest(format!("node {n:?}: {e}"))))
            .transpose()
    });
    let node = state.or_refuse(&record, node).await?;
    let storage = state.hub.storage.clone();
    let who = caller.clone();
    let open = q.open;
    let views =
        tokio::task::spawn_blocking(move || collect(storage.as_ref(), &who, open, node.as_ref()))
            .await
            .map_err(storage_err)
            .and_then(|r| r);
    let views = state.or_refuse(&record, views).await?;
    record.results = u32::try_from(views.len()).unwrap_or(u32::MAX);
    state.access.record(record).await?;
    Ok(Json(views))
}

/// One alert (`id` as asked, `key` if it names one), with its access
/// record.
async fn show_key(
    state: &ApiState,
    caller: &Caller,
    id: String,
    key: Result<AlertKey, ApiError>,
) -> Result<Json<AlertDetail>, ApiError> {
    let mut record = caller.record(AccessAction::View, format!("alert {id}"));
    let key = caller.require(Permission::HandleAlerts).and(key);
    let key = state.or_refuse(&record, key).await?;
    let detail = key.load(state, caller).await;
    let detail = state.or_refuse(&record, detail).await?;
    record.query = format!(
        "alert {} read {}#{} plate={}",
        key.id(),
        detail.alert.node,
        detail.alert.read_seq,
        detail.alert.matched_text
    );
    record.results = 1;
    state.access.record(record).await?;
    Ok(Json(detail))
}

/// A past match the hub found (`hub#N`), with the read it matched.
pub(crate) async fn show_hub(
    State(state): State<ApiState>,
    caller: Caller,
    Path(n): Path<u64>,
) -> Result<Json<AlertDetail>, ApiError> {
    show_key(&state, &caller, format!("hub#{n}"), Ok(AlertKey::Hub(n))).await
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((node, seq)): Path<(String, u64)>,
) -> Result<Json<AlertDetail>, ApiError> {
    let key = node_key(&node, seq);
    show_key(&state, &caller, format!("{node}#{seq}"), key).await
}

/// Record a stage of an alert in a node's log, at the hub; the alert as
/// it now stands.
pub(crate) async fn dispose(
    State(state): State<ApiState>,
    caller: Caller,
    Path((node, seq)): Path<(String, u64)>,
    Json(req): Json<DisposeRequest>,
) -> Result<Json<AlertDetail>, ApiError> {
    let key = node_key(&node, seq);
    dispose_key(&state, &caller, format!("{node}#{seq}"), key, req).await
}

/// Record a stage of a past match the hub found (`hub#N`).
pub(crate) async fn dispose_hub(
    State(state): State<ApiState>,
    caller: Caller,
    Path(n): Path<u64>,
    Json(req): Json<DisposeRequest>,
) -> Result<Json<AlertDetail>, ApiError> {
    dispose_key(
        &state,
        &caller,
        format!("hub#{n}"),
        Ok(AlertKey::Hub(n)),
        req,
    )
    .await
}

/// One disposition at a time at this hub: the check of the rules and the
/// store of the stage it allowed are one step (two dispatchers pressing
/// at once get one stage each, in order, or a refusal).
static DISPOSING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn dispose_key(
    state: &ApiState,
    caller: &Caller,
    id: String,
    key: Result<AlertKey, ApiError>,
    req: DisposeRequest,
) -> Result<Json<AlertDetail>, ApiError> {
    let record = caller.record(
        AccessAction::AlertDisposition,
        format!("alert {id} stage {}", req.stage),
    );
    let checked = caller
        .require(Permission::HandleAlerts)
        .and(key)
        .and_then(|key| {
            let stage = crate::alerts::parse_stage(&req.stage).ok_or_else(|| {
                let names: Vec<String> = alpr_shared::log::alert::Stage::ALL
                    .into_iter()
                    .map(crate::alerts::stage_name)
                    .collect();
                ApiError::BadRequest(format!(
                    "{:?} is not a disposition stage: one of {}",
                    req.stage,
                    names.join(", ")
                ))
            })?;
            DispositionRecord {
                alert_seq: 0,
                stage,
                user: caller.username.clone(),
                agency: caller.agency.clone(),
                note: req.note.trim().to_owned(),
            }
            .validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            Ok((key, stage))
        });
    let (key, stage) = state.or_refuse(&record, checked).await?;
    let note = req.note.trim().to_owned();

    let _one_at_a_time = DISPOSING.lock().await;
    let detail = key.load(state, caller).await;
    let detail = state.or_refuse(&record, detail).await?;
    let id = key.id();
    let what = |stage: Stage| {
        format!(
            "alert {id} read {}#{} plate={} stage {stage}",
            detail.alert.node, detail.alert.read_seq, detail.alert.matched_text
        )
    };
    if let Err(rule) = detail.alert.progress.check(stage) {
        let message = format!("alert {id}: {rule} (now {})", detail.alert.status);
        let mut record = caller.record(AccessAction::AlertDisposition, what(stage));
        record.outcome = AccessOutcome::refused(rule);
        state.access.record(record).await?;
        return Err(ApiError::Conflict(message));
    }
    let mut record = caller.record(AccessAction::AlertDisposition, what(stage));
    record.results = 1;
    let signed = state.access.record(record).await?;
    let disposition = HubDisposition {
        at: UnixMillis::now(),
        stage,
        user: caller.username.clone(),
        agency: caller.agency.clone(),
        note,
        access_seq: signed.seq(),
    };
    let storage = state.hub.storage.clone();
    let op = WriteOp::HubDisposition {
        alert: id,
        disposition,
    };
    tokio::task::spawn_blocking(move || storage.commit(vec![op]))
        .await
        .map_err(storage_err)?
        .map_err(storage_err)?;
    Ok(Json(key.load(state, caller).await?))
}
