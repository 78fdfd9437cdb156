//! Audit routes (policy 426.5(c), §1798.90.52):
//!
//! - `GET /api/v1/audit/bundle` — every node log the hub holds and its own
//!   log, as one `ALPR-LOG-BUNDLE2` the hub builds from its store and
//!   signs ([`crate::audit::bundle`]), streamed (`application/octet-stream`)
//!   ([`Permission::VerifyLogs`]); one access record per bundle, before
//!   the first byte (and another if it fails on the way);
//! - `GET /api/v1/audit/missing-images` — per node, the reads whose images
//!   the hub lacks ([`Permission::VerifyLogs`]);
//! - `GET /api/v1/audit/access?from=&to=&user=&plate=&purpose=&case=` —
//!   who accessed what, when and why, from the hub's access log and the
//!   nodes' access entries (index `node-access-v1`), with the searches
//!   that named no case number ([`Permission::ReadAudits`]);
//! - `GET /api/v1/audit/training?from=&to=` — users whose training lapsed
//!   in the window or is lapsed now, what they did before it lapsed, and
//!   any access after (a violation) ([`Permission::ReadAudits`]).
//!
//! A supervisor sees the rows of their own agency only. Running an audit
//! is itself recorded (`AuditQuery`) before the answer, and a refused or
//! failed one too.

use alpr_shared::log::{AccessAction, AccessOutcome, SignedEntry};
use alpr_shared::types::UnixMillis;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::users::{Caller, Permission, Role};

/// Most rows one audit answers.
pub const MAX_ROWS: usize = 100_000;
/// Most entries of a log page.
pub const MAX_PAGE: usize = 4096;

/// Most missing images counted per node.
pub const MAX_MISSING_LISTED: usize = 100_000;

/// Reads of one node whose images the hub does not hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MissingImagesReport {
    pub node: String,
    /// Distinct reads (sequence numbers) with at least one image missing.
    pub reads: u64,
    /// Images missing (capped at [`MAX_MISSING_LISTED`]).
    pub images: u64,
    /// The first few, (entry seq, image hash hex).
    pub first: Vec<(u64, String)>,
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
        .route("/api/v1/audit/bundle", get(bundle))
        .route("/api/v1/audit/missing-images", get(missing_images))
        .route("/api/v1/audit/access", get(access))
        .route("/api/v1/audit/training", get(training))
}

pub(crate) async fn bundle(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let record = caller.record(
        AccessAction::AuditQuery,
        "audit verify: every node log and the hub's, as a bundle the hub built and signed",
    );
    state
        .or_refuse(&record, caller.require(Permission::VerifyLogs))
        .await?;
    state.access.record(record.clone()).await?;
    let hub = state.hub.clone();
    let access = state.access.clone();
    let rt = tokio::runtime::Handle::current();
    let body = super::stream::blocking_body(move |out| {
        let signer = crate::audit::bundle::Signer::of(hub.keys());
        match crate::audit::bundle::write(hub.storage.as_ref(), signer, out) {
            Ok((_, w)) => {
                tracing::info!(
                    nodes = w.nodes,
                    entries = w.entries,
                    hub_entries = w.hub_entries,
                    "log bundle served"
                );
                Ok(())
            }
            Err(e) => {
                // The bundle was cut: that is in the access log too.
                let mut failed = record;
                failed.outcome = AccessOutcome::Refused {
                    reason: format!("the bundle failed on the way: {e}"),
                };
                if let Err(a) = rt.block_on(access.record(failed)) {
                    tracing::error!(error = %a, "a failed bundle could not be recorded");
                }
                Err(e.to_string())
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Per node, the reads whose images the hub lacks (nodes lacking none
/// are left out).
fn missing(hub: &crate::hub::Hub) -> Result<Vec<MissingImagesReport>, ApiError> {
    let unavailable = |e: crate::store::StoreError| ApiError::Unavailable(e.to_string());
    let mut out = Vec::new();
    for (device, rec) in hub.storage.nodes().map_err(unavailable)? {
        let m = hub
            .storage
            .missing_images(&device, 0, rec.next_seq, MAX_MISSING_LISTED)
            .map_err(unavailable)?;
        if m.images.is_empty() {
            continue;
        }
        let mut seqs: Vec<u64> = m.images.iter().map(|(s, _)| *s).collect();
        seqs.dedup();
        out.push(MissingImagesReport {
            node: device.to_string(),
            reads: seqs.len() as u64,
            images: m.images.len() as u64,
            first: m
                .images
                .iter()
                .take(10)
                .map(|(s, h)| (*s, h.to_hex()))
                .collect(),
        });
    }
    Ok(out)
}

pub(crate) async fn missing_images(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<MissingImagesReport>>, ApiError> {
    let mut record = caller.record(
        AccessAction::AuditQuery,
        "audit verify: reads whose images the hub lacks",
    );
    state
        .or_refuse(&record, caller.require(Permission::VerifyLogs))
        .await?;
    let hub = state.hub.clone();
    let found = tokio::task::spawn_blocking(move || missing(&hub))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
        .and_then(|r| r);
    let found = state.or_refuse(&record, found).await?;
    record.results = u32::try_from(found.len()).unwrap_or(u32::MAX);
    state.access.record(record).await?;
    Ok(Json(found))
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
    let record = caller.record(AccessAction::AuditQuery, describe(&q));
    state
        .or_refuse(&record, caller.require(Permission::ReadAudits))
        .await?;
    state.access.record(record.clone()).await?;
    let (from, to) = window(q.from, q.to);
    let st = state.clone();
    let found = tokio::task::spawn_blocking(move || accesses(&st, from, to))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
        .and_then(|r| r);
    let (rows, truncated) = state.or_refuse(&record, found).await?;
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
    let (from, to) = window(q.from, q.to);
    let record = caller.record(
        AccessAction::AuditQuery,
        format!("audit training from={from} to={to}"),
    );
    state
        .or_refuse(&record, caller.require(Permission::ReadAudits))
        .await?;
    state.access.record(record.clone()).await?;
    let now = UnixMillis::now();
    let st = state.clone();
    let found = tokio::task::spawn_blocking(move || accesses(&st, from, to))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
        .and_then(|r| r);
    let (rows, _) = state.or_refuse(&record, found).await?;
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
