//! The hub's side of one node's connection.

use std::sync::Arc;

use crate::crypto::{tag, tagged_hash, PublicKey, SecretKey};
use crate::log::{SignedCheckpoint, SignedEntry, MAX_ENTRY_BYTES};
use crate::types::{DeviceId, Hash32, UnixMillis};
use crate::wire::{
    Entries, Frame, ImageBlob, Receipt, Refusal, RefusalCode, SignedReceipt, Welcome,
    MAX_WANTED_IMAGES, PROTOCOL_VERSION,
};

use super::Progress;

/// An entry whose signature and content commitment have been checked,
/// with its canonical bytes and hash.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entry: SignedEntry,
    pub bytes: Vec<u8>,
    pub hash: Hash32,
}

impl Verified {
    pub fn seq(&self) -> u64 {
        self.entry.header.seq
    }
}

/// A verified frame: its entries and the node's checkpoint at its end
/// (checked against those entries).
#[derive(Debug, Clone)]
pub struct VerifiedBatch {
    pub entries: Vec<Verified>,
    pub checkpoint: Option<SignedCheckpoint>,
}

/// The validity window of the node's certificate: every entry's capture
/// time must fall inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: UnixMillis,
    pub not_after: UnixMillis,
}

impl Validity {
    /// No limit (tools and tests that have no certificate).
    pub const ALWAYS: Validity = Validity {
        not_before: UnixMillis(0),
        not_after: UnixMillis(u64::MAX),
    };

    pub fn contains(&self, t: UnixMillis) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

fn refuse(code: RefusalCode, seq: Option<u64>, detail: impl Into<String>) -> Refusal {
    Refusal {
        code,
        seq,
        detail: detail.into(),
    }
}

/// Rebuild and check a frame from `device`, each entry in one pass: the
/// full entry from its compact form (device, sequence number and `prev`
/// chain filled in), its bounds, its capture time against the certificate's
/// `validity`, its content commitment, its canonical bytes and hash; then
/// every signature in one Ed25519 batch verification (on failure, each entry
/// is checked with `verify_strict` to name the bad one); then the frame's
/// checkpoint, which must be signed by the node and name the head reached.
pub fn verify_batch(
    key: &PublicKey,
    device: &DeviceId,
    validity: Validity,
    batch: Entries,
) -> Result<VerifiedBatch, Refusal> {
    let first_seq = batch.first_seq;
    let mut prev = batch.prev;
    let mut out = Vec::with_capacity(batch.entries.len());
    let mut signed = Vec::with_capacity(batch.entries.len());
    for (i, w) in batch.entries.into_iter().enumerate() {
        let seq = first_seq
            .checked_add(i as u64)
            .ok_or_else(|| refuse(RefusalCode::Malformed, None, "sequence overflow"))?;
        let entry = w.into_entry(device.clone(), seq, prev);
        entry
            .validate()
            .map_err(|e| refuse(RefusalCode::Malformed, Some(seq), e.to_string()))?;
        if !validity.contains(entry.header.captured_at) {
            return Err(refuse(
                RefusalCode::OutsideValidity,
                Some(seq),
                format!(
                    "captured at {} outside the certificate's validity ({} to {})",
                    entry.header.captured_at, validity.not_before, validity.not_after
                ),
            ));
        }
        if !entry.body_matches() {
            return Err(refuse(
                RefusalCode::Edited,
                Some(seq),
                "content does not match the signed header",
            ));
        }
        // The signed message is the tag and the canonical header: encode
        // the header once, straight after the tag, and hash it from there.
        let msg = postcard::to_extend(&entry.header, tag::ENTRY_SIG.to_vec())
            .expect("a header always serialises");
        let hash = tagged_hash(tag::ENTRY_HASH, &[&msg[tag::ENTRY_SIG.len()..]]);
        let bytes = entry.encode();
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(refuse(
                RefusalCode::Malformed,
                Some(seq),
                format!("entry of {} bytes is over the limit", bytes.len()),
            ));
        }
        prev = hash;
        signed.push(msg);
        out.push(Verified { entry, bytes, hash });
    }
    let msgs: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> = out
        .iter()
        .map(|v| ed25519_dalek::Signature::from_bytes(&v.entry.signature.0))
        .collect();
    let keys = vec![*key.inner(); msgs.len()];
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_err() {
        let bad = out
            .iter()
            .find(|v| !v.entry.signature_valid(key))
            .map(Verified::seq);
        return Err(refuse(
            RefusalCode::BadSignature,
            bad,
            "signature does not verify with the node's certified key",
        ));
    }
    if let Some(c) = &batch.checkpoint {
        let end = first_seq + out.len() as u64;
        if c.checkpoint.device != *device || !c.signature_valid(key) {
            return Err(refuse(
                RefusalCode::BadSignature,
                Some(end),
                "checkpoint not signed by this node",
            ));
        }
        let head = out.last().map_or(batch.prev, |v| v.hash);
        if c.checkpoint.size != end || c.checkpoint.head != head {
            return Err(refuse(
                RefusalCode::Fork,
                Some(end),
                "the node signed a checkpoint that does not match the entries it sent",
            ));
        }
    }
    Ok(VerifiedBatch {
        entries: out,
        checkpoint: batch.checkpoint,
    })
}

/// What the hub driver must do for a session.
#[derive(Debug)]
pub enum HubOutput {
    /// Send this frame to the node.
    Send(Frame),
    /// Place these verified entries on the stored chain, check the
    /// checkpoint against the one stored, commit durably, and report with
    /// [`HubSession::ingested`].
    Ingest(VerifiedBatch),
    /// Store this image (already checked against its hash) if the entry
    /// `seq` of this device names it, then call [`HubSession::image_stored`].
    StoreImage { seq: u64, image: ImageBlob },
    /// Log and count this refusal (the frame to the node is sent as well).
    Refused(Refusal),
    /// Find images the hub lacks for this device's entries `from..to`
    /// (at most [`MAX_WANTED_IMAGES`]) and report them with
    /// [`HubSession::images_missing`].
    FindMissingImages { from: u64, to: u64 },
    /// The node lost entries `first..=last` from its own store and signed
    /// `statement` saying so: move the stored chain past them (`head` is
    /// the hash of `last`) if it stands at `first`, commit, and report
    /// with [`HubSession::ingested`].
    Skip {
        first: u64,
        last: u64,
        head: Hash32,
        statement: Box<SignedEntry>,
    },
}

/// How far back from what it holds the hub looks for missing images when a
/// node connects (a restored hub lost the images of its latest entries; an
/// older gap shows in `hub audit verify`).
pub const MISSING_IMAGE_SCAN: u64 = 16_384;

/// The hub's core for one authenticated node connection.
#[derive(Debug)]
pub struct HubSession {
    device: DeviceId,
    node_key: PublicKey,
    validity: Validity,
    hub_key: Arc<SecretKey>,
    progress: Progress,
    greeted: bool,
    /// Images asked of the node and not yet received.
    wanted: std::collections::HashSet<Hash32>,
    /// Where the search for missing images goes on, and where it ends.
    scan: Option<(u64, u64)>,
}

impl HubSession {
    /// A session for `device` (the certificate's name and key), whose log the
    /// hub holds up to `progress`.
    pub fn new(
        device: DeviceId,
        node_key: PublicKey,
        hub_key: Arc<SecretKey>,
        progress: Progress,
    ) -> Self {
        HubSession {
            device,
            node_key,
            validity: Validity::ALWAYS,
            hub_key,
            progress,
            greeted: false,
            wanted: std::collections::HashSet::new(),
            scan: None,
        }
    }

    /// Refuse entries captured outside the certificate's validity.
    pub fn with_validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// The receipt for what is held now.
    pub fn receipt(&self, now: UnixMillis) -> SignedReceipt {
        Receipt {
            format: 1,
            device: self.device.clone(),
            next_seq: self.progress.next_seq,
            head: self.progress.head,
            at: now,
        }
        .sign(&self.hub_key)
    }

    fn refused(&self, r: Refusal) -> Vec<HubOutput> {
        vec![
            HubOutput::Send(Frame::Refused(r.clone())),
            HubOutput::Refused(r),
        ]
    }

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
                let mut out = vec![HubOutput::Send(Frame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    receipt: self.receipt(now),
                }))];
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
                match verify_batch(&self.node_key, &self.device, self.validity, batch) {
                    Ok(v) => vec![HubOutput::Ingest(v)],
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
            Frame::Welcome(_)
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
    fn loss(&mut self, bytes: &[u8], now: UnixMillis) -> Vec<HubOutput> {
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
        if e.header.device != self.device || !e.signature_valid(&self.node_key) {
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
