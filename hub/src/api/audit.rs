//! Audit routes (policy 426.5(c), §1798.90.52):
//!
//! - `GET /api/v1/audit/hub-log?from=&limit=` — a page of the hub's own
//!   access log with the hub's certificate, to re-verify it from the CA
//!   ([`Permission::VerifyLogs`]);
//! - `GET /api/v1/audit/access?from=&to=&user=&plate=&purpose=&case=` —
//!   who accessed what, when and why, from the hub's access log and the
//!   nodes' access entries (index `node-access-v1`), with the searches
//!   that named no case number ([`Permission::ReadAudits`]);
//! - `GET /api/v1/audit/training?from=&to=` — users whose training lapsed
//!   in the window or is lapsed now, what they did before it lapsed, and
//!   any access after (a violation) ([`Permission::ReadAudits`]).
//!
//! A supervisor sees the rows of their own agency only. Running an audit
//! is itself recorded (`AuditQuery`) before the answer.

use alpr_shared::log::{AccessAction, AccessOutcome, SignedEntry};
use alpr_shared::types::UnixMillis;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::users::{Caller, Permission, Role};

/// Most rows one audit answers.
pub const MAX_ROWS: usize = 100_000;
/// Most entries of a log page.
pub const MAX_PAGE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubLogQuery {
    pub from: u64,
    pub limit: u32,
}

/// A page of the hub's access log. Bytes are hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubLogPage {
    /// The certificate (DER) of the hub's log key, which signs the log.
    pub hub_certificate: String,
    /// The log's size when the page was read.
    pub size: u64,
    /// Canonical entries from `from`, in order.
    pub entries: Vec<String>,
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessQuery {
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub user: Option<String>,
    pub plate: Option<String>,
    pub purpose: Option<String>,
    pub case: Option<String>,
}

/// One access, as an audit shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessRow {
    pub time: UnixMillis,
    /// The node that served the access (and signed its record).
    pub node: String,
    pub seq: u64,
    pub user: String,
    pub agency: String,
    pub action: String,
    pub purpose: Option<String>,
    pub case: Option<String>,
    pub query: String,
    pub results: u32,
    /// `allowed`, or `refused: why`.
    pub outcome: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessAudit {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub rows: Vec<AccessRow>,
    /// Searches answered in the window that named no case number.
    pub searches_without_case: Vec<AccessRow>,
    /// True when more rows matched than [`MAX_ROWS`].
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainingQuery {
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LapsedUser {
    pub username: String,
    pub agency: String,
    pub role: Role,
    pub training_expires: String,
    pub lapsed_now: bool,
    /// Their accesses in the window before the lapse.
    pub before: Vec<AccessRow>,
    /// Accesses allowed after the lapse: violations.
    pub after_lapse: Vec<AccessRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingAudit {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub users: Vec<LapsedUser>,
    /// Total accesses allowed after a lapse (should be 0).
    pub violations: u64,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/audit/hub-log", get(hub_log))
        .route("/api/v1/audit/access", get(access))
        .route("/api/v1/audit/training", get(training))
}

pub(crate) async fn hub_log(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<HubLogQuery>,
) -> Result<Json<HubLogPage>, ApiError> {
    caller.require(Permission::VerifyLogs)?;
    if q.from == 0 {
        state
            .access
            .record(caller.record(AccessAction::AuditQuery, "audit verify hub access log"))
            .await?;
    }
    let hub = state.hub.clone();
    let limit = (q.limit as usize).clamp(1, MAX_PAGE);
    let page = tokio::task::spawn_blocking(move || -> Result<HubLogPage, ApiError> {
        let (size, _) = hub
            .storage
            .hub_access_head()
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let entries = hub
            .storage
            .hub_access_entries(q.from, limit)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let end = q.from + entries.len() as u64;
        Ok(HubLogPage {
            hub_certificate: hex::encode(&hub.keys.log_cert.der),
            size,
            next: (!entries.is_empty() && end < size).then_some(end),
            entries: entries.into_iter().map(hex::encode).collect(),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(page))
}

fn row(node: &str, e: &SignedEntry) -> Option<AccessRow> {
    let r = e.access()?;
    Some(AccessRow {
        time: e.header.captured_at,
        node: node.to_owned(),
        seq: e.seq(),
        user: r.user.clone(),
        agency: r.agency.clone(),
        action: r.action.to_string(),
        purpose: r.purpose.clone(),
        case: r.case.clone(),
        query: r.query.clone(),
        results: r.results,
        outcome: match &r.outcome {
            AccessOutcome::Allowed => "allowed".into(),
            AccessOutcome::Refused { reason } => format!("refused: {reason}"),
        },
        source: r.source.clone(),
    })
}

/// Every access in [from, to] (hub and nodes), time order; and whether
/// there were more than [`MAX_ROWS`].
fn accesses(
    state: &ApiState,
    from: UnixMillis,
    to: UnixMillis,
) -> Result<(Vec<AccessRow>, bool), ApiError> {
    let storage = &state.hub.storage;
    let unavailable = |e: crate::store::StoreError| ApiError::Unavailable(e.to_string());
    let hub_name = state.access.device().to_string();
    let mut rows = Vec::new();
    let mut next = 0u64;
    loop {
        let page = storage
            .hub_access_entries(next, MAX_PAGE)
            .map_err(unavailable)?;
        for b in &page {
            let e = SignedEntry::decode(b).map_err(|e| ApiError::Internal(e.to_string()))?;
            let t = e.header.captured_at;
            if t >= from && t <= to {
                rows.extend(row(&hub_name, &e));
            }
        }
        if page.len() < MAX_PAGE {
            break;
        }
        next += page.len() as u64;
    }
    for (device, seq) in storage
        .node_accesses(from, to, MAX_ROWS + 1)
        .map_err(unavailable)?
    {
        let Some(b) = storage
            .entries(&device, seq, 1)
            .map_err(unavailable)?
            .into_iter()
            .next()
        else {
            continue;
        };
        let e = SignedEntry::decode(&b).map_err(|e| ApiError::Internal(e.to_string()))?;
        if e.seq() == seq {
            rows.extend(row(device.as_str(), &e));
        }
    }
    rows.sort_by_key(|r| r.time);
    let truncated = rows.len() > MAX_ROWS;
    rows.truncate(MAX_ROWS);
    Ok((rows, truncated))
}

/// The window asked for: from the beginning, to now, by default.
fn window(from: Option<UnixMillis>, to: Option<UnixMillis>) -> (UnixMillis, UnixMillis) {
    (
        from.unwrap_or(UnixMillis(0)),
        to.unwrap_or_else(UnixMillis::now),
    )
}

fn describe(q: &AccessQuery) -> String {
    let mut s = String::from("audit access");
    let (f, t) = window(q.from, q.to);
    s.push_str(&format!(" from={f} to={t}"));
    for (k, v) in [
        ("user", &q.user),
        ("plate", &q.plate),
        ("purpose", &q.purpose),
        ("case", &q.case),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s.chars().take(1000).collect()
}

pub(crate) async fn access(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<AccessQuery>,
) -> Result<Json<AccessAudit>, ApiError> {
    caller.require(Permission::ReadAudits)?;
    state
        .access
        .record(caller.record(AccessAction::AuditQuery, describe(&q)))
        .await?;
    let (from, to) = window(q.from, q.to);
    let st = state.clone();
    let (rows, truncated) = tokio::task::spawn_blocking(move || accesses(&st, from, to))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    // Plates compare folded (case and OCR-confusable characters alike).
    let fold = |t: &str| alpr_shared::search::fold_plate(&t.to_ascii_uppercase());
    let plate = q.plate.as_deref().map(fold);
    let rows: Vec<AccessRow> = rows
        .into_iter()
        .filter(|r| caller.role != Role::Supervisor || r.agency == caller.agency)
        .filter(|r| q.user.as_ref().is_none_or(|u| &r.user == u))
        .filter(|r| {
            q.purpose
                .as_ref()
                .is_none_or(|p| r.purpose.as_ref() == Some(p))
        })
        .filter(|r| q.case.as_ref().is_none_or(|c| r.case.as_ref() == Some(c)))
        .filter(|r| {
            // An audit naming a plate is not an access to its reads.
            plate.as_ref().is_none_or(|p| {
                r.action != AccessAction::AuditQuery.as_str() && fold(&r.query).contains(p.as_str())
            })
        })
        .collect();
    let searches_without_case = rows
        .iter()
        .filter(|r| {
            r.action == AccessAction::Search.as_str() && r.case.is_none() && r.outcome == "allowed"
        })
        .cloned()
        .collect();
    Ok(Json(AccessAudit {
        from,
        to,
        rows,
        searches_without_case,
        truncated,
    }))
}

pub(crate) async fn training(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<TrainingQuery>,
) -> Result<Json<TrainingAudit>, ApiError> {
    caller.require(Permission::ReadAudits)?;
    let (from, to) = window(q.from, q.to);
    state
        .access
        .record(caller.record(
            AccessAction::AuditQuery,
            format!("audit training from={from} to={to}"),
        ))
        .await?;
    let now = UnixMillis::now();
    let st = state.clone();
    let (rows, _) = tokio::task::spawn_blocking(move || accesses(&st, from, to))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut users = Vec::new();
    let mut violations = 0u64;
    for u in state.users.list()? {
        if caller.role == Role::Supervisor && u.agency != caller.agency {
            continue;
        }
        let exp = u.training_expires;
        let lapsed_now = exp <= now;
        if !(lapsed_now || (exp >= from && exp <= to)) {
            continue;
        }
        let mine = rows.iter().filter(|r| r.user == u.username);
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for r in mine {
            if r.time < exp {
                before.push(r.clone());
            } else if r.outcome == "allowed" {
                after.push(r.clone());
            }
        }
        violations += after.len() as u64;
        users.push(LapsedUser {
            username: u.username.clone(),
            agency: u.agency.clone(),
            role: u.role,
            training_expires: crate::users::date(exp),
            lapsed_now,
            before,
            after_lapse: after,
        });
    }
    Ok(Json(TrainingAudit {
        from,
        to,
        users,
        violations,
    }))
}
