//! Routes for local hotlist entries ([`crate::hotlist::local`]):
//!
//! - `POST /api/v1/hotlist/local` [`EntryFields`] (plate and reason
//!   required) — add an entry; the entry as added;
//! - `POST /api/v1/hotlist/local/{id}` [`EntryFields`] — change the given
//!   fields; the entry as edited;
//! - `POST /api/v1/hotlist/local/{id}/remove` [`RemoveEntry`] — remove it
//!   for good; the entry as removed;
//! - `GET /api/v1/hotlist/local?all=true` — the active entries (all with
//!   `all`: removed and expired ones until compaction drops them);
//! - `GET /api/v1/hotlist/local/{id}` — one entry.
//!
//! Who may: operators and supervisors manage every entry
//! ([`Permission::ManageLists`]). Officers ([`Permission::HandleAlerts`])
//! may add entries — an officer at a scene enters the partial plate — and
//! list them, and may edit or remove only the entries they added
//! themselves. Every call, refused ones too, is in the access log
//! (`hotlist-add`, `hotlist-edit`, `hotlist-remove`, `hotlist-list`)
//! before the answer.

use alpr_shared::hotlist::local::{EntryFields, LocalDocError};
use alpr_shared::hotlist::LocalEntry;
use alpr_shared::log::{access, AccessAction};
use alpr_shared::types::UnixMillis;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, ListQuery};
use crate::hotlist::local::LocalEntriesError;
use crate::users::{Caller, Permission};

/// Longest removal reason accepted.
const MAX_TEXT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveEntry {
    pub reason: String,
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/hotlist/local", get(list).post(add))
        .route("/api/v1/hotlist/local/{id}", get(show).post(edit))
        .route("/api/v1/hotlist/local/{id}/remove", post(remove))
}

/// Operators and supervisors, or officers.
fn may_see(caller: &Caller) -> Result<(), ApiError> {
    if caller.role.may(Permission::ManageLists) {
        return Ok(());
    }
    caller.require(Permission::HandleAlerts)
}

/// Operators and supervisors any entry; officers only their own.
fn may_change(caller: &Caller, entry: Option<&LocalEntry>) -> Result<(), ApiError> {
    if caller.role.may(Permission::ManageLists) {
        return Ok(());
    }
    caller.require(Permission::HandleAlerts)?;
    match entry {
        Some(e) if e.author == caller.username => Ok(()),
        Some(_) => Err(ApiError::Forbidden(format!(
            "{} ({}) may change only the entries they added",
            caller.username, caller.role
        ))),
        None => Ok(()),
    }
}

fn describe(f: &EntryFields) -> String {
    let mut parts = Vec::new();
    let mut text = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    };
    text("plate", &f.plate);
    text("state", &f.state);
    text("case", &f.case);
    text("reason", &f.reason);
    if let Some(c) = f.category {
        parts.push(format!("category={c}"));
    }
    if let Some(t) = f.expires_at {
        parts.push(format!("expires={}", t.0));
    }
    let mut s = parts.join(" ");
    bound(&mut s);
    s
}

fn bound(s: &mut String) {
    access::cut(s, access::MAX_QUERY_LEN.saturating_sub(80));
}

fn shown(id: &str) -> String {
    id.chars().take(64).collect()
}

fn to_api(e: LocalEntriesError) -> ApiError {
    match e {
        LocalEntriesError::Doc(LocalDocError::NoSuchEntry(id)) => {
            ApiError::NotFound(format!("no local entry {id}"))
        }
        LocalEntriesError::Doc(
            e @ (LocalDocError::Removed(_) | LocalDocError::Exists(_) | LocalDocError::Expired(_)),
        ) => ApiError::Conflict(e.to_string()),
        LocalEntriesError::Doc(
            e @ (LocalDocError::BadId(_)
            | LocalDocError::BadPlate(..)
            | LocalDocError::BadState(_)
            | LocalDocError::TooLong(_)
            | LocalDocError::Missing
            | LocalDocError::ExpiryPast
            | LocalDocError::NoChange
            | LocalDocError::TooLarge(_)),
        ) => ApiError::BadRequest(e.to_string()),
        e => ApiError::Unavailable(e.to_string()),
    }
}

pub(crate) async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<EntryFields>,
) -> Result<Json<LocalEntry>, ApiError> {
    may_see(&caller)?;
    let query = describe(&req);
    let case = req.case.clone().filter(|c| !c.is_empty());
    let rules = state.hub.policy.current().policy().hotlists.clone();
    let result = state
        .hub
        .local_entries
        .add(req, &caller.username, &caller.agency, &rules)
        .await;
    let mut record = caller.record(
        AccessAction::HotlistAdd,
        match &result {
            Ok(e) => format!("add {} {query}", e.id),
            Err(_) => format!("add {query}"),
        },
    );
    record.case = case;
    state.logged(record, result, to_api).await
}

pub(crate) async fn edit(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<EntryFields>,
) -> Result<Json<LocalEntry>, ApiError> {
    let current = state.hub.local_entries.get(&id);
    may_change(&caller, current.as_ref())?;
    let mut query = format!("edit {} {}", shown(&id), describe(&req));
    bound(&mut query);
    let rules = state.hub.policy.current().policy().hotlists.clone();
    let result = state
        .hub
        .local_entries
        .edit_entry(&id, req, &caller.username, &rules)
        .await;
    let mut record = caller.record(AccessAction::HotlistEdit, query);
    record.case = current.map(|e| e.case).filter(|c| !c.is_empty());
    state.logged(record, result, to_api).await
}

pub(crate) async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<RemoveEntry>,
) -> Result<Json<LocalEntry>, ApiError> {
    let current = state.hub.local_entries.get(&id);
    may_change(&caller, current.as_ref())?;
    if req.reason.trim().is_empty()
        || req.reason.len() > MAX_TEXT
        || req.reason.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "a removal needs a reason of at most {MAX_TEXT} bytes, without control characters"
        )));
    }
    let result = state
        .hub
        .local_entries
        .remove(&id, &caller.username, &req.reason)
        .await;
    let mut query = format!("remove {} reason={}", shown(&id), req.reason);
    bound(&mut query);
    let mut record = caller.record(AccessAction::HotlistRemove, query);
    record.case = current.map(|e| e.case).filter(|c| !c.is_empty());
    state.logged(record, result, to_api).await
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<LocalEntry>>, ApiError> {
    may_see(&caller)?;
    let now = UnixMillis::now();
    let entries: Vec<LocalEntry> = state
        .hub
        .local_entries
        .entries()
        .iter()
        .filter(|e| q.all || e.active(now))
        .cloned()
        .collect();
    let mut record = caller.record(
        AccessAction::HotlistList,
        if q.all { "list all" } else { "list active" },
    );
    record.results = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    state.access.record(record).await?;
    Ok(Json(entries))
}

pub(crate) async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<LocalEntry>, ApiError> {
    may_see(&caller)?;
    let entry = state.hub.local_entries.get(&id);
    let mut record = caller.record(AccessAction::HotlistList, format!("show {}", shown(&id)));
    record.results = u32::from(entry.is_some());
    state.access.record(record).await?;
    entry
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no local entry {id}")))
}
