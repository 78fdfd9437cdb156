//! Legal holds on the node: an officer logged in on the node places one
//! (`edge hold add`, even with the hub out of reach) or lists them
//! (`edge hold list`). The document merges with the hub's on the control
//! lane ([`crate::sync`]); retention reads [`crate::store::StoreHandle::holds`].

use alpr_shared::control::holds::{Hold, HoldScope};
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use alpr_shared::types::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::policy::{EdgeAccess, LOCAL_SOURCE};
use crate::store::HoldsChange;

/// Longest case number and reason accepted.
const MAX_TEXT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldAddRequest {
    pub token: String,
    pub case: String,
    pub reason: String,
    pub scope: HoldScope,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldListRequest {
    pub token: String,
    #[serde(default)]
    pub all: bool,
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("a hold needs a {what}"));
    }
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(format!(
            "the {what} must be at most {MAX_TEXT} bytes, without control characters"
        ));
    }
    Ok(())
}

/// Place a hold on this node, logged in its own access log.
pub async fn add(access: &EdgeAccess, req: HoldAddRequest) -> Result<Hold, String> {
    let now = UnixMillis::now();
    let (user, agency, _policy) = access.session(&req.token, now)?;
    let mut scope = req.scope;
    scope.normalise_plates();
    let hold = Hold {
        id: hex::encode(rand::random::<[u8; 8]>()),
        case: req.case.clone(),
        reason: req.reason.clone(),
        placed_by: user.clone(),
        agency: agency.clone(),
        placed_at: now,
        placed_on: access.store().device().to_string(),
        scope,
        released: None,
    };
    let checked = check_text("case", &req.case).and_then(|()| check_text("reason", &req.reason));
    let result = match checked {
        Ok(()) => access
            .store()
            .change_holds(HoldsChange::Add {
                hold: Box::new(hold.clone()),
                signer: access.signer(&req.token),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let mut query = format!("hold {}", hold.id);
    alpr_shared::log::access::cut(&mut query, alpr_shared::log::access::MAX_QUERY_LEN);
    let mut case = req.case;
    alpr_shared::log::access::cut(&mut case, MAX_TEXT);
    access
        .record(AccessRecord {
            user,
            agency,
            action: AccessAction::Hold,
            purpose: None,
            case: Some(case).filter(|c| !c.chars().any(char::is_control)),
            query,
            results: 0,
            outcome: match &result {
                Ok(()) => AccessOutcome::Allowed,
                Err(e) => AccessOutcome::refused(e),
            },
            source: LOCAL_SOURCE.into(),
        })
        .await?;
    result.map(|()| hold)
}

/// The holds this node knows (in force, or all), and when it last merged
/// the hub's.
pub fn list(access: &EdgeAccess, req: &HoldListRequest) -> Result<HoldList, String> {
    access.session(&req.token, UnixMillis::now())?;
    let (holds, refreshed_at) = access.store().holds().map_err(|e| e.to_string())?;
    Ok(HoldList {
        holds: holds
            .into_iter()
            .filter(|h| req.all || h.active())
            .collect(),
        refreshed_at,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldList {
    pub holds: Vec<Hold>,
    pub refreshed_at: Option<UnixMillis>,
}
