//! The control documents the hub offers a node (policy, holds, local\nentries, bulk lists), what the node says it holds, and what the hub asks\na node to show after a restore.

use super::*;

impl HubSession {
    /// The hub's saved local hotlist entries document, sent to the node
    /// after hello.
    pub fn with_local_entries(mut self, doc: Arc<Vec<u8>>) -> Self {
        self.local_entries = Some(doc);
        self
    }

    /// The hub's local entries changed while the node is connected: send
    /// them if the node has greeted (otherwise after its hello).
    pub fn set_local_entries(&mut self, doc: Arc<Vec<u8>>) -> Vec<HubOutput> {
        if self.local_entries.as_ref().is_some_and(|h| h == &doc) {
            return Vec::new();
        }
        self.local_entries = Some(doc);
        self.offer_local_entries()
    }

    pub(super) fn offer_local_entries(&self) -> Vec<HubOutput> {
        match (&self.local_entries, self.greeted) {
            (Some(doc), true) => vec![HubOutput::Send(Frame::LocalEntries {
                doc: doc.as_ref().clone(),
            })],
            _ => Vec::new(),
        }
    }

    /// The hub's latest generation of each bulk list: (source, number).
    pub fn with_hotlists(mut self, current: Vec<(String, u64)>) -> Self {
        self.hotlists = current.into_iter().collect();
        self
    }

    /// The hub published new generations while the node is connected:
    /// send each list the node lacks (the delta if the hub has it).
    pub fn set_hotlists(&mut self, current: Vec<(String, u64)>) -> Vec<HubOutput> {
        self.hotlists = current.into_iter().collect();
        self.offer_hotlists()
    }

    /// The bulk lists the node holds, as it last said: (source, generation).
    pub fn node_hotlists(&self) -> Vec<(String, u64)> {
        self.node_hotlists
            .iter()
            .map(|(s, g)| (s.clone(), *g))
            .collect()
    }

    /// A [`HubOutput::SendHotlist`] for every list where the hub's
    /// generation is newer than the node's and not already offered.
    pub(super) fn offer_hotlists(&mut self) -> Vec<HubOutput> {
        if !self.greeted {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (source, &to) in &self.hotlists {
            let held = self.node_hotlists.get(source).copied().unwrap_or(0);
            if held >= to || self.offered.get(source).is_some_and(|(g, _)| *g >= to) {
                continue;
            }
            let from = (held > 0).then_some(held);
            self.offered.insert(source.clone(), (to, from.is_none()));
            out.push(HubOutput::SendHotlist {
                source: source.clone(),
                from,
                to,
            });
        }
        out
    }

    /// The node reports the generation of `source` it holds now.
    pub(super) fn hotlist_applied(&mut self, source: String, generation: u64) -> Vec<HubOutput> {
        if !self.node_hotlists.contains_key(&source)
            && self.node_hotlists.len() >= crate::wire::MAX_HOTLIST_SOURCES
        {
            return self.refused(refuse(
                RefusalCode::Malformed,
                None,
                "too many bulk lists reported",
            ));
        }
        self.node_hotlists.insert(source.clone(), generation);
        let mut out = vec![HubOutput::NodeHotlists {
            held: self.node_hotlists(),
        }];
        let current = self.hotlists.get(&source).copied().unwrap_or(0);
        match self.offered.get(&source).copied() {
            // A delta offered and not applied: send the list whole, once.
            Some((to, false)) if generation < to && to == current => {
                self.offered.insert(source.clone(), (to, true));
                out.push(HubOutput::SendHotlist {
                    source,
                    from: None,
                    to,
                });
            }
            // Whole and still not applied: wait for the next generation
            // (the node logged why); anything older offered is superseded.
            Some((to, _)) if generation >= to || to < current => {
                self.offered.remove(&source);
                out.extend(self.offer_hotlists());
            }
            _ => {}
        }
        out
    }

    /// The hub's saved legal holds document, sent to the node after hello.
    pub fn with_holds(mut self, doc: Arc<Vec<u8>>) -> Self {
        self.holds = Some(doc);
        self
    }

    /// The hub's holds changed while the node is connected: send them if
    /// the node has greeted (at once otherwise, after its hello).
    pub fn set_holds(&mut self, doc: Arc<Vec<u8>>) -> Vec<HubOutput> {
        if self.holds.as_ref().is_some_and(|h| h == &doc) {
            return Vec::new();
        }
        self.holds = Some(doc);
        self.offer_holds()
    }

    pub(super) fn offer_holds(&self) -> Vec<HubOutput> {
        match (&self.holds, self.greeted) {
            (Some(doc), true) => vec![HubOutput::Send(Frame::Holds {
                doc: doc.as_ref().clone(),
            })],
            _ => Vec::new(),
        }
    }

    /// The hub's current signed policy (version and encoded
    /// [`crate::control::SignedPolicy`]), sent to the node after its hello
    /// when newer than the node's.
    pub fn with_policy(mut self, version: u64, encoded: Arc<Vec<u8>>) -> Self {
        self.policy = Some((version, encoded));
        self
    }

    /// The hub's policy changed while the node is connected: push it if the
    /// node has greeted and holds an older one.
    pub fn set_policy(&mut self, version: u64, encoded: Arc<Vec<u8>>) -> Vec<HubOutput> {
        if self.policy.as_ref().is_some_and(|(v, _)| *v >= version) {
            return Vec::new();
        }
        self.policy = Some((version, encoded));
        self.offer_policy()
    }

    /// The policy version the node last reported.
    pub fn node_policy(&self) -> Option<u64> {
        self.node_policy
    }

    pub(super) fn offer_policy(&self) -> Vec<HubOutput> {
        let (Some((version, bytes)), Some(held), true) =
            (self.policy.as_ref(), self.node_policy, self.greeted)
        else {
            return Vec::new();
        };
        if held < *version {
            vec![HubOutput::Send(Frame::Policy {
                policy: bytes.as_ref().clone(),
            })]
        } else if held == *version {
            vec![HubOutput::Send(Frame::PolicyCurrent { version: held })]
        } else {
            Vec::new()
        }
    }

    /// After hello: ask the node to show what it holds that is newer than
    /// the hub's (a hub restored from a backup lost the versions and
    /// generations it made since), so the hub's next numbers go past them.
    pub(super) fn ask_held(&mut self) -> Vec<HubOutput> {
        let policy = match (&self.policy, self.node_policy) {
            (Some((version, _)), Some(held)) => held > *version,
            _ => false,
        };
        let sources: Vec<String> = self
            .node_hotlists
            .iter()
            .filter(|(s, g)| **g > self.hotlists.get(*s).copied().unwrap_or(0))
            .map(|(s, _)| s.clone())
            .collect();
        self.asked_policy = policy;
        self.asked_lists = sources.len();
        if !policy && sources.is_empty() {
            return Vec::new();
        }
        vec![HubOutput::Send(Frame::ShowHeld { policy, sources })]
    }
}
