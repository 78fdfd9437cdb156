//! Frames from a node: entries verified and handed to the store, losses,\nimages, and the receipts the hub answers with once stored.

use super::*;

impl HubSession {
    /// Handle one frame from the node.
    pub fn handle_frame(&mut self, frame: Frame, now: UnixMillis) -> Vec<HubOutput> {
        match frame {
            Frame::Hello(h) => {
                if h.version != PROTOCOL_VERSION {
                    return self.refused(refuse(
                        RefusalCode::Version,
                        None,
                        format!("protocol version {} is not spoken here", h.version),
                    ));
                }
                if h.device != self.device {
                    return self.refused(refuse(
                        RefusalCode::WrongDevice,
                        None,
                        format!(
                            "hello names {} but the certificate is {}",
                            h.device, self.device
                        ),
                    ));
                }
                self.greeted = true;
                let to = self.progress.next_seq;
                let from = to.saturating_sub(MISSING_IMAGE_SCAN);
                self.wanted.clear();
                self.scan = None;
                self.node_policy = Some(h.policy_version);
                self.node_hotlists = h
                    .hotlists
                    .iter()
                    .map(|l| (l.source.clone(), l.generation))
                    .collect();
                self.offered.clear();
                let mut out = vec![
                    HubOutput::NodePolicy {
                        version: h.policy_version,
                    },
                    HubOutput::NodeHotlists {
                        held: self.node_hotlists(),
                    },
                ];
                // Current lists before the welcome: the node matches its
                // backlog against them before it uploads it.
                out.extend(self.offer_hotlists());
                out.extend([HubOutput::Send(Frame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    receipt: self.receipt(now),
                    receipt_cert: self.receipt_key.cert_der().to_vec(),
                }))]);
                out.extend(self.offer_policy());
                out.extend(self.ask_held());
                out.extend(self.offer_holds());
                out.extend(self.offer_local_entries());
                if from < to {
                    out.push(HubOutput::FindMissingImages { from, to });
                }
                out
            }
            Frame::Entries(batch) => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "entries before hello",
                    ));
                }
                // Replays are verified too: placing them compares each with
                // what is stored, so a replay is counted and a fork caught.
                match verify_frame(&self.keys, &self.device, batch) {
                    Ok(v) => {
                        // The store makes the new key effective when it
                        // appends the first entry it signed; later frames,
                        // verified before that commit, already need it.
                        if let Some(n) = &v.new_key {
                            self.keys.took_effect(&n.serial, n.first_seq);
                        }
                        vec![HubOutput::Ingest(v)]
                    }
                    Err(r) => self.refused(r),
                }
            }
            Frame::Image(image) => {
                if crate::crypto::sha256(&image.bytes) != image.hash {
                    return self.refused(refuse(
                        RefusalCode::Edited,
                        Some(image.seq),
                        "image bytes do not match their hash",
                    ));
                }
                match image.seq {
                    seq if seq < self.progress.next_seq => {
                        vec![HubOutput::StoreImage { seq, image }]
                    }
                    seq => self.refused(refuse(
                        RefusalCode::Gap,
                        Some(seq),
                        "image for an entry the hub does not hold",
                    )),
                }
            }
            Frame::Loss { entry } => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "loss record before hello",
                    ));
                }
                self.loss(&entry, now)
            }
            Frame::Ping { nonce } => vec![HubOutput::Send(Frame::Pong { nonce })],
            Frame::PolicyApplied { version } => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "policy report before hello",
                    ));
                }
                // The report asks too: the hub confirms the version held
                // (the node counts its policy as refreshed) or sends a newer.
                self.node_policy = Some(version);
                let mut out = vec![HubOutput::NodePolicy { version }];
                out.extend(self.offer_policy());
                out
            }
            Frame::Holds { doc } => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "holds before hello",
                    ));
                }
                vec![HubOutput::NodeHolds { doc }]
            }
            Frame::LocalEntries { doc } => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "local entries before hello",
                    ));
                }
                vec![HubOutput::NodeLocalEntries { doc }]
            }
            Frame::HotlistApplied { source, generation } => {
                if !self.greeted {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "bulk list report before hello",
                    ));
                }
                self.hotlist_applied(source, generation)
            }
            Frame::HeldPolicy { policy } => {
                if !self.asked_policy {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "a policy shown without being asked",
                    ));
                }
                self.asked_policy = false;
                vec![HubOutput::NodeHeldPolicy { policy }]
            }
            Frame::HeldList { header } => {
                if self.asked_lists == 0 {
                    return self.refused(refuse(
                        RefusalCode::Malformed,
                        None,
                        "a bulk list header shown without being asked",
                    ));
                }
                self.asked_lists -= 1;
                vec![HubOutput::NodeHeldList { header }]
            }
            Frame::HotlistDelta { .. }
            | Frame::HotlistFull { .. }
            | Frame::ShowHeld { .. }
            | Frame::Policy { .. }
            | Frame::PolicyCurrent { .. }
            | Frame::Welcome(_)
            | Frame::WantImages { .. }
            | Frame::Ack(_)
            | Frame::Refused(_)
            | Frame::ImageAck { .. }
            | Frame::Pong { .. } => self.refused(refuse(
                RefusalCode::Malformed,
                None,
                "a hub-to-node frame sent to the hub",
            )),
        }
    }

    /// A node's signed statement that it lost entries of its own log.
    pub(super) fn loss(&mut self, bytes: &[u8], now: UnixMillis) -> Vec<HubOutput> {
        let e = match SignedEntry::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                return self.refused(refuse(
                    RefusalCode::Malformed,
                    None,
                    format!("loss record: {e}"),
                ))
            }
        };
        let Some((first, last, head)) = crate::log::loss::statement(&e) else {
            return self.refused(refuse(
                RefusalCode::Malformed,
                Some(e.seq()),
                "a loss frame without a loss record",
            ));
        };
        let signed = self
            .keys
            .effective
            .iter()
            .chain(self.keys.pending.iter())
            .any(|k| e.signature_valid(&k.key));
        if e.header.device != self.device || !signed {
            return self.refused(refuse(
                RefusalCode::BadSignature,
                Some(e.seq()),
                "loss record not signed by this node",
            ));
        }
        if last < self.progress.next_seq {
            // Already past it (a replay): say where the hub stands.
            return vec![HubOutput::Send(Frame::Ack(self.receipt(now)))];
        }
        if first != self.progress.next_seq {
            let mut out = self.refused(refuse(
                RefusalCode::Gap,
                Some(first),
                format!(
                    "loss record starts at {first}; expected {}",
                    self.progress.next_seq
                ),
            ));
            out.push(HubOutput::Send(Frame::Ack(self.receipt(now))));
            return out;
        }
        vec![HubOutput::Skip {
            first,
            last,
            head,
            statement: Box::new(e),
        }]
    }

    /// The store's answer to an [`HubOutput::Ingest`]: the new progress after
    /// a durable commit, or why the batch was refused.
    pub fn ingested(
        &mut self,
        result: Result<Progress, Refusal>,
        now: UnixMillis,
    ) -> Vec<HubOutput> {
        match result {
            Ok(p) => {
                if p.next_seq >= self.progress.next_seq {
                    self.progress = p;
                }
                vec![HubOutput::Send(Frame::Ack(self.receipt(now)))]
            }
            Err(r) if r.code == RefusalCode::Gap => {
                // Not an attack on a reliable stream's order but worth a log
                // line; the receipt tells the node where to resume.
                let mut out = self.refused(r);
                out.push(HubOutput::Send(Frame::Ack(self.receipt(now))));
                out
            }
            Err(r) => self.refused(r),
        }
    }

    /// The store's answer to [`HubOutput::StoreImage`].
    pub fn image_stored(&mut self, hash: Hash32) -> Vec<HubOutput> {
        let mut out = vec![HubOutput::Send(Frame::ImageAck { hash })];
        if self.wanted.remove(&hash) && self.wanted.is_empty() {
            if let Some((from, to)) = self.scan.take() {
                out.push(HubOutput::FindMissingImages { from, to });
            }
        }
        out
    }

    /// The store's answer to [`HubOutput::FindMissingImages`]: images it
    /// lacks (at most [`MAX_WANTED_IMAGES`]) and how far it looked
    /// (`scanned_to`, below the `to` asked when the page filled up).
    pub fn images_missing(
        &mut self,
        images: Vec<(u64, Hash32)>,
        scanned_to: u64,
        to: u64,
    ) -> Vec<HubOutput> {
        let images: Vec<(u64, Hash32)> = images.into_iter().take(MAX_WANTED_IMAGES).collect();
        self.scan = (scanned_to < to).then_some((scanned_to, to));
        if images.is_empty() {
            return match self.scan.take() {
                Some((from, to)) => vec![HubOutput::FindMissingImages { from, to }],
                None => Vec::new(),
            };
        }
        self.wanted.extend(images.iter().map(|(_, h)| *h));
        vec![HubOutput::Send(Frame::WantImages { images })]
    }
}
