//! The hub's side of one node's connection.

use std::sync::Arc;

use crate::crypto::{tag, tagged_hash, PublicKey};
use crate::log::{SignedCheckpoint, SignedEntry, MAX_ENTRY_BYTES};
use crate::signer::{HubKey, ReceiptSigning};
use crate::types::{DeviceId, Hash32, UnixMillis};
use crate::wire::{
    Entries, Frame, ImageBlob, Receipt, Refusal, RefusalCode, SignedReceipt, Welcome,
    MAX_WANTED_IMAGES, PROTOCOL_VERSION,
};

use super::Progress;

mod frames;

mod control;

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
    /// Set when entries of this batch are signed by the node's pending
    /// (new) certificate: it takes effect at the first of them the store
    /// appends to the chain.
    pub new_key: Option<NewKey>,
}

/// A pending certificate whose key signed entries from `first_seq` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub serial: String,
    pub first_seq: u64,
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

/// One certificate a node has held, as ingest uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKey {
    /// Serial number as lower-case hex.
    pub serial: String,
    pub key: PublicKey,
    pub validity: Validity,
    /// The first sequence number this key signs; `None` while pending.
    pub effective_from: Option<u64>,
    /// Revoked: entries captured at or after this time are refused.
    pub revoked_at: Option<UnixMillis>,
}

/// The keys in force along a node's log: the certificates that took
/// effect, in order, and at most one pending (the one the node connected
/// with, not yet proved to extend the same log). Keys only move forward:
/// entry `seq` is checked with the certificate in force at `seq`, and the
/// pending one may only sign after the last effective one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeKeys {
    effective: Vec<NodeKey>,
    pending: Option<NodeKey>,
}

impl NodeKeys {
    /// One key in force from the start (tools, tests, benches).
    pub fn single(key: PublicKey, validity: Validity) -> Self {
        NodeKeys {
            effective: vec![NodeKey {
                serial: String::new(),
                key,
                validity,
                effective_from: Some(0),
                revoked_at: None,
            }],
            pending: None,
        }
    }

    /// From every certificate the hub holds for a node and the one it
    /// connected with (`current`, pending unless it already took effect).
    /// Other pending certificates vouch for nothing.
    pub fn new(held: Vec<NodeKey>, current: NodeKey) -> Self {
        let mut effective: Vec<NodeKey> = held
            .into_iter()
            .filter(|k| k.effective_from.is_some())
            .collect();
        effective.sort_by_key(|k| k.effective_from);
        let pending = match effective.iter_mut().find(|k| k.serial == current.serial) {
            Some(k) => {
                k.revoked_at = k.revoked_at.or(current.revoked_at);
                None
            }
            None => Some(NodeKey {
                effective_from: None,
                ..current
            }),
        };
        NodeKeys { effective, pending }
    }

    /// The pending certificate took effect at `seq`.
    pub fn took_effect(&mut self, serial: &str, seq: u64) {
        if self.pending.as_ref().is_some_and(|p| p.serial == serial) {
            if let Some(mut k) = self.pending.take() {
                k.effective_from = Some(seq);
                self.effective.push(k);
            }
        }
    }

    /// Record a revocation of `serial` effective at `at`.
    pub fn revoke(&mut self, serial: &str, at: UnixMillis) {
        for k in self.effective.iter_mut().chain(self.pending.as_mut()) {
            if k.serial == serial {
                k.revoked_at = Some(k.revoked_at.map_or(at, |t| t.min(at)));
            }
        }
    }

    /// The newest key: what signs the node's checkpoints from now on.
    fn newest(&self) -> Option<&NodeKey> {
        self.pending.as_ref().or(self.effective.last())
    }

    /// Index of the effective certificate in force at `seq`.
    fn in_force(&self, seq: u64) -> Option<usize> {
        self.effective
            .iter()
            .rposition(|k| k.effective_from.is_some_and(|f| f <= seq))
    }
}

/// Which certificate signed an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Effective(usize),
    Pending,
}

fn refuse(code: RefusalCode, seq: Option<u64>, detail: impl Into<String>) -> Refusal {
    Refusal {
        code,
        seq,
        detail: detail.into(),
    }
}

/// Check one entry against one certificate: the signature (with
/// `verify_strict`, the auditor's rule), the capture time within its
/// validity, and before its revocation.
fn check_with(k: &NodeKey, msg: &[u8], v: &Verified) -> Result<(), Refusal> {
    let seq = Some(v.seq());
    let sig = crate::crypto::Signature(v.entry.signature.0);
    if !k.key.verify(&[], msg, &sig) {
        return Err(refuse(
            RefusalCode::BadSignature,
            seq,
            "signature does not verify with the node's certified key",
        ));
    }
    let at = v.entry.header.captured_at;
    if !k.validity.contains(at) {
        return Err(refuse(
            RefusalCode::OutsideValidity,
            seq,
            format!(
                "captured at {} outside the certificate's validity ({} to {})",
                at, k.validity.not_before, k.validity.not_after
            ),
        ));
    }
    if k.revoked_at.is_some_and(|r| r <= at) {
        return Err(refuse(
            RefusalCode::Revoked,
            seq,
            format!("signed by certificate {} after its revocation", k.serial),
        ));
    }
    Ok(())
}

/// Which certificate accepts entry `v` (message `msg`): the one in force at
/// its sequence number, else the pending one if it may sign there.
fn signer_of(keys: &NodeKeys, msg: &[u8], v: &Verified) -> Result<Signer, Refusal> {
    let primary = keys.in_force(v.seq());
    let pending_may =
        keys.pending.is_some() && primary.is_none_or(|i| i + 1 == keys.effective.len());
    let first = match primary.and_then(|i| keys.effective.get(i).map(|k| (i, k))) {
        Some((i, k)) => match check_with(k, msg, v) {
            Ok(()) => return Ok(Signer::Effective(i)),
            Err(r) => Some(r),
        },
        None => None,
    };
    match (&keys.pending, pending_may) {
        (Some(p), true) => match check_with(p, msg, v) {
            Ok(()) => Ok(Signer::Pending),
            // A failed signature under the pending key says less than the
            // primary's reason (e.g. revoked, outside validity).
            Err(r) if r.code == RefusalCode::BadSignature => Err(first.unwrap_or(r)),
            Err(r) => Err(r),
        },
        _ => Err(first.unwrap_or_else(|| {
            refuse(
                RefusalCode::BadSignature,
                Some(v.seq()),
                "no certificate of this node is in force for this entry",
            )
        })),
    }
}

/// Entries at or above this count are verified on several threads.
const PARALLEL_FROM: usize = 64;

/// Find each entry's signer, spreading the signature checks over the cores
/// for a large batch.
fn signers(keys: &NodeKeys, msgs: &[Vec<u8>], out: &[Verified]) -> Vec<Result<Signer, Refusal>> {
    let n = out.len();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if n < PARALLEL_FROM || threads < 2 {
        return msgs
            .iter()
            .zip(out)
            .map(|(m, v)| signer_of(keys, m, v))
            .collect();
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = msgs
            .chunks(chunk)
            .zip(out.chunks(chunk))
            .map(|(ms, vs)| {
                s.spawn(move || {
                    ms.iter()
                        .zip(vs)
                        .map(|(m, v)| signer_of(keys, m, v))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(r) => r,
                // A verifier thread cannot panic on input; if it did,
                // refuse its share rather than accept it.
                Err(_) => vec![Err(refuse(
                    RefusalCode::BadSignature,
                    None,
                    "signature check failed",
                ))],
            })
            .collect()
    })
}

/// Rebuild and check a frame from `device` signed with `key` alone (tools
/// and tests): see [`verify_frame`].
pub fn verify_batch(
    key: &PublicKey,
    device: &DeviceId,
    validity: Validity,
    batch: Entries,
) -> Result<VerifiedBatch, Refusal> {
    verify_frame(&NodeKeys::single(*key, validity), device, batch)
}

/// Rebuild and check a frame from `device`: the full entry from its
/// compact form (device, sequence number and `prev` chain filled in), its
/// bounds, its content commitment, its canonical bytes and hash; then each
/// signature with `verify_strict` (the auditor's rule, never a batch
/// equation that accepts more), with the certificate in force for it, its
/// capture time within that certificate's validity and before any
/// revocation, on several threads for a large frame; keys only move
/// forward; then the frame's checkpoint, which must be signed by the node
/// and name the head reached.
pub fn verify_frame(
    keys: &NodeKeys,
    device: &DeviceId,
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
    let mut new_key: Option<NewKey> = None;
    let mut last: Option<Signer> = None;
    for (v, s) in out.iter().zip(signers(keys, &signed, &out)) {
        let s = s?;
        match (last, s) {
            (Some(Signer::Pending), Signer::Effective(_)) => {
                return Err(refuse(
                    RefusalCode::BadSignature,
                    Some(v.seq()),
                    "signed by an older certificate after a newer one took effect",
                ))
            }
            (Some(Signer::Effective(a)), Signer::Effective(b)) if b < a => {
                return Err(refuse(
                    RefusalCode::BadSignature,
                    Some(v.seq()),
                    "signed by an older certificate after a newer one took effect",
                ))
            }
            (_, Signer::Pending) if new_key.is_none() => {
                new_key = keys.pending.as_ref().map(|p| NewKey {
                    serial: p.serial.clone(),
                    first_seq: v.seq(),
                });
            }
            _ => {}
        }
        last = Some(s);
    }
    if let Some(c) = &batch.checkpoint {
        let end = first_seq + out.len() as u64;
        let key = match last {
            Some(Signer::Effective(i)) => keys.effective.get(i),
            Some(Signer::Pending) => keys.pending.as_ref(),
            None => keys.newest(),
        };
        let signed_by_node = key.is_some_and(|k| c.signature_valid(&k.key))
            || (last.is_none()
                && keys
                    .effective
                    .last()
                    .is_some_and(|k| c.signature_valid(&k.key)));
        if c.checkpoint.device != *device || !signed_by_node {
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
        new_key,
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
    /// The node holds (hello) or now enforces (after a push) this policy
    /// version: record it for `hub nodes`.
    NodePolicy { version: u64 },
    /// The node sent its legal holds document: merge it into the hub's
    /// (a change is then pushed back with [`HubSession::set_holds`]).
    NodeHolds { doc: Vec<u8> },
    /// The node sent its local hotlist entries document: merge it into the
    /// hub's (a change is then pushed back with
    /// [`HubSession::set_local_entries`]).
    NodeLocalEntries { doc: Vec<u8> },
    /// Send the node bulk list `source` at generation `to`: the delta from
    /// its generation `from` if the hub has one that fits a frame
    /// ([`crate::wire::Frame::HotlistDelta`]), else the generation whole
    /// ([`crate::wire::full_generation_frames`]). On the control lane, in
    /// order: after hello these come before the welcome.
    SendHotlist {
        source: String,
        from: Option<u64>,
        to: u64,
    },
    /// The bulk lists the node holds (hello) or now holds (after a push):
    /// record them for `hub nodes`.
    NodeHotlists { held: Vec<(String, u64)> },
    /// The node showed the signed policy it holds (encoded
    /// [`crate::control::SignedPolicy`]), asked because it said it holds a
    /// newer version than the hub's: check the hub's signature, and take it
    /// back as the version in force (the next one goes past it).
    NodeHeldPolicy { policy: Vec<u8> },
    /// The node showed the signed header of a generation it holds
    /// ([`crate::hotlist::generation::verify_header`]), asked likewise:
    /// check the hub's signature, and make that list's next generation go
    /// past it.
    NodeHeldList { header: Vec<u8> },
}

/// How far back from what it holds the hub looks for missing images when a
/// node connects (a restored hub lost the images of its latest entries; an
/// older gap shows in `hub audit verify`).
pub const MISSING_IMAGE_SCAN: u64 = 16_384;

/// The hub's core for one authenticated node connection.
#[derive(Debug)]
pub struct HubSession {
    device: DeviceId,
    keys: NodeKeys,
    /// The hub's receipt key; its certificate goes with the welcome.
    receipt_key: Arc<HubKey<ReceiptSigning>>,
    progress: Progress,
    greeted: bool,
    /// Images asked of the node and not yet received.
    wanted: std::collections::HashSet<Hash32>,
    /// Where the search for missing images goes on, and where it ends.
    scan: Option<(u64, u64)>,
    /// The hub's current signed policy: (version, encoded bytes).
    policy: Option<(u64, Arc<Vec<u8>>)>,
    /// The policy version the node said it holds.
    node_policy: Option<u64>,
    /// The hub's saved legal holds document, sent after hello and on change.
    holds: Option<Arc<Vec<u8>>>,
    /// The hub's saved local hotlist entries document, sent after hello
    /// and on change.
    local_entries: Option<Arc<Vec<u8>>>,
    /// The hub's latest generation of each bulk list.
    hotlists: std::collections::BTreeMap<String, u64>,
    /// The generation of each bulk list the node holds, as it said.
    node_hotlists: std::collections::BTreeMap<String, u64>,
    /// What was last offered to the node per list: (generation, whole).
    offered: std::collections::BTreeMap<String, (u64, bool)>,
    /// What the node was asked to show ([`Frame::ShowHeld`]) and has not
    /// yet: its policy, and this many generation headers. Nothing else is
    /// taken from it.
    asked_policy: bool,
    asked_lists: usize,
}

impl HubSession {
    /// A session for `device` (the certificate's name and key), whose log the
    /// hub holds up to `progress`.
    pub fn new(
        device: DeviceId,
        node_key: PublicKey,
        receipt_key: Arc<HubKey<ReceiptSigning>>,
        progress: Progress,
    ) -> Self {
        HubSession {
            device,
            keys: NodeKeys::single(node_key, Validity::ALWAYS),
            receipt_key,
            progress,
            greeted: false,
            wanted: std::collections::HashSet::new(),
            scan: None,
            policy: None,
            node_policy: None,
            holds: None,
            hotlists: std::collections::BTreeMap::new(),
            node_hotlists: std::collections::BTreeMap::new(),
            offered: std::collections::BTreeMap::new(),
            local_entries: None,
            asked_policy: false,
            asked_lists: 0,
        }
    }

    /// Refuse entries captured outside the certificate's validity.
    pub fn with_validity(mut self, validity: Validity) -> Self {
        for k in self.keys.effective.iter_mut() {
            k.validity = validity;
        }
        self
    }

    /// Check entries with every certificate the node has held
    /// ([`NodeKeys`]) rather than the one key given to [`HubSession::new`].
    pub fn with_keys(mut self, keys: NodeKeys) -> Self {
        self.keys = keys;
        self
    }

    /// A revocation recorded while the node is connected.
    pub fn revoke(&mut self, serial: &str, at: UnixMillis) {
        self.keys.revoke(serial, at);
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
        .sign(&self.receipt_key)
    }

    fn refused(&self, r: Refusal) -> Vec<HubOutput> {
        vec![
            HubOutput::Send(Frame::Refused(r.clone())),
            HubOutput::Refused(r),
        ]
    }
}
