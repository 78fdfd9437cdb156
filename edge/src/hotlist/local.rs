//! Local hotlist entries on the node: an officer logged in on the node
//! adds one (`edge hotlist add`, even with the hub out of reach — a
//! partial plate from a scene), edits or removes the entries they added,
//! or lists them. The document merges with the hub's on the control lane
//! ([`crate::sync`]); the matcher reads
//! [`crate::store::StoreHandle::local_entries`] and follows
//! [`crate::store::StoreHandle::watch_local_entries`].
//!
//! Who may: every officer who may log in on the node adds entries; an
//! officer edits or removes only the entries they added (as at the hub,
//! where operators and supervisors manage every entry). Each request,
//! refused ones too, is in the node's access log.

use alpr_shared::hotlist::local::{new_id, EntryFields};
use alpr_shared::hotlist::{LocalEntry, Removal};
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use alpr_shared::types::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::policy::{EdgeAccess, LOCAL_SOURCE};
use crate::store::LocalEntriesChange;

/// Longest removal reason accepted.
const MAX_TEXT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalAddRequest {
    pub token: String,
    pub fields: EntryFields,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalEditRequest {
    pub token: String,
    pub id: String,
    pub fields: EntryFields,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalRemoveRequest {
    pub token: String,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalListRequest {
    pub token: String,
    #[serde(default)]
    pub all: bool,
}

fn bounded(mut s: String) -> String {
    let max = alpr_shared::log::access::MAX_QUERY_LEN.saturating_sub(16);
    alpr_shared::log::access::cut(&mut s, max);
    s
}

async fn record(
    access: &EdgeAccess,
    user: String,
    agency: String,
    action: AccessAction,
    query: String,
    case: Option<String>,
    outcome: Result<(), &String>,
) -> Result<(), String> {
    access
        .record(AccessRecord {
            user,
            agency,
            action,
            purpose: None,
            case: case
                .filter(|c| !c.is_empty() && !c.chars().any(char::is_control))
                .map(|c| c.chars().take(MAX_TEXT).collect()),
            query: bounded(query),
            results: 0,
            outcome: match outcome {
                Ok(()) => AccessOutcome::Allowed,
                Err(e) => AccessOutcome::refused(e),
            },
            source: LOCAL_SOURCE.into(),
        })
        .await
}

fn entry(access: &EdgeAccess, id: &str) -> Result<LocalEntry, String> {
    access
        .store()
        .local_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| format!("no local entry {id}"))
}

/// Add an entry on this node, logged in its own access log.
pub async fn add(access: &EdgeAccess, req: LocalAddRequest) -> Result<LocalEntry, String> {
    let now = UnixMillis::now();
    let (user, agency, policy) = access.session(&req.token, now)?;
    let id = new_id(&access.store().device().to_string());
    let case = req.fields.case.clone();
    let query = format!(
        "add {id} plate={}",
        req.fields.plate.as_deref().unwrap_or("")
    );
    let result = access
        .store()
        .change_local_entries(LocalEntriesChange::Add {
            id: id.clone(),
            fields: req.fields,
            author: user.clone(),
            agency: agency.clone(),
            rules: policy.policy().hotlists.clone(),
            signer: access.signer(&req.token),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    record(
        access,
        user,
        agency,
        AccessAction::HotlistAdd,
        query,
        case,
        result.as_ref().map(|_| ()),
    )
    .await?;
    result?;
    entry(access, &id)
}

/// Change fields of an entry this officer added.
pub async fn edit(access: &EdgeAccess, req: LocalEditRequest) -> Result<LocalEntry, String> {
    let now = UnixMillis::now();
    let (user, agency, policy) = access.session(&req.token, now)?;
    let change = LocalEntriesChange::Edit {
        id: req.id.clone(),
        fields: req.fields,
        by: user.clone(),
        rules: policy.policy().hotlists.clone(),
        signer: access.signer(&req.token),
    };
    let query = format!("edit {}", req.id.chars().take(64).collect::<String>());
    let own = Own {
        user,
        agency,
        action: AccessAction::HotlistEdit,
        verb: "change",
    };
    own.change(access, &req.id, query, Ok(()), change).await
}

/// Remove an entry this officer added, for good.
pub async fn remove(access: &EdgeAccess, req: LocalRemoveRequest) -> Result<LocalEntry, String> {
    let now = UnixMillis::now();
    let (user, agency, _policy) = access.session(&req.token, now)?;
    let query = format!(
        "remove {} reason={}",
        req.id.chars().take(64).collect::<String>(),
        req.reason
    );
    let reason = if req.reason.trim().is_empty()
        || req.reason.len() > MAX_TEXT
        || req.reason.chars().any(char::is_control)
    {
        Err(format!(
            "a removal needs a reason of at most {MAX_TEXT} bytes, without control characters"
        ))
    } else {
        Ok(())
    };
    let change = LocalEntriesChange::Remove {
        id: req.id.clone(),
        removal: Removal {
            by: user.clone(),
            at: now,
            reason: req.reason.clone(),
        },
        signer: access.signer(&req.token),
    };
    let own = Own {
        user,
        agency,
        action: AccessAction::HotlistRemove,
        verb: "remove",
    };
    own.change(access, &req.id, query, reason, change).await
}

/// An officer's change to an entry: allowed only on an entry they added.
struct Own {
    user: String,
    agency: String,
    action: AccessAction,
    /// What the officer does, for the refusal ("change", "remove").
    verb: &'static str,
}

impl Own {
    /// Make `change` to entry `id` if `check` passed and the entry is the
    /// officer's own; the attempt is in the access log (with the entry's
    /// case) whatever its outcome. The entry as it is after.
    async fn change(
        self,
        access: &EdgeAccess,
        id: &str,
        query: String,
        check: Result<(), String>,
        change: LocalEntriesChange,
    ) -> Result<LocalEntry, String> {
        let current = entry(access, id);
        let result = match (&current, check) {
            (_, Err(why)) => Err(why),
            (Ok(e), Ok(())) if e.author != self.user => Err(format!(
                "{} may {} only the entries they added ({} added {})",
                self.user, self.verb, e.author, e.id
            )),
            (Ok(_), Ok(())) => access
                .store()
                .change_local_entries(change)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            (Err(e), Ok(())) => Err(e.clone()),
        };
        let case = current.ok().map(|e| e.case);
        record(
            access,
            self.user,
            self.agency,
            self.action,
            query,
            case,
            result.as_ref().map(|_| ()),
        )
        .await?;
        result?;
        entry(access, id)
    }
}

/// The entries this node knows (active ones, or all).
pub async fn list(access: &EdgeAccess, req: LocalListRequest) -> Result<Vec<LocalEntry>, String> {
    let now = UnixMillis::now();
    let (user, agency, _policy) = access.session(&req.token, now)?;
    let entries: Vec<LocalEntry> = access
        .store()
        .local_entries()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| req.all || e.active(now))
        .collect();
    record(
        access,
        user,
        agency,
        AccessAction::HotlistList,
        if req.all { "list all" } else { "list active" }.into(),
        None,
        Ok(()),
    )
    .await?;
    Ok(entries)
}
