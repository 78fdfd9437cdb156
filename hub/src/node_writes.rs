//! What a node sends to change the shared documents (its copy of the legal
//! holds and of the local hotlist entries), taken change by change.
//!
//! The hub never merges a node's document wholesale: it asks its own
//! document for the logical changes the node's copy has
//! ([`alpr_shared::control::node_change::NodeChange`]), checks each with
//! [`node_change::check`] (a patrol vehicle, signed on that node by an
//! officer of the policy with a key the hub knows to be theirs, within the
//! officer's rights, times and expiries bounded), writes the accepted ones
//! as its own and records every one, accepted or refused, in its access
//! log (the node, the officer, what, and why a refusal). A refusal the node
//! sends again (it keeps its copy and sends it after each change) is
//! recorded once per hub process ([`Seen`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use alpr_shared::control::holds_doc::HoldsDoc;
use alpr_shared::control::node_change::{self, Context, KnownOfficer, NodeChange, Verdict};
use alpr_shared::hotlist::local::LocalEntriesDoc;
use alpr_shared::log::access::{cut, MAX_QUERY_LEN};
use alpr_shared::log::{AccessOutcome, AccessRecord};
use alpr_shared::types::{DeviceId, DeviceKind, Hash32, UnixMillis, MAX_TEXT_LEN};
use tracing::{info, warn};

use crate::access::AccessLog;
use crate::holds::HoldsService;
use crate::hotlist::local::LocalEntriesService;
use crate::policy::PolicyService;
use crate::users::Users;

/// Refusals remembered (per hub process) so a re-sent one is not recorded
/// again; beyond it the oldest are forgotten.
const MAX_SEEN: usize = 65_536;

/// Takes nodes' changes. Cheap to clone.
#[derive(Clone)]
pub struct NodeWrites {
    access: AccessLog,
    users: Arc<Users>,
    /// The policy in force: its officers and hotlist rules judge changes.
    policy: PolicyService,
    /// The documents nodes' changes are taken into.
    holds: HoldsService,
    local_entries: LocalEntriesService,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for NodeWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeWrites")
    }
}

/// The refusals already recorded, oldest first.
#[derive(Default)]
struct Seen {
    set: HashSet<Hash32>,
    order: VecDeque<Hash32>,
}

impl Seen {
    /// Whether `digest` is new (then it is remembered).
    fn first(&mut self, digest: Hash32) -> bool {
        if !self.set.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        if self.order.len() > MAX_SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Which document a node sent.
#[derive(Debug, Clone, Copy)]
pub enum NodeDoc {
    Holds,
    LocalEntries,
}

impl NodeWrites {
    pub fn new(
        access: AccessLog,
        users: Arc<Users>,
        policy: PolicyService,
        holds: HoldsService,
        local_entries: LocalEntriesService,
    ) -> Self {
        NodeWrites {
            access,
            users,
            policy,
            holds,
            local_entries,
            seen: Arc::default(),
        }
    }

    /// The officers of `policy` with every key the hub knows to be theirs
    /// (the policy's current one and each one their password gave).
    fn officers(
        &self,
        policy: &alpr_shared::control::policy::Policy,
    ) -> HashMap<String, KnownOfficer> {
        policy
            .officers
            .iter()
            .map(|o| {
                let mut keys: Vec<[u8; 32]> = self
                    .users
                    .keys(&o.username)
                    .into_iter()
                    .map(|k| k.key.public)
                    .collect();
                keys.extend(o.key.as_ref().map(|k| k.public));
                (
                    o.username.clone(),
                    KnownOfficer {
                        agency: o.agency.clone(),
                        keys,
                    },
                )
            })
            .collect()
    }

    /// Take what node `node` (of `kind`, from its certificate) changed in
    /// its copy `bytes` of `doc`. A document that does not load changes
    /// nothing. Returns how many changes were accepted and refused.
    pub async fn take(
        &self,
        node: &DeviceId,
        kind: DeviceKind,
        doc: NodeDoc,
        bytes: Vec<u8>,
    ) -> Result<(usize, usize), String> {
        let policy = self.policy.current();
        let officers = self.officers(policy.policy());
        let rules = policy.policy().hotlists.clone();
        let name = node.to_string();
        let lookup = |who: &str| officers.get(who).cloned();
        let ctx = Context {
            node: &name,
            kind,
            now: UnixMillis::now(),
            rules: &rules,
            officer: &lookup,
        };
        let judge = |change: &NodeChange| node_change::check(change, &ctx);
        let verdicts = match doc {
            NodeDoc::Holds => {
                let theirs = HoldsDoc::load(&bytes).map_err(|e| e.to_string())?;
                self.holds
                    .take_from_node(theirs, judge)
                    .await
                    .map_err(|e| e.to_string())?
            }
            NodeDoc::LocalEntries => {
                let theirs = LocalEntriesDoc::load(&bytes).map_err(|e| e.to_string())?;
                self.local_entries
                    .take_from_node(theirs, judge)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let (mut accepted, mut refused) = (0, 0);
        for (change, verdict) in verdicts {
            if verdict.outcome.is_ok() {
                accepted += 1;
            } else {
                refused += 1;
                let first = self
                    .seen
                    .lock()
                    .map(|mut s| s.first(change.digest(&name)))
                    .unwrap_or(true);
                if !first {
                    continue;
                }
            }
            if let Err(e) = self.access.record(record(&name, &change, &verdict)).await {
                warn!(node = %name, error = %e, "a node's change could not be recorded in the access log");
            }
        }
        if accepted + refused > 0 {
            info!(node = %name, ?doc, accepted, refused, "took a node's changes");
        }
        Ok((accepted, refused))
    }
}

/// The access record of one change from node `node`.
pub fn record(node: &str, change: &NodeChange, verdict: &Verdict) -> AccessRecord {
    let (action, what, case) = change.describe();
    let user = if verdict.officer.is_empty() {
        format!("node {node}")
    } else {
        verdict.officer.clone()
    };
    AccessRecord {
        user: clean(&user, MAX_TEXT_LEN),
        agency: clean(&verdict.agency, MAX_TEXT_LEN),
        action,
        purpose: None,
        case: case
            .filter(|c| !c.is_empty())
            .map(|c| clean(&c, MAX_TEXT_LEN)),
        query: clean(&format!("{what} from node {node}"), MAX_QUERY_LEN),
        results: 0,
        outcome: match &verdict.outcome {
            Ok(_) => AccessOutcome::Allowed,
            Err(why) => AccessOutcome::refused(clean(why, MAX_QUERY_LEN)),
        },
        source: clean(&format!("node {node}"), MAX_TEXT_LEN),
    }
}

/// `s` without control characters, cut to `max` bytes: what a node names
/// goes into a record that must validate.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    cut(&mut out, max);
    out
}
