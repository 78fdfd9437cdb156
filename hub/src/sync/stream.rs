//! One node's streams: each stream's reading half verifies frames through
//! the node's session and queues their writes (at most [`PIPELINE`] ahead);
//! its answering half waits for each commit in order and only then
//! acknowledges. The control stream also carries what the hub pushes
//! while the node is connected (policy, holds, local entries, bulk lists).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alpr_shared::sync::{HubOutput, HubSession};
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::quic::{self, ReadFrameError};
use alpr_shared::wire::{Frame, Lane, Refusal, RefusalCode};
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use super::{hotlists, limits, ADMITTED_ENTRIES, PIPELINE};
use crate::hub::Hub;
use crate::ingest::Pending;
use crate::store::{WriteOp, WriteResult};

pub(super) struct StreamCtx {
    /// The node's share of the hub's memory and writer queue.
    pub(super) budget: Arc<limits::NodeBudget>,
    /// The hub's admission of entries ([`ADMITTED_ENTRIES`]).
    pub(super) admission: Arc<Semaphore>,
    /// The hub's signature-checking slots ([`super::verify_slots`]).
    pub(super) verify_slots: Arc<Semaphore>,
    pub(super) hub: Arc<Hub>,
    pub(super) session: Arc<Mutex<HubSession>>,
    pub(super) device: DeviceId,
    /// A pole or a patrol vehicle, by its certificate.
    pub(super) kind: alpr_shared::types::DeviceKind,
    pub(super) serial: String,
    /// The certificate the node authenticated with, kept for audits.
    pub(super) cert_der: Vec<u8>,
    pub(super) peer: SocketAddr,
    /// The answering half of the node's control stream, once it opened
    /// one: policy changes are pushed through it.
    /// Weak: the stream ends when its reading half does.
    pub(super) control: Mutex<Option<mpsc::WeakSender<Job>>>,
    /// Held while one bulk list's frames are queued: a whole list's chunks
    /// are never interleaved with another send of the same node.
    pub(super) hotlist_turn: tokio::sync::Mutex<()>,
}

/// What the answering half of a stream does, in the order the frames came.
pub(super) enum Job {
    Send(Frame),
    Refused(Refusal),
    /// Wait for this batch's commit, then acknowledge it (or refuse it).
    Ingest {
        pending: Pending,
        first: Option<u64>,
        count: usize,
        /// Released once the commit is answered.
        _admitted: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Wait for this image's commit, then acknowledge it.
    Image {
        pending: Pending,
        seq: u64,
        hash: alpr_shared::types::Hash32,
    },
    /// The stream broke the protocol: refuse and reset it.
    Malformed(String),
}

impl StreamCtx {
    /// Take the changes in a node's copy of a shared document.
    async fn take_node_doc(&self, which: crate::node_writes::NodeDoc, doc: Vec<u8>) {
        if let Err(e) = self
            .hub
            .node_writes
            .take(&self.device, self.kind, which, doc)
            .await
        {
            warn!(node = %self.device, ?which, error = %e, "a node's document was not taken");
        }
    }

    pub(super) fn with_session<T>(&self, f: impl FnOnce(&mut HubSession) -> T) -> Option<T> {
        self.session.lock().ok().map(|mut s| f(&mut s))
    }

    /// A new policy version: the session sends it on the control stream if
    /// the node holds an older one (or keeps it for the node's hello).
    pub(super) async fn push_policy(&self, p: &alpr_shared::control::SignedPolicy) {
        let encoded = Arc::new(p.encode());
        let outs = self
            .with_session(|s| s.set_policy(p.version(), encoded))
            .unwrap_or_default();
        self.push(outs, || {
            info!(version = p.version(), "pushing the new policy to the node");
        })
        .await;
    }

    /// The answering half of the node's control stream, while it is open.
    fn control(&self) -> Option<mpsc::Sender<Job>> {
        self.control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|w| w.upgrade()))
    }

    /// Queue the frames the session sends (`outs`) on the control stream,
    /// if the node opened one (else its hello gets them); `pushed` is
    /// called before each.
    async fn push(&self, outs: Vec<HubOutput>, pushed: impl Fn()) {
        let Some(tx) = self.control() else {
            return;
        };
        for o in outs {
            if let HubOutput::Send(f) = o {
                pushed();
                let _ = tx.send(Job::Send(f)).await;
            }
        }
    }

    /// The hub's local hotlist entries changed: send them to the node.
    pub(super) async fn push_local_entries(&self, doc: Arc<Vec<u8>>) {
        let outs = self
            .with_session(|s| s.set_local_entries(doc))
            .unwrap_or_default();
        self.push(outs, || {}).await;
    }

    /// A new generation while connected: send it on the control stream
    /// (nothing if the node has not opened one: its hello gets it).
    pub(super) async fn push_hotlist(&self, source: String, from: Option<u64>, to: u64) {
        if let Some(tx) = self.control() {
            self.send_hotlist(&tx, source, from, to).await;
        }
    }

    /// Queue bulk list `source` at generation `to` for the node: the delta
    /// from `from` when the hub has one that fits a frame, else the list
    /// whole. `false` if the stream is gone.
    async fn send_hotlist(
        &self,
        jobs: &mpsc::Sender<Job>,
        source: String,
        from: Option<u64>,
        to: u64,
    ) -> bool {
        let _turn = self.hotlist_turn.lock().await;
        let plan = match hotlists::Plan::make(&self.hub.hotlists, &source, from, to).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                warn!(
                    source,
                    generation = to,
                    "the hub no longer holds that generation; not sent"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(
                    source,
                    generation = to,
                    error = %e,
                    "reading a bulk list to send"
                );
                return true;
            }
        };
        let how = match &plan {
            hotlists::Plan::Delta(_) => "delta",
            hotlists::Plan::Whole(_) => "whole",
        };
        info!(source, from, to, how, "sending a bulk list to the node");
        plan.send(&source, to, |f| {
            let jobs = jobs.clone();
            async move { jobs.send(Job::Send(f)).await.map_err(|_| ()) }
        })
        .await
        .is_ok()
    }

    /// The hub's holds changed: send them to the node.
    pub(super) async fn push_holds(&self, doc: Arc<Vec<u8>>) {
        let outs = self.with_session(|s| s.set_holds(doc)).unwrap_or_default();
        self.push(outs, || {}).await;
    }

    /// One stream: its reading half verifies frames and queues their writes
    /// (at most [`PIPELINE`] ahead); its answering half waits for each
    /// commit in order and only then acknowledges.
    pub(super) async fn run_stream(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let mut tag = [0u8; 1];
        if recv.read_exact(&mut tag).await.is_err() {
            return;
        }
        let Some(lane) = Lane::from_tag(tag[0]) else {
            self.malformed(&mut send, &mut recv, "unknown stream kind")
                .await;
            return;
        };
        let _ = send.set_priority(lane.priority());
        let (jobs, queue) = mpsc::channel::<Job>(PIPELINE);
        if lane == Lane::Control {
            if let Ok(mut c) = self.control.lock() {
                *c = Some(jobs.downgrade());
            }
        }
        tokio::join!(
            self.read_half(lane, recv, jobs),
            self.answer_half(send, queue)
        );
    }

    async fn read_half(&self, lane: Lane, mut recv: quinn::RecvStream, jobs: mpsc::Sender<Job>) {
        loop {
            let (frame, hold) = match self.budget.read_frame(&mut recv, lane.max_frame()).await {
                Ok(f) => f,
                Err(ReadFrameError::Wire(e)) => {
                    let _ = recv.stop(quic::STREAM_MALFORMED.into());
                    let _ = jobs.send(Job::Malformed(e.to_string())).await;
                    return;
                }
                Err(_) => return,
            };
            if frame.lane() != lane && !matches!(frame, Frame::Ping { .. }) {
                let _ = recv.stop(quic::STREAM_MALFORMED.into());
                let _ = jobs
                    .send(Job::Malformed("frame on the wrong stream".into()))
                    .await;
                return;
            }
            let now = UnixMillis::now();
            let hello_size = match &frame {
                Frame::Hello(h) => Some(h.log_size),
                _ => None,
            };
            // Admission: a frame of entries waits (in its stream) until the
            // entries ahead of it are few enough to be acknowledged soon.
            let mut admitted = match &frame {
                Frame::Entries(e) => {
                    let n = u32::try_from(e.entries.len().clamp(1, ADMITTED_ENTRIES)).unwrap_or(1);
                    match self.admission.clone().acquire_many_owned(n).await {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    }
                }
                _ => None,
            };
            // Verifying a frame's signatures is CPU work: it runs on the
            // blocking pool (and on several threads for a large frame),
            // never on the async workers.
            let Ok(slot) = self.verify_slots.clone().acquire_owned().await else {
                return;
            };
            let session = self.session.clone();
            let outs = match tokio::task::spawn_blocking(move || {
                let outs = session.lock().ok().map(|mut s| s.handle_frame(frame, now));
                drop(slot);
                outs
            })
            .await
            {
                Ok(Some(outs)) => outs,
                _ => return,
            };
            if let Some(size) = hello_size {
                let held = self.with_session(|s| s.progress().next_seq).unwrap_or(0);
                if size < held {
                    let r = Refusal {
                        code: RefusalCode::IdentityConflict,
                        seq: Some(size),
                        detail: format!(
                            "the node says its log has {size} entries but the hub holds {held}: \
                             its store was replaced, or another device uses its identity"
                        ),
                    };
                    self.hub.refuse(Some(&self.device), self.peer, &r).await;
                }
                let op = WriteOp::Contact {
                    device: self.device.clone(),
                    serial: self.serial.clone(),
                    cert_der: self.cert_der.clone(),
                    reported_size: size,
                    at: now,
                };
                if self.hub.writer.submit(op).await.is_err() {
                    return;
                }
            }
            // The frame's bytes stay reserved until its first write commits.
            let mut hold = Some(hold);
            let mut work: VecDeque<HubOutput> = outs.into();
            while let Some(o) = work.pop_front() {
                let job = match o {
                    HubOutput::FindMissingImages { from, to } => {
                        work.extend(self.find_missing_images(from, to));
                        continue;
                    }
                    HubOutput::Send(f) => Job::Send(f),
                    HubOutput::Refused(r) => Job::Refused(r),
                    // In order: after hello these go before the welcome.
                    HubOutput::SendHotlist { source, from, to } => {
                        if !self.send_hotlist(&jobs, source, from, to).await {
                            return;
                        }
                        continue;
                    }
                    HubOutput::NodeHotlists { held } => {
                        let op = WriteOp::NodeHotlists {
                            device: self.device.clone(),
                            held,
                        };
                        if self.hub.writer.submit(op).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Shown when asked: the hub learns how far its
                    // numbers had gone.
                    HubOutput::NodeHeldPolicy { policy } => {
                        self.held_policy(policy).await;
                        continue;
                    }
                    HubOutput::NodeHeldList { header } => {
                        self.held_list(header).await;
                        continue;
                    }
                    HubOutput::NodePolicy { version } => {
                        let op = WriteOp::NodePolicy {
                            device: self.device.clone(),
                            version,
                        };
                        if self.hub.writer.submit(op).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Taken change by change (each checked and in the
                    // access log, never merged wholesale); what is taken
                    // is published on the holds watch, which pushes it to
                    // every node.
                    HubOutput::NodeHolds { doc } => {
                        self.take_node_doc(crate::node_writes::NodeDoc::Holds, doc)
                            .await;
                        continue;
                    }
                    // Likewise for the local hotlist entries.
                    HubOutput::NodeLocalEntries { doc } => {
                        self.take_node_doc(crate::node_writes::NodeDoc::LocalEntries, doc)
                            .await;
                        continue;
                    }
                    HubOutput::Ingest(batch) => {
                        let (first, count) =
                            (batch.entries.first().map(|v| v.seq()), batch.entries.len());
                        let op = WriteOp::Ingest {
                            device: self.device.clone(),
                            entries: batch.entries,
                            checkpoint: batch.checkpoint,
                            new_key: batch.new_key,
                            at: now,
                        };
                        let held = hold.take().unwrap_or_default();
                        let held = held.with(self.budget.op_slot().await).boxed();
                        let Ok(pending) = self.hub.writer.enqueue_holding(op, held).await else {
                            return;
                        };
                        Job::Ingest {
                            pending,
                            first,
                            count,
                            _admitted: admitted.take(),
                        }
                    }
                    HubOutput::Skip {
                        first,
                        last,
                        head,
                        statement,
                    } => {
                        warn!(
                            first,
                            last,
                            recorded_at = statement.seq(),
                            "the node signed that it lost entries of its own log; moving past them"
                        );
                        let op = WriteOp::Skip {
                            device: self.device.clone(),
                            first,
                            last,
                            head,
                            at: now,
                        };
                        let Ok(pending) = self.hub.writer.enqueue(op).await else {
                            return;
                        };
                        Job::Ingest {
                            pending,
                            first: Some(first),
                            count: 0,
                            _admitted: None,
                        }
                    }
                    HubOutput::StoreImage { seq, image } => {
                        let hash = image.hash;
                        let op = WriteOp::Image {
                            device: self.device.clone(),
                            seq,
                            hash,
                            bytes: image.bytes,
                        };
                        let held = hold.take().unwrap_or_default();
                        let held = held.with(self.budget.op_slot().await).boxed();
                        let Ok(pending) = self.hub.writer.enqueue_holding(op, held).await else {
                            return;
                        };
                        Job::Image { pending, seq, hash }
                    }
                };
                if jobs.send(job).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn answer_half(&self, mut send: quinn::SendStream, mut queue: mpsc::Receiver<Job>) {
        while let Some(job) = queue.recv().await {
            let outs = match job {
                Job::Send(f) => vec![HubOutput::Send(f)],
                Job::Refused(r) => vec![HubOutput::Refused(r)],
                Job::Malformed(detail) => {
                    self.refuse_malformed(&detail).await;
                    let _ = send.reset(quic::STREAM_MALFORMED.into());
                    return;
                }
                Job::Ingest {
                    pending,
                    first,
                    count,
                    _admitted,
                } => {
                    let res = match pending.committed().await {
                        Ok(WriteResult::Ingested(r)) => r,
                        Ok(other) => {
                            tracing::error!(
                                ?other,
                                "the writer answered an ingest with something else"
                            );
                            return;
                        }
                        Err(e) => {
                            warn!(error = %e, "batch not stored; not acknowledged");
                            return;
                        }
                    };
                    if let Ok(i) = &res {
                        if i.duplicates > 0 {
                            warn!(
                                first_seq = first,
                                count,
                                duplicates = i.duplicates,
                                "replayed entries ignored: already stored"
                            );
                        }
                    }
                    let now = UnixMillis::now();
                    match self.with_session(|s| s.ingested(res.map(|i| i.progress), now)) {
                        Some(outs) => outs,
                        None => return,
                    }
                }
                Job::Image { pending, seq, hash } => match pending.committed().await {
                    Ok(WriteResult::Image(true)) => {
                        match self.with_session(|s| s.image_stored(hash)) {
                            Some(outs) => outs,
                            None => return,
                        }
                    }
                    Ok(_) => {
                        let r = Refusal {
                            code: RefusalCode::Malformed,
                            seq: Some(seq),
                            detail: "image not named by that entry".into(),
                        };
                        vec![
                            HubOutput::Send(Frame::Refused(r.clone())),
                            HubOutput::Refused(r),
                        ]
                    }
                    Err(e) => {
                        warn!(error = %e, "image not stored; not acknowledged");
                        return;
                    }
                },
            };
            let mut work: VecDeque<HubOutput> = outs.into();
            while let Some(o) = work.pop_front() {
                match o {
                    HubOutput::FindMissingImages { from, to } => {
                        work.extend(self.find_missing_images(from, to));
                    }
                    HubOutput::Send(f) => {
                        if quic::write_frame(&mut send, &f).await.is_err() {
                            return;
                        }
                    }
                    HubOutput::Refused(r) => {
                        self.hub.refuse(Some(&self.device), self.peer, &r).await
                    }
                    // The session asks for writes only in answer to frames.
                    HubOutput::Ingest(_)
                    | HubOutput::StoreImage { .. }
                    | HubOutput::NodePolicy { .. }
                    | HubOutput::NodeHolds { .. }
                    | HubOutput::NodeLocalEntries { .. }
                    | HubOutput::SendHotlist { .. }
                    | HubOutput::NodeHotlists { .. }
                    | HubOutput::NodeHeldPolicy { .. }
                    | HubOutput::NodeHeldList { .. }
                    | HubOutput::Skip { .. } => {}
                }
            }
        }
    }

    /// Ask the store which images of this node's entries `from..to` it
    /// lacks, and tell the session (which asks the node for them).
    fn find_missing_images(&self, from: u64, to: u64) -> Vec<HubOutput> {
        match self.hub.storage.missing_images(
            &self.device,
            from,
            to,
            alpr_shared::wire::MAX_WANTED_IMAGES,
        ) {
            Ok(m) => {
                if !m.images.is_empty() {
                    warn!(
                        count = m.images.len(),
                        first_seq = m.images.first().map(|(s, _)| *s),
                        "images missing for stored entries (restored from a backup?): asking the node"
                    );
                }
                self.with_session(|s| s.images_missing(m.images, m.scanned_to, to))
                    .unwrap_or_default()
            }
            Err(e) => {
                tracing::error!(error = %e, "looking for missing images");
                Vec::new()
            }
        }
    }

    async fn malformed(
        &self,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        detail: &str,
    ) {
        self.refuse_malformed(detail).await;
        let _ = recv.stop(quic::STREAM_MALFORMED.into());
        let _ = send.reset(quic::STREAM_MALFORMED.into());
    }

    /// Log, count and record a malformed frame from this node.
    async fn refuse_malformed(&self, detail: &str) {
        let r = Refusal {
            code: RefusalCode::Malformed,
            seq: None,
            detail: format!("{detail}; closing the stream"),
        };
        self.hub.refuse(Some(&self.device), self.peer, &r).await;
    }
}
