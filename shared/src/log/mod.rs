//! The per-device signed read log: the provenance core auditors rely on.
//!
//! Each entry has a signed header (device, contiguous sequence number, hash
//! of the previous header, capture time and its source, and what the entry
//! is) and, for a read, a body (the read's content plus a random salt) that
//! the header commits to by a salted hash. Retention deletes the body and
//! keeps the header and signature, so the chain still verifies; a signed
//! purge entry later in the log records which content went and why. The
//! salt goes with the content: without it, nobody can recover a purged plate
//! by hashing every possible plate.
//!
//! Where things happen: a read is signed in [`LogWriter::append_read`],
//! purged in [`SignedEntry::purge_content`] + [`LogWriter::append_purge`],
//! and verified in [`verify::verify_log`].

pub mod access;
pub mod alert;
pub mod bundle;
pub mod loss;
pub mod retention;
pub mod verify;

use serde::{Deserialize, Serialize};

use crate::crypto::{tag, tagged_hash, PublicKey, SecretKey, Signature};
use crate::types::{
    check_text, DeviceId, Hash32, InvalidValue, ReadContent, TimeSource, UnixMillis, MAX_TEXT_LEN,
};

pub use access::{AccessAction, AccessOutcome, AccessRecord};
pub use alert::{AlertRecord, DispositionRecord};
pub use verify::{verify_log, verify_node_log, Fault, LogReport, NodeKeys};

/// The encoding version written in every header.
pub const FORMAT_VERSION: u8 = 1;
/// No encoded entry may be larger; checked before decoding.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// Most sequence ranges a single purge entry may name.
pub const MAX_PURGE_RANGES: usize = 256;

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

impl SeqRange {
    pub fn contains(&self, seq: u64) -> bool {
        self.first <= seq && seq <= self.last
    }
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A plate read; `content` is the salted hash of its [`ReadBody`].
    Read { content: Hash32 },
    /// The content of earlier entries was deleted, for `reason`.
    Purge {
        ranges: Vec<SeqRange>,
        reason: String,
    },
    /// The node lost entries `first..=last` of its own log (unreadable in
    /// its store) and says so: `lost_head` is the hash of entry `last`,
    /// which the entry after it links to. See [`loss`].
    Loss {
        first: u64,
        last: u64,
        lost_head: Hash32,
        reason: String,
    },
    /// A person accessed data on this node ([`access`]). The record is
    /// part of the signed header: retention never deletes it.
    Access(AccessRecord),
    /// The hub deleted the content of `ranges` of `node`'s log, for
    /// `reason`. Only the hub writes it, in its own log: it cannot write
    /// into a node's log, so it signs what it purged. (Appended last so
    /// older encodings keep their indices.)
    NodePurge {
        node: DeviceId,
        ranges: Vec<SeqRange>,
        reason: String,
    },
    /// A read of this log matched a hotlist entry ([`alert`]). In the
    /// signed header: retention never deletes it. (Appended after
    /// `NodePurge` so older encodings keep their indices.)
    Alert(Box<AlertRecord>),
    /// One stage of an alert's disposition, by a logged-in user.
    Disposition(DispositionRecord),
}

/// The signed part of an entry. It survives a purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    pub format: u8,
    pub device: DeviceId,
    pub seq: u64,
    /// Hash of the previous entry's header; zero for sequence 0.
    pub prev: Hash32,
    /// Capture time (for a purge entry: when the purge ran).
    pub captured_at: UnixMillis,
    pub time_source: TimeSource,
    pub kind: EntryKind,
}

impl EntryHeader {
    /// Canonical bytes: postcard of the header. Always re-encoded from the
    /// decoded value before verifying, so there is one encoding per header.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a header always serialises")
    }

    /// The entry's hash: what the next entry links to and checkpoints name.
    pub fn hash(&self) -> Hash32 {
        tagged_hash(tag::ENTRY_HASH, &[&self.encode()])
    }
}

/// The purgeable part of a read entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBody {
    pub salt: [u8; 32],
    pub content: ReadContent,
}

impl ReadBody {
    pub fn commitment(&self) -> Hash32 {
        content_commitment(&self.salt, &self.content)
    }
}

/// Salted hash of a read's content, as committed in its header.
pub fn content_commitment(salt: &[u8; 32], content: &ReadContent) -> Hash32 {
    let bytes = postcard::to_allocvec(content).expect("content always serialises");
    tagged_hash(tag::CONTENT_HASH, &[salt, &bytes])
}

/// One entry of a device's log, as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEntry {
    pub header: EntryHeader,
    pub signature: Signature,
    /// The read's content and salt; `None` for purge entries and for reads
    /// whose content retention has deleted.
    pub body: Option<ReadBody>,
}

/// Why bytes are not a valid entry or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed encoding: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("invalid field: {0}")]
    Invalid(#[from] InvalidValue),
}

/// Decode one value that fills `bytes` exactly, refusing more than `max`
/// bytes before decoding.
pub(crate) fn decode_exact<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (v, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(v)
}

impl SignedEntry {
    pub fn seq(&self) -> u64 {
        self.header.seq
    }

    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an entry always serialises")
    }

    /// Decode and check bounds. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let e: SignedEntry = decode_exact(bytes, MAX_ENTRY_BYTES)?;
        e.validate()?;
        Ok(e)
    }

    /// Check the format version and every field bound.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.header.format != FORMAT_VERSION {
            return Err(DecodeError::Version(self.header.format));
        }
        let refuse = |field: &'static str| -> Result<(), DecodeError> {
            Err(InvalidValue::OutOfRange { field }.into())
        };
        let seq = self.header.seq;
        // What each kind but a read must hold, and the name its body would
        // be refused under (only a read carries content).
        let bodyless = match &self.header.kind {
            EntryKind::Read { .. } => None,
            EntryKind::Purge { ranges, reason } => {
                if ranges.is_empty() || ranges.len() > MAX_PURGE_RANGES {
                    return refuse("purge ranges");
                }
                if ranges.iter().any(|r| r.first > r.last || r.last >= seq) {
                    return refuse("purge range");
                }
                check_text("purge reason", reason, MAX_TEXT_LEN)?;
                Some("purge entry body")
            }
            EntryKind::Loss {
                first,
                last,
                reason,
                ..
            } => {
                if first > last || *last >= seq {
                    return refuse("lost range");
                }
                check_text("loss reason", reason, MAX_TEXT_LEN)?;
                Some("loss entry body")
            }
            EntryKind::NodePurge { ranges, reason, .. } => {
                if ranges.is_empty()
                    || ranges.len() > MAX_PURGE_RANGES
                    || ranges.iter().any(|r| r.first > r.last)
                {
                    return refuse("node purge ranges");
                }
                check_text("purge reason", reason, MAX_TEXT_LEN)?;
                Some("node purge entry body")
            }
            EntryKind::Access(record) => {
                record.validate()?;
                Some("access entry body")
            }
            EntryKind::Alert(record) => {
                record.validate()?;
                if record.read_seq >= seq {
                    return refuse("alert entry");
                }
                Some("alert entry")
            }
            EntryKind::Disposition(record) => {
                record.validate()?;
                Some("disposition entry body")
            }
        };
        if let (Some(field), Some(_)) = (bodyless, &self.body) {
            return refuse(field);
        }
        if let Some(b) = &self.body {
            b.content.validate()?;
        }
        Ok(())
    }

    /// The access record, if this entry is one.
    pub fn access(&self) -> Option<&AccessRecord> {
        match &self.header.kind {
            EntryKind::Access(r) => Some(r),
            _ => None,
        }
    }

    /// The alert record, if this entry is one.
    pub fn alert(&self) -> Option<&AlertRecord> {
        match &self.header.kind {
            EntryKind::Alert(r) => Some(r),
            _ => None,
        }
    }

    /// The disposition record, if this entry is one.
    pub fn disposition(&self) -> Option<&DispositionRecord> {
        match &self.header.kind {
            EntryKind::Disposition(r) => Some(r),
            _ => None,
        }
    }

    /// The read content, if this is a read whose content is still held.
    pub fn read(&self) -> Option<&ReadContent> {
        self.body.as_ref().map(|b| &b.content)
    }

    /// A read entry whose content has been deleted.
    pub fn is_purged(&self) -> bool {
        matches!(self.header.kind, EntryKind::Read { .. }) && self.body.is_none()
    }

    /// Delete the content and its salt, keeping the signed header. The
    /// caller must record the purge with [`LogWriter::append_purge`] (or the
    /// hub's signed purge record) or the verifier will flag it.
    pub fn purge_content(&mut self) {
        self.body = None;
    }

    /// Check this entry's signature against `key` (`verify_strict`).
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verify(tag::ENTRY_SIG, &self.header.encode(), &self.signature)
    }

    /// Whether the body (if held) matches the header's commitment.
    pub fn body_matches(&self) -> bool {
        match (&self.header.kind, &self.body) {
            (EntryKind::Read { content }, Some(b)) => b.commitment() == *content,
            (_, None) => true,
            (
                EntryKind::Purge { .. }
                | EntryKind::Loss { .. }
                | EntryKind::Access(_)
                | EntryKind::NodePurge { .. }
                | EntryKind::Alert(_)
                | EntryKind::Disposition(_),
                Some(_),
            ) => false,
        }
    }
}

/// A signed statement by a node: "my log has `size` entries ending in `head`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u8,
    pub device: DeviceId,
    pub size: u64,
    pub head: Hash32,
    pub at: UnixMillis,
}

impl Checkpoint {
    pub fn new(device: DeviceId, size: u64, head: Hash32, at: UnixMillis) -> Self {
        Checkpoint {
            format: FORMAT_VERSION,
            device,
            size,
            head,
            at,
        }
    }

    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a checkpoint always serialises")
    }

    /// Sign this statement with the node's key.
    pub fn sign(self, key: &SecretKey) -> SignedCheckpoint {
        SignedCheckpoint {
            signature: key.sign(tag::CHECKPOINT_SIG, &self.encode()),
            checkpoint: self,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: Signature,
}

impl SignedCheckpoint {
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verify(
            tag::CHECKPOINT_SIG,
            &self.checkpoint.encode(),
            &self.signature,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a checkpoint always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let c: SignedCheckpoint = decode_exact(bytes, 512)?;
        if c.checkpoint.format != FORMAT_VERSION {
            return Err(DecodeError::Version(c.checkpoint.format));
        }
        Ok(c)
    }
}

/// The signing end of a device's log. It holds the device key and the head
/// of the chain; whoever persists entries must persist them in order and
/// resume with [`LogWriter::resume`] after a restart.
#[derive(Debug)]
pub struct LogWriter {
    key: SecretKey,
    device: DeviceId,
    next_seq: u64,
    head: Hash32,
}

impl LogWriter {
    /// A new, empty log.
    pub fn new(key: SecretKey, device: DeviceId) -> Self {
        Self::resume(key, device, 0, Hash32::ZERO)
    }

    /// Continue a log that has `next_seq` entries, the last hashing to `head`.
    pub fn resume(key: SecretKey, device: DeviceId, next_seq: u64, head: Hash32) -> Self {
        LogWriter {
            key,
            device,
            next_seq,
            head,
        }
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// Number of entries written so far (= the next sequence number).
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    pub fn head(&self) -> Hash32 {
        self.head
    }

    /// Go back to a log of `next_seq` entries ending in `head`: entries
    /// sealed after it were never persisted (their commit failed), so the
    /// next entry takes their place.
    pub fn rewind(&mut self, next_seq: u64, head: Hash32) {
        self.next_seq = next_seq;
        self.head = head;
    }

    /// Seal a read into the next entry, with a fresh random salt.
    pub fn append_read(
        &mut self,
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        self.append_read_salted(content, captured_at, time_source, salt)
    }

    /// As [`Self::append_read`] with a given salt (test vectors only need this).
    pub fn append_read_salted(
        &mut self,
        content: ReadContent,
        captured_at: UnixMillis,
        time_source: TimeSource,
        salt: [u8; 32],
    ) -> Result<SignedEntry, InvalidValue> {
        content.validate()?;
        let body = ReadBody { salt, content };
        let kind = EntryKind::Read {
            content: body.commitment(),
        };
        Ok(self.seal(kind, captured_at, time_source, Some(body)))
    }

    /// Record that the content of `ranges` was deleted.
    pub fn append_purge(
        &mut self,
        ranges: Vec<SeqRange>,
        reason: &str,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        check_purge(reason, &ranges, Some(self.next_seq), "purge ranges")?;
        let kind = EntryKind::Purge {
            ranges,
            reason: reason.to_owned(),
        };
        Ok(self.seal(kind, now, time_source, None))
    }

    /// Record (in the hub's own log) that the hub deleted the content of
    /// `ranges` of `node`'s log. The ranges name the node's sequence
    /// numbers, not this log's.
    pub fn append_node_purge(
        &mut self,
        node: DeviceId,
        ranges: Vec<SeqRange>,
        reason: &str,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        check_purge(reason, &ranges, None, "node purge ranges")?;
        let kind = EntryKind::NodePurge {
            node,
            ranges,
            reason: reason.to_owned(),
        };
        Ok(self.seal(kind, now, time_source, None))
    }

    /// Record that entries `first..=last` of this log are lost (unreadable
    /// in the node's store); `lost_head` is the hash of entry `last` (the
    /// `prev` of the entry after it, or the writer's head).
    pub fn append_loss(
        &mut self,
        first: u64,
        last: u64,
        lost_head: Hash32,
        reason: &str,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        check_text("loss reason", reason, MAX_TEXT_LEN)?;
        if first > last || last >= self.next_seq {
            return Err(InvalidValue::OutOfRange {
                field: "lost range",
            });
        }
        let kind = EntryKind::Loss {
            first,
            last,
            lost_head,
            reason: reason.to_owned(),
        };
        Ok(self.seal(kind, now, time_source, None))
    }

    /// Record an access by a person, at `now`. The caller must persist
    /// the entry durably before it returns any data the access asked for.
    pub fn append_access(
        &mut self,
        record: AccessRecord,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        record.validate()?;
        Ok(self.seal(EntryKind::Access(record), now, time_source, None))
    }

    /// Record that read `record.read_seq` of this log matched a hotlist
    /// entry, at `now`.
    pub fn append_alert(
        &mut self,
        record: AlertRecord,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        record.validate()?;
        if record.read_seq >= self.next_seq {
            return Err(InvalidValue::OutOfRange {
                field: "alert read",
            });
        }
        Ok(self.seal(EntryKind::Alert(Box::new(record)), now, time_source, None))
    }

    /// Record one stage of an alert's disposition, at `now`. The caller
    /// checks the stage rules ([`alert::Progress`]).
    pub fn append_disposition(
        &mut self,
        record: DispositionRecord,
        now: UnixMillis,
        time_source: TimeSource,
    ) -> Result<SignedEntry, InvalidValue> {
        record.validate()?;
        Ok(self.seal(EntryKind::Disposition(record), now, time_source, None))
    }

    fn seal(
        &mut self,
        kind: EntryKind,
        captured_at: UnixMillis,
        time_source: TimeSource,
        body: Option<ReadBody>,
    ) -> SignedEntry {
        let header = EntryHeader {
            format: FORMAT_VERSION,
            device: self.device.clone(),
            seq: self.next_seq,
            prev: self.head,
            captured_at,
            time_source,
            kind,
        };
        let signature = self.key.sign(tag::ENTRY_SIG, &header.encode());
        self.head = header.hash();
        self.next_seq += 1;
        SignedEntry {
            header,
            signature,
            body,
        }
    }

    /// Sign a checkpoint of the log as it stands.
    pub fn checkpoint(&self, at: UnixMillis) -> SignedCheckpoint {
        Checkpoint::new(self.device.clone(), self.next_seq, self.head, at).sign(&self.key)
    }
}

/// A purge's reason and ranges as a log records them: a reason within
/// bounds, some ranges but not too many, each in order and (`below`, for
/// a log's own ranges) below its next sequence number. `field` names the
/// ranges in the error.
fn check_purge(
    reason: &str,
    ranges: &[SeqRange],
    below: Option<u64>,
    field: &'static str,
) -> Result<(), InvalidValue> {
    check_text("purge reason", reason, MAX_TEXT_LEN)?;
    if ranges.is_empty()
        || ranges.len() > MAX_PURGE_RANGES
        || ranges
            .iter()
            .any(|r| r.first > r.last || below.is_some_and(|next| r.last >= next))
    {
        return Err(InvalidValue::OutOfRange { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod evidence_tests;
