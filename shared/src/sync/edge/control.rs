//! The control documents an edge holds and the hub sends: the policy, the\nholds and local-entries documents, and the bulk lists (chunks in, applied\nor refused, and what is held at a restored hub's request).

use super::*;

impl EdgeSync {
    /// The policy version the node holds (from its store, at start): told
    /// to the hub in every hello.
    pub fn set_policy_version(&mut self, version: u64) {
        self.policy_version = version;
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// How often to have the policy confirmed while connected (the driver
    /// sets a fraction of the policy's `max_stale`).
    pub fn set_policy_refresh(&mut self, every: Duration) {
        self.config.policy_refresh = every.max(Duration::from_millis(100));
    }

    /// The node's legal holds document changed (or is known at start):
    /// send it to the hub now if connected, and after every welcome.
    pub fn set_holds(&mut self, doc: Vec<u8>) {
        if self.holds.as_ref() == Some(&doc) {
            return;
        }
        self.holds = Some(doc);
        if matches!(self.state, LinkState::Ready) {
            self.send_holds();
        }
    }

    /// The node's local hotlist entries document changed (or is known at
    /// start): send it to the hub now if connected, and after every welcome.
    pub fn set_local_entries(&mut self, doc: Vec<u8>) {
        if self.local_entries.as_ref() == Some(&doc) {
            return;
        }
        self.local_entries = Some(doc);
        if matches!(self.state, LinkState::Ready) {
            self.send_local_entries();
        }
    }

    pub(super) fn send_local_entries(&mut self) {
        if let Some(doc) = &self.local_entries {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::LocalEntries { doc: doc.clone() },
            });
        }
    }

    /// The node holds generation `generation` of bulk list `source` (from
    /// its store at start): told to the hub in every hello.
    pub fn set_hotlist_held(&mut self, source: &str, generation: u64) {
        self.hotlists.insert(source.to_owned(), generation);
    }

    /// The bulk lists the node holds: (source, generation).
    pub fn hotlists_held(&self) -> Vec<HeldList> {
        self.hotlists
            .iter()
            .map(|(source, generation)| HeldList {
                source: source.clone(),
                generation: *generation,
            })
            .collect()
    }

    /// The driver stored generation `generation` of `source` (from an
    /// [`EdgeEvent::HotlistDelta`] or [`EdgeEvent::HotlistFull`]): match
    /// against it, and tell the hub.
    pub fn hotlist_applied(&mut self, source: &str, generation: u64) {
        self.hotlists.insert(source.to_owned(), generation);
        self.hotlist_done();
        self.tell_hotlist(source);
    }

    /// Whether entries wait for bulk lists being applied.
    pub fn hotlists_pending(&self) -> usize {
        self.hotlists_pending
    }

    pub(super) fn hotlist_done(&mut self) {
        self.hotlists_pending = self.hotlists_pending.saturating_sub(1);
        if self.hotlists_pending == 0 {
            self.hotlist_wait_until = None;
        }
    }

    pub(super) fn hotlist_handed(&mut self, now: Now) {
        self.hotlists_pending += 1;
        if self.hotlist_wait_until.is_none() {
            self.hotlist_wait_until = Some(now + self.config.hotlist_wait);
        }
    }

    /// What came for `source` could not be applied (it does not verify, or
    /// could not be stored): the node keeps what it holds and tells the hub
    /// so, which then sends the list whole.
    pub fn hotlist_failed(&mut self, source: &str) {
        self.assembling.remove(source);
        self.hotlist_done();
        self.tell_hotlist(source);
    }

    pub(super) fn tell_hotlist(&mut self, source: &str) {
        if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            let generation = self.hotlists.get(source).copied().unwrap_or(0);
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HotlistApplied {
                    source: source.to_owned(),
                    generation,
                },
            });
        }
    }

    pub(super) fn refuse_hotlist(&mut self, source: String, why: String) {
        self.assembling.remove(&source);
        self.tell_hotlist(&source);
        self.events
            .push_back(EdgeEvent::HotlistRefused { source, why });
    }

    /// A piece of a whole generation: kept until the last one arrives.
    pub(super) fn hotlist_chunk(
        &mut self,
        now: Now,
        source: String,
        generation: u64,
        total: u64,
        offset: u64,
        chunk: Vec<u8>,
    ) {
        if offset == 0 {
            if !self.assembling.contains_key(&source)
                && self.assembling.len() >= crate::wire::MAX_HOTLIST_SOURCES
            {
                return self.refuse_hotlist(source, "too many lists arriving at once".into());
            }
            self.assembling.insert(
                source.clone(),
                Assembly {
                    generation,
                    total,
                    // Grown chunk by chunk: `total` is the sender's word.
                    bytes: Vec::new(),
                },
            );
        }
        let Some(a) = self.assembling.get_mut(&source) else {
            return self.refuse_hotlist(
                source,
                format!("a piece of generation {generation} without its start"),
            );
        };
        let end = offset.saturating_add(chunk.len() as u64);
        if a.generation != generation
            || a.total != total
            || a.bytes.len() as u64 != offset
            || end > total
            || total > crate::wire::MAX_GENERATION_BYTES
        {
            return self.refuse_hotlist(
                source,
                format!("a piece of generation {generation} out of order (at {offset})"),
            );
        }
        a.bytes.extend_from_slice(&chunk);
        if a.bytes.len() as u64 == a.total {
            if let Some(a) = self.assembling.remove(&source) {
                self.hotlist_handed(now);
                self.events.push_back(EdgeEvent::HotlistFull {
                    source,
                    generation: a.generation,
                    bytes: a.bytes,
                });
            }
        }
    }

    /// Answer an [`EdgeEvent::ShowHeld`]: the signed policy the node holds
    /// (encoded), and the signed header of each generation it holds of the
    /// lists asked for.
    pub fn show_held(&mut self, policy: Option<Vec<u8>>, headers: Vec<Vec<u8>>) {
        if !matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            return;
        }
        if let Some(policy) = policy {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HeldPolicy { policy },
            });
        }
        for header in headers {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::HeldList { header },
            });
        }
    }

    pub(super) fn send_holds(&mut self) {
        if let Some(doc) = &self.holds {
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::Holds { doc: doc.clone() },
            });
        }
    }

    /// The driver stored the policy of an [`EdgeEvent::Policy`]: enforce
    /// it, and tell the hub.
    pub fn policy_applied(&mut self, version: u64, now: Now) {
        self.policy_version = self.policy_version.max(version);
        self.tell_policy(now);
    }

    pub(super) fn tell_policy(&mut self, now: Now) {
        if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
            self.policy_told_at = Some(now);
            self.out.push_back(Outgoing {
                lane: Lane::Control,
                frame: Frame::PolicyApplied {
                    version: self.policy_version,
                },
            });
        }
    }

    /// A policy frame from the hub: apply only a newer version that a key
    /// the CA certified for the policy signed.
    pub(super) fn offered_policy(&mut self, bytes: &[u8], now: Now) {
        let p = match SignedPolicy::decode_verified(bytes, &self.anchor) {
            Ok(p) => p,
            Err(e) => {
                self.events
                    .push_back(EdgeEvent::PolicyRefused(e.to_string()));
                return;
            }
        };
        let (held, offered) = (self.policy_version, p.version());
        if offered > held {
            self.events.push_back(EdgeEvent::Policy(Box::new(p)));
        } else if offered == held {
            self.events
                .push_back(EdgeEvent::PolicyRefreshed { version: held });
        } else {
            self.events
                .push_back(EdgeEvent::PolicyIgnored { held, offered });
            self.tell_policy(now);
        }
    }
}
