//! What a node shows the hub when it holds a newer policy or newer bulk
//! list generations than the hub ([`HubOutput::NodeHeldPolicy`],
//! [`HubOutput::NodeHeldList`]): a hub restored from a backup learns the
//! numbers it had reached, from what it signed, and goes past them. The
//! checks and the rules live in the policy and hotlist rooms; a proof that
//! is not the hub's own is refused and recorded.
//!
//! [`HubOutput::NodeHeldPolicy`]: alpr_shared::sync::HubOutput::NodeHeldPolicy
//! [`HubOutput::NodeHeldList`]: alpr_shared::sync::HubOutput::NodeHeldList

use alpr_shared::wire::{Refusal, RefusalCode};
use tracing::warn;

use super::stream::StreamCtx;
use crate::hotlist::HotlistError;
use crate::policy::PolicyError;

impl StreamCtx {
    /// The signed policy the node holds.
    pub(super) async fn held_policy(&self, shown: Vec<u8>) {
        let in_force = self.hub.policy.current().version();
        match self.hub.policy.learn(&shown).await {
            Ok(Some(p)) => warn!(
                was = in_force,
                version = p.version(),
                "the node holds a newer policy this hub signed (restored from a backup?): \
                 it is in force again, and the next version goes past it"
            ),
            Ok(None) => {}
            Err(PolicyError::NotOurs(e)) => {
                self.refuse_shown(format!("the policy it shows is not this hub's: {e}"))
                    .await
            }
            Err(e) => warn!(error = %e, "the policy the node shows could not be learned"),
        }
    }

    /// The signed header of a generation the node holds.
    pub(super) async fn held_list(&self, header: Vec<u8>) {
        match self.hub.hotlists.learn(&header).await {
            Ok(Some((source, number))) => warn!(
                source,
                number,
                "the node holds a newer generation of a bulk list than this hub \
                 (restored from a backup?): the next import goes past it"
            ),
            Ok(None) => {}
            Err(HotlistError::NotOurs(e)) => {
                self.refuse_shown(format!("the list header it shows is not this hub's: {e}"))
                    .await
            }
            Err(e) => warn!(error = %e, "the list header the node shows could not be learned"),
        }
    }

    /// Record a proof that is not the hub's own (the connection goes on:
    /// nothing was taken from it).
    async fn refuse_shown(&self, detail: String) {
        let r = Refusal {
            code: RefusalCode::BadSignature,
            seq: None,
            detail,
        };
        self.hub.refuse(Some(&self.device), self.peer, &r).await;
    }
}
