//! What the edge sends next: entries from the hub's receipt on, losses it\nrecorded, then images within the window the link allows.

use super::*;

impl EdgeSync {
    pub fn set_metered(&mut self, metered: bool) {
        self.config.metered = metered;
    }

    /// The transport's congestion window (bytes it lets be in flight; with
    /// BBR about twice its estimate of the bandwidth-delay product). The
    /// image window becomes twice that, clamped to the configured bounds:
    /// enough that the transport, not this window, limits the lane (an
    /// image is acknowledged only after the hub committed it, a little
    /// after it arrived), while only a few round trips of images wait in
    /// the send buffer, so entries and control are not queued behind them
    /// and no image waits long enough to be resent needlessly.
    pub fn set_congestion_window(&mut self, cwnd: u64) {
        let bdp = usize::try_from(cwnd).unwrap_or(usize::MAX);
        self.image_window = bdp.saturating_mul(2).clamp(
            self.config.window_image_bytes_min.max(1),
            self.config
                .window_image_bytes_max
                .max(self.config.window_image_bytes_min.max(1)),
        );
    }

    /// The image window in bytes now.
    pub fn image_window(&self) -> usize {
        self.image_window
    }

    /// Images sent and not yet acknowledged: (count, bytes).
    pub fn images_in_flight(&self) -> (usize, usize) {
        (self.images_in_flight.len(), self.image_bytes_in_flight)
    }

    pub(super) fn clear_images_in_flight(&mut self) {
        self.images_in_flight.clear();
        self.image_bytes_in_flight = 0;
        self.image_progress = None;
    }

    /// When an image sent at `sent` counts as lost if still unacknowledged.
    pub(super) fn image_deadline(&self, sent: Now) -> Now {
        self.image_progress.map_or(sent, |p| p.max(sent)) + self.config.retransmit_after
    }

    pub(super) fn forget_image(&mut self, hash: &Hash32) -> Option<u64> {
        let (seq, _, bytes) = self.images_in_flight.remove(hash)?;
        self.image_bytes_in_flight = self.image_bytes_in_flight.saturating_sub(bytes);
        Some(seq)
    }

    /// The next frame to send, if any: control first, then entries within
    /// the window, then images (not on a metered link unless allowed).
    pub fn poll_transmit(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if !matches!(self.state, LinkState::Ready) {
            return None;
        }
        // The backlog waits for the lists the hub sent before its welcome.
        if self.hotlist_wait_until.is_some_and(|t| now < t) {
            return None;
        }
        let log_len = src.log_len();
        if self.next_send < log_len && self.next_send < self.acked + self.config.window_entries {
            let room = (self.acked + self.config.window_entries - self.next_send) as usize;
            let mut max = self.config.batch_entries.min(room);
            // Nothing is sent past an entry found damaged until its loss
            // record is written.
            if let Some(s) = self.loss_reported.filter(|s| *s >= self.next_send) {
                if s == self.next_send {
                    return self.lost_entry(now, src);
                }
                max = max.min(usize::try_from(s - self.next_send).unwrap_or(usize::MAX));
            }
            if let Some(o) = self.recorded_loss(now, src) {
                return Some(o);
            }
            let raw = src.entries(self.next_send, max, self.config.batch_bytes);
            if !raw.is_empty() {
                // The readable run from `next_send`: it ends before an entry
                // the store cannot give back (damaged or missing).
                let mut decoded = Vec::with_capacity(raw.len());
                for b in &raw {
                    match SignedEntry::decode(b) {
                        Ok(e) if e.seq() == self.next_send + decoded.len() as u64 => {
                            decoded.push(e)
                        }
                        _ => break,
                    }
                }
                if decoded.is_empty() {
                    return self.lost_entry(now, src);
                }
                let frame = Some(decoded).and_then(|log| {
                    let checkpoint = match (&self.signer, log.last()) {
                        (Some((key, wall)), Some(last)) => Some(sign_checkpoint(
                            key,
                            self.device.clone(),
                            last.seq() + 1,
                            last.hash(),
                            UnixMillis(
                                wall.0
                                    .saturating_add(u64::try_from(now.as_millis()).unwrap_or(0)),
                            ),
                        )),
                        _ => None,
                    };
                    Entries::from_log(log, checkpoint)
                });
                let Some(frame) = frame else {
                    self.events.push_back(EdgeEvent::Protocol(format!(
                        "the local log cannot be read from entry {}",
                        self.next_send
                    )));
                    return None;
                };
                if self.next_send == self.acked {
                    self.last_progress = Some(now);
                }
                self.next_send = frame.end();
                return Some(Outgoing {
                    lane: Lane::Entries,
                    frame: Frame::Entries(frame),
                });
            }
        }
        if self.config.metered && !self.config.images_on_metered {
            return None;
        }
        let room = |s: &Self| {
            s.images_in_flight.is_empty()
                || (s.images_in_flight.len() < s.config.window_images
                    && s.image_bytes_in_flight < s.image_window)
        };
        // Images the hub asked for (it lacks them for entries it holds)
        // go first.
        while room(self) {
            let Some((seq, hash)) = self.wanted.pop_front() else {
                break;
            };
            if self.images_in_flight.contains_key(&hash) {
                continue;
            }
            // An image the node no longer has cannot be sent; the hub's
            // audit reports it missing.
            if let Some(bytes) = src.image(&hash) {
                self.image_bytes_in_flight += bytes.len();
                self.images_in_flight.insert(hash, (seq, now, bytes.len()));
                return Some(Outgoing {
                    lane: Lane::Images,
                    frame: Frame::Image(ImageBlob { seq, hash, bytes }),
                });
            }
        }
        if room(self) {
            // The queue lists images in flight and (briefly) acknowledged
            // ones too: look far enough to find one that is neither.
            let limit = self.images_in_flight.len() + self.images_done.len().min(256) + 8;
            for (seq, hash) in src.pending_images(self.acked, limit) {
                if self.images_in_flight.contains_key(&hash) || self.images_done.contains(&hash) {
                    continue;
                }
                let Some(bytes) = src.image(&hash) else {
                    // Gone from the store: nothing to send, count it done.
                    self.events.push_back(EdgeEvent::ImageAcked { seq, hash });
                    continue;
                };
                self.image_bytes_in_flight += bytes.len();
                self.images_in_flight.insert(hash, (seq, now, bytes.len()));
                return Some(Outgoing {
                    lane: Lane::Images,
                    frame: Frame::Image(ImageBlob { seq, hash, bytes }),
                });
            }
        }
        None
    }

    /// Entry `next_send` cannot be read from the node's own store: send
    /// the node's signed loss record for it if there is one, else ask the
    /// driver to write one ([`EdgeEvent::LocalLoss`]) and wait.
    pub(super) fn lost_entry(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        let seq = self.next_send;
        if let Some(o) = self.recorded_loss(now, src) {
            return Some(o);
        }
        if self.loss_reported != Some(seq) {
            self.loss_reported = Some(seq);
            self.events.push_back(EdgeEvent::LocalLoss { seq });
        }
        None
    }

    /// Whether entry `seq` of the node's own log fails the node's own
    /// checks (undecodable, content not matching its header, signature not
    /// its key's): damage in its store, not a fault of the hub.
    pub(super) fn damaged_locally(&self, seq: u64, src: &dyn LogSource) -> bool {
        let raw = src.entries(seq, 1, usize::MAX);
        let Some(e) = raw.first().and_then(|b| SignedEntry::decode(b).ok()) else {
            return true;
        };
        e.seq() != seq
            || !e.body_matches()
            || self
                .signer
                .as_ref()
                .is_some_and(|(k, _)| !e.signature_valid(&k.public()))
    }

    /// The node's signed loss record for entry `next_send`, if it wrote
    /// one: send it in place of the lost entries.
    pub(super) fn recorded_loss(&mut self, now: Now, src: &dyn LogSource) -> Option<Outgoing> {
        let seq = self.next_send;
        let (last, entry) = src.loss_at(seq).and_then(|b| {
            let e = SignedEntry::decode(&b).ok()?;
            let (first, last, _) = crate::log::loss::statement(&e)?;
            (first == seq).then_some((last, b))
        })?;
        if self.loss_reported == Some(seq) {
            self.loss_reported = None;
        }
        if self.next_send == self.acked {
            self.last_progress = Some(now);
        }
        self.next_send = last + 1;
        Some(Outgoing {
            lane: Lane::Entries,
            frame: Frame::Loss { entry },
        })
    }
}
