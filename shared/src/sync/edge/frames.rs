//! Frames from the hub: what each does to the edge's state.

use super::*;

impl EdgeSync {
    /// A frame arrived from the hub; `src` is the node's own log, which
    /// every receipt is checked against.
    pub fn handle_frame(&mut self, frame: Frame, now: Now, src: &dyn LogSource) {
        match frame {
            Frame::Welcome(w) => {
                if !matches!(self.state, LinkState::Handshake) {
                    return;
                }
                match self
                    .anchor
                    .check_signer_der(&w.receipt_cert, KeyPurpose::Receipt)
                {
                    Ok(c) => self.receipt_signer = Some(c),
                    Err(e) => {
                        self.receipt_signer = None;
                        self.events.push_back(EdgeEvent::Protocol(format!(
                            "the hub's receipt certificate is refused: {e}"
                        )));
                        return;
                    }
                }
                if !self.receipt_ok(&w.receipt) {
                    return;
                }
                if let Err(why) = receipt_matches_log(&w.receipt, src) {
                    self.conflict(now, why);
                    return;
                }
                self.attempt = 0;
                self.state = LinkState::Ready;
                self.policy_told_at = Some(now);
                let n = w.receipt.receipt.next_seq;
                let had = self.acked;
                self.acked = n;
                self.next_send = self.acked;
                self.last_progress = Some(now);
                // The receipt first: once the driver reports that the hub
                // lost reads, what the hub holds now is already recorded.
                self.events.push_back(EdgeEvent::Acked(w.receipt));
                self.send_holds();
                self.send_local_entries();
                if n < had {
                    // The hub lost what it had acknowledged (a restore):
                    // images acknowledged by the old copy go again too.
                    self.images_done.clear();
                    self.events
                        .push_back(EdgeEvent::HubBehind { had, now_holds: n });
                }
            }
            Frame::Ack(r) => {
                if !matches!(self.state, LinkState::Ready) || !self.receipt_ok(&r) {
                    return;
                }
                let n = r.receipt.next_seq;
                if n > self.acked {
                    if let Err(why) = receipt_matches_log(&r, src) {
                        self.conflict(now, why);
                        return;
                    }
                    self.acked = n;
                    self.last_progress = Some(now);
                    self.events.push_back(EdgeEvent::Acked(r));
                }
                if self.next_send < self.acked {
                    self.next_send = self.acked;
                }
            }
            Frame::ImageAck { hash } => {
                if let Some(seq) = self.forget_image(&hash) {
                    self.image_progress = Some(now);
                    if self.images_done.len() >= 4096 {
                        self.images_done.pop_front();
                    }
                    self.images_done.push_back(hash);
                    self.events.push_back(EdgeEvent::ImageAcked { seq, hash });
                }
            }
            Frame::Refused(r) => {
                // An entry refused as altered that fails this node's own
                // check too was damaged in its store: the node's fault,
                // recorded as lost, and the reads after it go on.
                if let (Some(seq), RefusalCode::Edited | RefusalCode::BadSignature) =
                    (r.seq, r.code)
                {
                    if seq >= self.acked && self.damaged_locally(seq, src) {
                        self.next_send = self.acked;
                        self.loss_reported = Some(seq);
                        self.events.push_back(EdgeEvent::LocalLoss { seq });
                        return;
                    }
                }
                if r.code.is_permanent() {
                    self.state = LinkState::Refused {
                        retry_at: now + self.config.backoff_max,
                    };
                    self.out.clear();
                } else {
                    self.next_send = self.acked;
                }
                self.events.push_back(EdgeEvent::Refused(r));
            }
            Frame::WantImages { images } => {
                // The hub lacks these (a restore): whatever it acknowledged
                // before does not count.
                for (seq, hash) in images {
                    if self.wanted.len() >= MAX_WANTED {
                        break;
                    }
                    self.images_done.retain(|h| *h != hash);
                    if !self.wanted.iter().any(|(_, h)| *h == hash) {
                        self.wanted.push_back((seq, hash));
                    }
                }
            }
            Frame::Policy { policy } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.offered_policy(&policy, now);
                }
            }
            Frame::PolicyCurrent { version } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    if version == self.policy_version && version > 0 {
                        self.events
                            .push_back(EdgeEvent::PolicyRefreshed { version });
                    } else if version < self.policy_version {
                        self.events.push_back(EdgeEvent::PolicyIgnored {
                            held: self.policy_version,
                            offered: version,
                        });
                    }
                }
            }
            Frame::Holds { doc } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events.push_back(EdgeEvent::Holds(doc));
                }
            }
            Frame::LocalEntries { doc } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events.push_back(EdgeEvent::LocalEntries(doc));
                }
            }
            Frame::HotlistDelta {
                source,
                from,
                to,
                delta,
            } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    let held = self.hotlists.get(&source).copied().unwrap_or(0);
                    if held != from {
                        self.refuse_hotlist(
                            source,
                            format!("a delta from generation {from}, but this node holds {held}"),
                        );
                    } else {
                        self.hotlist_handed(now);
                        self.events.push_back(EdgeEvent::HotlistDelta {
                            source,
                            from,
                            to,
                            delta,
                        });
                    }
                }
            }
            Frame::HotlistFull {
                source,
                generation,
                total,
                offset,
                chunk,
            } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.hotlist_chunk(now, source, generation, total, offset, chunk);
                }
            }
            Frame::ShowHeld { policy, sources } => {
                if matches!(self.state, LinkState::Ready | LinkState::Handshake) {
                    self.events
                        .push_back(EdgeEvent::ShowHeld { policy, sources });
                }
            }
            Frame::Pong { .. } => {}
            Frame::HeldPolicy { .. }
            | Frame::HeldList { .. }
            | Frame::HotlistApplied { .. }
            | Frame::PolicyApplied { .. }
            | Frame::Hello(_)
            | Frame::Entries(_)
            | Frame::Image(_)
            | Frame::Loss { .. }
            | Frame::Ping { .. } => {
                self.events.push_back(EdgeEvent::Protocol(
                    "a node-to-hub frame came from the hub".into(),
                ));
            }
        }
    }

    /// Stop uploading: the hub's record is not this node's log.
    pub(super) fn conflict(&mut self, now: Now, why: String) {
        self.state = LinkState::Conflict {
            retry_at: now + self.config.backoff_max,
        };
        self.out.clear();
        self.clear_images_in_flight();
        self.next_send = self.acked;
        self.events.push_back(EdgeEvent::IdentityConflict(why));
    }

    pub(super) fn receipt_ok(&mut self, r: &SignedReceipt) -> bool {
        let ok = r.receipt.device == self.device
            && self.receipt_signer.as_ref().is_some_and(|c| r.verify(c));
        if !ok {
            self.events.push_back(EdgeEvent::Protocol(
                "a receipt that is not the hub's for this node".into(),
            ));
        }
        ok
    }

    /// The hub refused the connection itself (TLS or an application close).
    pub fn connection_refused(&mut self, now: Now, r: Refusal) {
        if r.code.is_permanent() {
            self.state = LinkState::Refused {
                retry_at: now + self.config.backoff_max,
            };
            self.out.clear();
        } else {
            self.link_down(now);
        }
        self.events.push_back(EdgeEvent::Refused(r));
    }
}
