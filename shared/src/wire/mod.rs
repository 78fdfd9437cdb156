//! The sync wire protocol, `alpr-sync/8` ([`ALPN`]): what an edge and the hub say to
//! each other over QUIC, and how each message is framed.
//!
//! A frame is a 4-byte big-endian length followed by the postcard encoding of
//! one [`Frame`]. The length is checked against the limit of the stream's
//! [`Lane`] before anything is allocated, and the body is decoded without
//! panics whatever the bytes; trailing bytes are an error.
//!
//! Entries travel compact ([`WireEntry`]): without the format version, the
//! device name, the sequence number and the previous entry's hash, which the
//! hub rebuilds (the device from the node's certificate, the sequence from
//! the frame's first one, the `prev` chain from the frame's `prev` and the
//! hashes of the entries before). The signature covers the rebuilt
//! canonical header, so a wrong guess on either side fails verification
//! rather than storing anything. Each frame may carry the node's signed
//! checkpoint at its end, which the hub keeps to hold the node to one history.
//!
//! The hub acknowledges with a [`SignedReceipt`]: its signature over "I hold
//! this device's log up to `next_seq`, ending in `head`", given only after a
//! durable commit. The edge may delete nothing below what a valid receipt
//! names, and nothing above it. Receipts are signed by the hub's receipt
//! key, whose certificate the [`Welcome`] carries: the edge checks it
//! against the CA (issued for receipts alone) before it trusts any.

use serde::{Deserialize, Serialize};

use crate::cert::{KeyPurpose, SignerCert};
use crate::crypto::{PublicKey, SecretKey, Signature};
use crate::log::{
    Checkpoint, EntryHeader, EntryKind, ReadBody, SignedCheckpoint, SignedEntry, FORMAT_VERSION,
};
use crate::signer::{HubKey, ReceiptSigning};
use crate::types::{DeviceId, Hash32, TimeSource, UnixMillis};

mod codec;
pub use codec::WireError;
use codec::*;

/// ALPN of the sync protocol; the number is the protocol version.
pub const ALPN: &[u8] = b"alpr-sync/8";
/// Protocol version carried in [`Hello`]; must match [`ALPN`].
pub const PROTOCOL_VERSION: u16 = 8;
/// Largest certificate of a hub signing key carried in a frame.
pub const MAX_SIGNER_CERT: usize = 8 * 1024;

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Largest control frame (hello, welcome, receipts, refusals, pings).
pub const MAX_CONTROL_FRAME: usize = 16 * 1024;
/// Largest control frame carrying the signed policy: the hub's to a node
/// ([`Frame::Policy`]), or the one a node shows the hub ([`Frame::HeldPolicy`]).
pub const MAX_POLICY_FRAME: usize = crate::control::MAX_POLICY_BYTES + 1024;
/// Largest control frame carrying the legal holds document
/// ([`Frame::Holds`]), which travels both ways.
pub const MAX_HOLDS_FRAME: usize = crate::control::holds_doc::MAX_HOLDS_DOC_BYTES + 1024;
/// Largest control frame carrying the local hotlist entries document
/// ([`Frame::LocalEntries`]), which travels both ways.
pub const MAX_LOCAL_ENTRIES_FRAME: usize = crate::hotlist::local::MAX_LOCAL_DOC_BYTES + 1024;
/// Largest control frame either way: the larger of the two documents.
const MAX_DOC_FRAME: usize = if MAX_LOCAL_ENTRIES_FRAME > MAX_HOLDS_FRAME {
    MAX_LOCAL_ENTRIES_FRAME
} else {
    MAX_HOLDS_FRAME
};
/// Largest control frame from a node: a document, or the signed policy it
/// holds ([`Frame::HeldPolicy`]).
const MAX_NODE_CONTROL_FRAME: usize = if MAX_POLICY_FRAME > MAX_DOC_FRAME {
    MAX_POLICY_FRAME
} else {
    MAX_DOC_FRAME
};
/// Largest signed header of a generation a node shows ([`Frame::HeldList`]).
pub const MAX_HELD_HEADER: usize = crate::hotlist::generation::MAX_HEADER_BYTES;
/// Largest entries frame.
pub const MAX_ENTRIES_FRAME: usize = 1024 * 1024;
/// Largest image, and so (with a little room) the largest image frame.
pub const MAX_IMAGE_BYTES: usize = 8 * 1024 * 1024;
pub const MAX_IMAGE_FRAME: usize = MAX_IMAGE_BYTES + 1024;
/// Most image hashes one [`Frame::WantImages`] may ask for.
pub const MAX_WANTED_IMAGES: usize = 256;
/// Most entries one [`Entries`] frame may carry.
pub const MAX_ENTRIES_PER_FRAME: usize = 1024;

/// Largest piece of a bulk list in one frame ([`Frame::HotlistDelta`],
/// [`Frame::HotlistFull`]): a whole generation of a large list travels in
/// many of these, so other control frames interleave with it.
pub const MAX_HOTLIST_CHUNK: usize = 1024 * 1024;
/// Largest whole generation a node accepts (it assembles the chunks up to
/// this, and no further, before checking the hub's signature).
pub const MAX_GENERATION_BYTES: u64 = 512 * 1024 * 1024;
/// Most bulk lists a node may say it holds in its hello.
pub const MAX_HOTLIST_SOURCES: usize = 64;
/// Longest name of a bulk list's source.
pub const MAX_SOURCE_NAME: usize = 64;
/// Largest hotlist frame from the hub: a chunk and its header.
pub const MAX_HOTLIST_FRAME: usize = MAX_HOTLIST_CHUNK + 1024;

/// Domain-separation tag of hub receipts.
pub const RECEIPT_SIG_TAG: &[u8] = b"alpr/sync/v1/receipt-signature\0";

/// Which stream a frame travels on; lower lanes go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Hello, welcome, refusals, pings: highest priority.
    Control,
    /// Read entries and their receipts.
    Entries,
    /// Image blobs: lowest priority, held back on metered links.
    Images,
}

impl Lane {
    /// The largest frame allowed on this lane.
    pub fn max_frame(self) -> usize {
        match self {
            // Documents travel on it from nodes too, and the policy a
            // node shows the hub.
            Lane::Control => MAX_NODE_CONTROL_FRAME,
            Lane::Entries => MAX_ENTRIES_FRAME,
            Lane::Images => MAX_IMAGE_FRAME,
        }
    }

    /// The largest frame a node accepts from the hub on this lane (the
    /// control lane carries the policy document that way).
    pub fn max_frame_from_hub(self) -> usize {
        match self {
            Lane::Control => MAX_NODE_CONTROL_FRAME.max(MAX_HOTLIST_FRAME),
            lane => lane.max_frame(),
        }
    }

    /// QUIC stream priority (higher is sent first).
    pub fn priority(self) -> i32 {
        match self {
            Lane::Control => 2,
            Lane::Entries => 1,
            Lane::Images => 0,
        }
    }

    /// The first byte an opener writes on a stream, saying what it is for.
    pub fn tag(self) -> u8 {
        match self {
            Lane::Control => b'C',
            Lane::Entries => b'E',
            Lane::Images => b'I',
        }
    }

    pub fn from_tag(b: u8) -> Option<Lane> {
        match b {
            b'C' => Some(Lane::Control),
            b'E' => Some(Lane::Entries),
            b'I' => Some(Lane::Images),
            _ => None,
        }
    }
}

/// First words of an edge on a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub device: DeviceId,
    /// Entries in the edge's log.
    pub log_size: u64,
    /// Version of the policy the edge holds (0: none yet).
    pub policy_version: u64,
    /// The generation of each bulk list the edge holds (at most
    /// [`MAX_HOTLIST_SOURCES`]): the hub sends what is newer before its
    /// welcome, so the edge matches against current lists before it
    /// uploads its backlog.
    pub hotlists: Vec<HeldList>,
}

/// One bulk list a node holds: its source and generation number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeldList {
    pub source: String,
    pub generation: u64,
}

/// Whether `s` may name a bulk list's source: 1 to [`MAX_SOURCE_NAME`]
/// bytes of lower-case letters, digits, `-`, `_` and `.` (it names a file on
/// the edge), not starting with `.`.
pub fn valid_source_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SOURCE_NAME
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// The frames that carry generation `generation` of `source` whole
/// (`bytes`, its stored form), each at most [`MAX_HOTLIST_CHUNK`] of it.
/// Built one at a time, so a large list is never copied whole.
pub fn full_generation_frames<'a>(
    source: &'a str,
    generation: u64,
    bytes: &'a [u8],
) -> impl Iterator<Item = Frame> + 'a {
    let total = bytes.len() as u64;
    let chunks = bytes.len().div_ceil(MAX_HOTLIST_CHUNK).max(1);
    (0..chunks).map(move |i| {
        let start = i * MAX_HOTLIST_CHUNK;
        let end = (start + MAX_HOTLIST_CHUNK).min(bytes.len());
        Frame::HotlistFull {
            source: source.to_owned(),
            generation,
            total,
            offset: start as u64,
            chunk: bytes.get(start..end).unwrap_or_default().to_vec(),
        }
    })
}

/// The hub's answer: where the edge's upload resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u16,
    /// The hub's latest receipt for this device (next_seq 0 if none).
    pub receipt: SignedReceipt,
    /// The certificate (DER) of the key that signs this connection's
    /// receipts: the CA's, for receipts alone (at most [`MAX_SIGNER_CERT`]).
    pub receipt_cert: Vec<u8>,
}

/// A run of consecutive entries of the sending node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries {
    pub first_seq: u64,
    /// Hash of entry `first_seq - 1` (zero when `first_seq` is 0): the
    /// first entry's `prev`.
    pub prev: Hash32,
    pub entries: Vec<WireEntry>,
    /// The node's signed checkpoint of its log up to the end of this frame
    /// (`size = first_seq + entries.len()`).
    pub checkpoint: Option<SignedCheckpoint>,
}

/// A log entry on the wire: a [`SignedEntry`] without what the receiver
/// rebuilds (format version, device, sequence number, previous hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub captured_at: UnixMillis,
    pub time_source: TimeSource,
    pub kind: EntryKind,
    pub signature: Signature,
    pub body: Option<ReadBody>,
}

impl WireEntry {
    /// The compact form of `e` (whatever it is: the receiver's rebuild and
    /// signature check decide whether it was well formed).
    pub fn from_entry(e: SignedEntry) -> WireEntry {
        WireEntry {
            captured_at: e.header.captured_at,
            time_source: e.header.time_source,
            kind: e.header.kind,
            signature: e.signature,
            body: e.body,
        }
    }

    /// The full entry, with the fields the sender left out.
    pub fn into_entry(self, device: DeviceId, seq: u64, prev: Hash32) -> SignedEntry {
        SignedEntry {
            header: EntryHeader {
                format: FORMAT_VERSION,
                device,
                seq,
                prev,
                captured_at: self.captured_at,
                time_source: self.time_source,
                kind: self.kind,
            },
            signature: self.signature,
            body: self.body,
        }
    }
}

/// Sign a checkpoint of a log with `size` entries ending in `head` (the
/// same statement as [`crate::log::LogWriter::checkpoint`], for a signer
/// that holds the key but not the writer).
pub fn sign_checkpoint(
    key: &SecretKey,
    device: DeviceId,
    size: u64,
    head: Hash32,
    at: UnixMillis,
) -> SignedCheckpoint {
    Checkpoint::new(device, size, head, at).sign(key)
}

/// One content-addressed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBlob {
    /// The entry (of the sending device) that names this image.
    pub seq: u64,
    pub hash: Hash32,
    pub bytes: Vec<u8>,
}

/// Why the hub refused something. Stable codes; the text is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefusalCode {
    /// The certificate is not from this deployment's CA or breaks its rules.
    UnknownNode,
    /// The certificate has been revoked.
    Revoked,
    /// A frame names another device than the authenticated one.
    WrongDevice,
    /// An entry's signature does not verify.
    BadSignature,
    /// An entry's content does not match its signed header.
    Edited,
    /// An entry does not link to the previous one.
    BrokenChain,
    /// A different entry for a sequence number already stored.
    Fork,
    /// Entries are missing before the ones sent.
    Gap,
    /// A frame or entry could not be decoded or breaks a bound.
    Malformed,
    /// The protocol version is not spoken here.
    Version,
    /// Another connection of the same node replaced this one.
    Replaced,
    /// An entry was captured outside its node certificate's validity.
    OutsideValidity,
    /// The hub's record of this node's log is not the node's own: its store
    /// was replaced, or two devices share one identity. A person must
    /// resolve it (the node stops uploading; the hub records it).
    IdentityConflict,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::UnknownNode => "unknown-node",
            RefusalCode::Revoked => "revoked",
            RefusalCode::WrongDevice => "wrong-device",
            RefusalCode::BadSignature => "bad-signature",
            RefusalCode::Edited => "edited",
            RefusalCode::BrokenChain => "broken-chain",
            RefusalCode::Fork => "fork",
            RefusalCode::Gap => "gap",
            RefusalCode::Malformed => "malformed",
            RefusalCode::Version => "version",
            RefusalCode::Replaced => "replaced",
            RefusalCode::OutsideValidity => "outside-validity",
            RefusalCode::IdentityConflict => "identity-conflict",
        }
    }

    /// A refusal that retrying cannot cure (the node needs a person).
    pub fn is_permanent(self) -> bool {
        !matches!(self, RefusalCode::Replaced | RefusalCode::Gap)
    }

    /// QUIC application close code for a connection refused for this reason.
    pub fn close_code(self) -> u32 {
        0x100 + self as u32
    }

    pub fn from_close_code(code: u64) -> Option<RefusalCode> {
        use RefusalCode::*;
        [
            UnknownNode,
            Revoked,
            WrongDevice,
            BadSignature,
            Edited,
            BrokenChain,
            Fork,
            Gap,
            Malformed,
            Version,
            Replaced,
            OutsideValidity,
            IdentityConflict,
        ]
        .into_iter()
        .find(|c| u64::from(c.close_code()) == code)
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    /// Sequence number concerned, if any.
    pub seq: Option<u64>,
    pub detail: String,
}

impl Refusal {
    /// A refusal of the whole connection by its QUIC close code.
    pub fn from_close(code: u64, reason: &[u8]) -> Option<Refusal> {
        RefusalCode::from_close_code(code).map(|code| Refusal {
            code,
            seq: None,
            detail: String::from_utf8_lossy(reason).into_owned(),
        })
    }
}

/// What the hub vouches for: it durably holds `device`'s log up to (not
/// including) `next_seq`, whose last entry hashes to `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub format: u8,
    pub device: DeviceId,
    pub next_seq: u64,
    pub head: Hash32,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub signature: Signature,
}

impl Receipt {
    fn bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a receipt always serialises")
    }

    /// Sign with the hub's receipt key.
    pub fn sign(self, key: &HubKey<ReceiptSigning>) -> SignedReceipt {
        let signature = key.sign(RECEIPT_SIG_TAG, &self.bytes());
        SignedReceipt {
            receipt: self,
            signature,
        }
    }
}

impl SignedReceipt {
    pub fn signature_valid(&self, hub: &PublicKey) -> bool {
        hub.verify(RECEIPT_SIG_TAG, &self.receipt.bytes(), &self.signature)
    }

    /// Signed by the key of `cert`, a certificate checked for receipts,
    /// while it was valid.
    pub fn verify(&self, cert: &SignerCert) -> bool {
        cert.purpose == KeyPurpose::Receipt
            && cert.valid_at(self.receipt.at)
            && self.signature_valid(&cert.key)
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a receipt always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_exact(bytes, MAX_CONTROL_FRAME)
    }
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    Entries(Entries),
    Ack(SignedReceipt),
    Refused(Refusal),
    Image(ImageBlob),
    ImageAck {
        hash: Hash32,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Hub to node: images of entries the hub holds but whose images it
    /// lacks (after a restore from a backup), (entry seq, hash); at most
    /// [`MAX_WANTED_IMAGES`], the next page once these arrived.
    WantImages {
        images: Vec<(u64, Hash32)>,
    },
    /// Node to hub, on the entries lane in place of entries it lost from
    /// its own store: its signed [`EntryKind::Loss`] entry (canonical
    /// bytes), which lets the hub accept the gap it covers
    /// ([`crate::log::loss`]).
    Loss {
        entry: Vec<u8>,
    },
    /// Hub to node, on the control lane: the hub's current signed policy
    /// ([`crate::control::SignedPolicy`], encoded), newer than the one the
    /// node said it holds. At most [`crate::control::MAX_POLICY_BYTES`].
    Policy {
        policy: Vec<u8>,
    },
    /// Hub to node: the policy the node holds is the hub's current one
    /// (the node counts its policy as refreshed).
    PolicyCurrent {
        version: u64,
    },
    /// Node to hub: the policy version the node now enforces.
    PolicyApplied {
        version: u64,
    },
    /// Either way, on the control lane: the sender's legal holds document
    /// (a saved [`crate::control::holds_doc::HoldsDoc`]), which the
    /// receiver merges. The hub sends it after hello and on each change;
    /// a node after welcome and on each local change. At most
    /// [`crate::control::holds_doc::MAX_HOLDS_DOC_BYTES`].
    Holds {
        doc: Vec<u8>,
    },
    /// Hub to node, on the control lane: the change that takes the node's
    /// generation `from` of bulk list `source` to generation `to`
    /// ([`crate::hotlist::delta`], signed by the hub within). At most
    /// [`MAX_HOTLIST_CHUNK`]; a larger change goes whole.
    HotlistDelta {
        source: String,
        from: u64,
        to: u64,
        delta: Vec<u8>,
    },
    /// Hub to node, on the control lane: bytes `offset..offset+chunk.len()`
    /// of generation `generation` of `source` whole (`total` bytes, at most
    /// [`MAX_GENERATION_BYTES`]), in order; the node checks the hub's
    /// signature once it has all of it.
    HotlistFull {
        source: String,
        generation: u64,
        total: u64,
        offset: u64,
        chunk: Vec<u8>,
    },
    /// Node to hub: the generation of `source` the node now holds (after
    /// applying one, or the one it kept when what came could not be
    /// applied; 0: none). Shown per node by `hub nodes`.
    HotlistApplied {
        source: String,
        generation: u64,
    },
    /// Either way, on the control lane: the sender's local hotlist entries
    /// document (a saved [`crate::hotlist::local::LocalEntriesDoc`]),
    /// which the receiver merges. Sent like [`Frame::Holds`]: the hub
    /// after hello (before the node's backlog) and on each change; a node
    /// after welcome and on each local change. At most
    /// [`crate::hotlist::local::MAX_LOCAL_DOC_BYTES`].
    LocalEntries {
        doc: Vec<u8>,
    },
    /// Hub to node, on the control lane: the node said it holds a newer
    /// policy (`policy`) or newer generations of the lists `sources` than
    /// the hub has (the hub was restored from a backup): show the hub what
    /// it signed, so its next numbers go past them. At most
    /// [`MAX_HOTLIST_SOURCES`] sources.
    ShowHeld {
        policy: bool,
        sources: Vec<String>,
    },
    /// Node to hub, answering [`Frame::ShowHeld`]: the signed policy the
    /// node holds ([`crate::control::SignedPolicy`], encoded). At most
    /// [`crate::control::MAX_POLICY_BYTES`].
    HeldPolicy {
        policy: Vec<u8>,
    },
    /// Node to hub, answering [`Frame::ShowHeld`]: the signed header of the
    /// generation of a bulk list the node holds
    /// ([`crate::hotlist::generation::Generation::signed_header`]). At most
    /// [`MAX_HELD_HEADER`].
    HeldList {
        header: Vec<u8>,
    },
}

pub mod quic;

#[cfg(test)]
mod tests;
