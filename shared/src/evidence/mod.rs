//! An evidence bundle: one case's reads exported for a court or a recipient
//! agency (policy 426.4, Civil Code §1798.90.55), in one file for portable
//! media, checkable offline from the deployment's CA certificate alone.
//!
//! Layout: the 16-byte magic `ALPR-EVIDENCE-V1`, then records of
//! `kind: u8, len: u32 big-endian, bytes`, in this order:
//!
//! 1. [`ExportInfo`] (postcard): case, recipient, purpose, who exported;
//! 2. the CA certificate (DER), then the hub's certificates (DER): its
//!    export key's, which signs the manifest, and its log key's, which
//!    signs its access entries, each issued by the CA for that purpose
//!    alone (a bundle made before the hub had a key per purpose carries
//!    its TLS certificate here and is refused for it);
//! 3. the case's holds ([`Hold`], postcard), any number;
//! 4. per node: its certificates (DER), its signed checkpoint, then its
//!    entries in sequence order with no gap, from the first case read to
//!    the checkpoint: a case read in full ([`SignedEntry`] with its body)
//!    followed by its crop and overview JPEGs; every other entry as its
//!    signed header only (its body, which may hold a plate, is dropped);
//! 5. the access-log entries of the export itself, signed by the hub's
//!    log key;
//! 6. the HTML report (self-contained: photos as `data:` URIs);
//! 7. the [`EvidenceManifest`], signed by the hub's export key: a SHA-256 and count per
//!    section and over every byte before it.
//!
//! A header carries no plate for a read, a purge or a loss; a node's own
//! access entries (`EntryKind::Access`) carry their record in the signed
//! header, so an officer's search on that edge between the case read and
//! the checkpoint travels with the chain (it cannot be cut out without
//! breaking it).
//!
//! [`verify_evidence`] reads it record by record; only the case reads'
//! verdicts grow with the file. The writer runs the same checks on what it
//! writes, and the report shows their result.

pub mod html;
#[doc(hidden)]
pub mod sample;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Seek, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cert::{KeyPurpose, SignerCert, TrustAnchor};
use crate::control::holds::Hold;
use crate::crypto::{sha256, tag, PublicKey, Signature};
use crate::log::{
    decode_exact, AccessAction, DecodeError, EntryKind, SignedCheckpoint, SignedEntry,
};
use crate::signer::{ExportSigning, HubKey};
use crate::types::{DeviceId, Hash32, UnixMillis};

mod writer;
pub use writer::{CaseRead, EvidenceWriter, HubCertificates};

mod check;
use check::*;

pub const MAGIC: &[u8; 16] = b"ALPR-EVIDENCE-V1";
pub const MANIFEST_VERSION: u8 = 1;

const KIND_INFO: u8 = 1;
const KIND_CA: u8 = 2;
const KIND_HUB_CERT: u8 = 3;
const KIND_HOLD: u8 = 4;
const KIND_NODE_CERT: u8 = 5;
const KIND_CHECKPOINT: u8 = 6;
const KIND_HEADER: u8 = 7;
const KIND_READ: u8 = 8;
const KIND_IMAGE: u8 = 9;
const KIND_ACCESS: u8 = 10;
const KIND_HTML: u8 = 11;
const KIND_MANIFEST: u8 = 12;

const MAX_SMALL: usize = 64 * 1024;
/// Largest photo one record may carry.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest HTML report (photos inline): hashed as it streams, never held.
pub const MAX_HTML_BYTES: usize = 2 * 1024 * 1024 * 1024 - 1;
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

fn section_name(kind: u8) -> &'static str {
    match kind {
        KIND_INFO => "export details",
        KIND_CA => "CA certificate",
        KIND_HUB_CERT => "hub certificate",
        KIND_HOLD => "holds",
        KIND_NODE_CERT => "node certificates",
        KIND_CHECKPOINT => "node checkpoints",
        KIND_HEADER => "entry headers",
        KIND_READ => "case reads",
        KIND_IMAGE => "photos",
        KIND_ACCESS => "access-log entries",
        KIND_HTML => "HTML report",
        KIND_MANIFEST => "manifest",
        _ => "unknown",
    }
}

fn max_len(kind: u8) -> usize {
    match kind {
        KIND_IMAGE => MAX_IMAGE_BYTES,
        KIND_HTML => MAX_HTML_BYTES,
        KIND_MANIFEST => MAX_MANIFEST_BYTES,
        KIND_HEADER | KIND_READ | KIND_ACCESS => crate::log::MAX_ENTRY_BYTES,
        _ => MAX_SMALL,
    }
}

/// What was exported, to whom, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub case: String,
    /// The recipient agency's ORI and name.
    pub recipient_ori: String,
    pub recipient_name: String,
    pub purpose: Option<String>,
    pub exported_by: String,
    /// The exporting user's agency (ORI).
    pub agency: String,
    pub created_at: UnixMillis,
}

/// One section as the hub vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: u8,
    pub records: u64,
    /// SHA-256 over the section's records (kind, length and bytes), in order.
    pub sha256: Hash32,
}

/// What the hub signs at the end of an evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceManifest {
    pub format: u8,
    pub created_at: UnixMillis,
    pub case: String,
    pub recipient_ori: String,
    /// Case reads in the bundle.
    pub reads: u64,
    /// Records before the manifest.
    pub records: u64,
    /// SHA-256 over every byte before the manifest record.
    pub digest: Hash32,
    pub sections: Vec<Section>,
}

impl EvidenceManifest {
    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a manifest always serialises")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvidenceManifest {
    pub manifest: EvidenceManifest,
    pub signature: Signature,
}

impl SignedEvidenceManifest {
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verify(
            tag::EVIDENCE_MANIFEST_SIG,
            &self.manifest.encode(),
            &self.signature,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("not an evidence bundle (bad magic)")]
    BadMagic,
    #[error("record {index}: unknown kind {kind}")]
    UnknownKind { index: u64, kind: u8 },
    #[error("record {index} ({section}): {len} bytes is over the limit of {max}")]
    TooLarge {
        index: u64,
        section: &'static str,
        len: usize,
        max: usize,
    },
    #[error("record {index} ({section}): {source}")]
    Record {
        index: u64,
        section: &'static str,
        source: DecodeError,
    },
    #[error("the bundle ends without the hub's signed manifest (truncated?)")]
    NoManifest,
    #[error("bytes after the manifest")]
    TrailingData,
    #[error("truncated bundle: {0}")]
    Truncated(io::Error),
    #[error("the writer was given {0}")]
    Misuse(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Something wrong with an evidence bundle, named for the reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum EvidenceFault {
    /// The bundle's CA is not the one the verifier trusts.
    CaMismatch,
    HubCertificate {
        reason: String,
    },
    ManifestSignature,
    /// Bytes differ from what the hub signed.
    Altered {
        section: String,
    },
    RecordCount {
        signed: u64,
        found: u64,
    },
    /// A node certificate the CA did not issue (or not for a node).
    NodeCertificate {
        node: String,
        reason: String,
    },
    Checkpoint {
        node: String,
        what: String,
    },
    /// The chain of entries is broken or does not reach the checkpoint.
    Chain {
        node: String,
        seq: u64,
        what: String,
    },
    /// A case read does not verify.
    Read {
        node: String,
        seq: u64,
        what: String,
    },
    /// The access-log entries of the export are wrong or missing.
    Access {
        what: String,
    },
    Layout {
        index: u64,
        what: String,
    },
}

impl std::fmt::Display for EvidenceFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvidenceFault::CaMismatch => {
                write!(f, "the bundle's CA certificate is not the one given with --ca")
            }
            EvidenceFault::HubCertificate { reason } => {
                write!(f, "hub certificate not usable: {reason}")
            }
            EvidenceFault::ManifestSignature => {
                write!(f, "the manifest's signature does not verify with the hub's key")
            }
            EvidenceFault::Altered { section } => write!(
                f,
                "section {section:?} differs from what the hub signed (bytes added, removed or changed)"
            ),
            EvidenceFault::RecordCount { signed, found } => {
                write!(f, "the hub signed for {signed} records, the bundle has {found}")
            }
            EvidenceFault::NodeCertificate { node, reason } => {
                write!(f, "node {node}: certificate not usable: {reason}")
            }
            EvidenceFault::Checkpoint { node, what } => write!(f, "node {node}: checkpoint: {what}"),
            EvidenceFault::Chain { node, seq, what } => write!(f, "node {node} #{seq}: {what}"),
            EvidenceFault::Read { node, seq, what } => write!(f, "read {node}#{seq}: {what}"),
            EvidenceFault::Access { what } => write!(f, "access log: {what}"),
            EvidenceFault::Layout { index, what } => write!(f, "record {index}: {what}"),
        }
    }
}

/// One case read as verified.
#[derive(Debug, Clone, Serialize)]
pub struct ReadVerdict {
    pub node: String,
    pub seq: u64,
    pub plate: String,
    pub captured_at: UnixMillis,
    pub time_source: String,
    pub location: String,
    pub camera: String,
    pub confidence: u16,
    /// Signed by a key of the node's CA-issued certificate.
    pub signature: bool,
    /// The content matches the salted hash the node signed.
    pub content: bool,
    pub crop: bool,
    pub overview: bool,
    /// The size of the node's checkpoint that places this read in its log.
    pub placed_by_checkpoint: Option<u64>,
}

impl ReadVerdict {
    pub fn ok(&self) -> bool {
        self.signature
            && self.content
            && self.crop
            && self.overview
            && self.placed_by_checkpoint.is_some()
    }
}

/// The verdict on a whole bundle.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceReport {
    pub info: Option<ExportInfo>,
    pub hub: Option<String>,
    pub signed_at: Option<UnixMillis>,
    pub reads: Vec<ReadVerdict>,
    pub holds: Vec<Hold>,
    pub nodes: Vec<String>,
    pub accesses: u64,
    pub faults: Vec<EvidenceFault>,
}

impl EvidenceReport {
    pub fn authentic(&self) -> bool {
        self.faults.is_empty()
            && self.hub.is_some()
            && !self.reads.is_empty()
            && self.reads.iter().all(ReadVerdict::ok)
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), EvidenceError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            EvidenceError::Truncated(e)
        } else {
            EvidenceError::Io(e)
        }
    })
}

/// Whether `head` (a file's first bytes) is an evidence bundle.
pub fn is_evidence(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// Verify a bundle from `input`, offline, against `anchor` (the CA). The
/// HTML report, if `html_out` is given, is copied to it as it streams.
pub fn verify_evidence<R: Read>(
    mut input: R,
    anchor: &TrustAnchor,
    mut html_out: Option<&mut dyn Write>,
) -> Result<EvidenceReport, EvidenceError> {
    let mut magic = [0u8; 16];
    read_full(&mut input, &mut magic).map_err(|_| EvidenceError::BadMagic)?;
    if &magic != MAGIC {
        return Err(EvidenceError::BadMagic);
    }
    let mut c = Checker::new(anchor.clone());
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 5];
        match input.read(&mut head[..1])? {
            0 => return Err(EvidenceError::NoManifest),
            _ => read_full(&mut input, &mut head[1..])?,
        }
        let kind = head[0];
        let len32 = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = len32 as usize;
        let index = c.records;
        if !(KIND_INFO..=KIND_MANIFEST).contains(&kind) {
            return Err(EvidenceError::UnknownKind { index, kind });
        }
        if len > max_len(kind) {
            return Err(EvidenceError::TooLarge {
                index,
                section: section_name(kind),
                len,
                max: max_len(kind),
            });
        }
        if kind == KIND_MANIFEST {
            buf.resize(len, 0);
            read_full(&mut input, &mut buf)?;
            let mut rest = [0u8; 1];
            if input.read(&mut rest)? != 0 {
                return Err(EvidenceError::TrailingData);
            }
            let m: SignedEvidenceManifest =
                decode_exact(&buf, MAX_MANIFEST_BYTES).map_err(|e| EvidenceError::Record {
                    index,
                    section: "manifest",
                    source: e,
                })?;
            return Ok(finish_verify(c, m));
        }
        c.hash_record_start(kind, len32);
        if kind == KIND_HTML {
            // Streamed: hashed (and copied out) without being held.
            let mut left = len;
            let mut chunk = vec![0u8; 64 * 1024];
            while left > 0 {
                let n = left.min(chunk.len());
                read_full(&mut input, &mut chunk[..n])?;
                c.hash_bytes(kind, &chunk[..n]);
                if let Some(out) = html_out.as_mut() {
                    out.write_all(&chunk[..n])?;
                }
                left -= n;
            }
            c.check(kind, &[])?;
            continue;
        }
        buf.resize(len, 0);
        read_full(&mut input, &mut buf)?;
        c.hash_bytes(kind, &buf);
        c.check(kind, &buf)?;
    }
}

fn finish_verify(mut c: Checker, m: SignedEvidenceManifest) -> EvidenceReport {
    c.close_node();
    if !c.photos.is_empty() {
        c.missing_photos();
    }
    let signed_ok = c
        .hub
        .as_ref()
        .is_some_and(|h| m.signature_valid(&h.key) && h.valid_at(m.manifest.created_at));
    if !signed_ok {
        c.faults.push(EvidenceFault::ManifestSignature);
    }
    let mm = &m.manifest;
    if mm.records != c.records {
        c.faults.push(EvidenceFault::RecordCount {
            signed: mm.records,
            found: c.records,
        });
    }
    let found = c.section_hashes();
    let mut altered = Vec::new();
    for s in &mm.sections {
        if !found.contains(s) {
            altered.push(section_name(s.kind));
        }
    }
    for s in &found {
        if !mm.sections.iter().any(|m| m.kind == s.kind) {
            altered.push(section_name(s.kind));
        }
    }
    altered.dedup();
    for section in altered {
        c.faults.push(EvidenceFault::Altered {
            section: section.to_owned(),
        });
    }
    let digest = Hash32(c.all.clone().finalize().into());
    if digest != mm.digest
        && !c
            .faults
            .iter()
            .any(|f| matches!(f, EvidenceFault::Altered { .. }))
    {
        c.faults.push(EvidenceFault::Altered {
            section: "the bundle as a whole".into(),
        });
    }
    if c.accesses == 0 {
        c.faults.push(EvidenceFault::Access {
            what: "the export's own access-log entry is missing".into(),
        });
    }
    match &c.info {
        Some(i) if i.case == mm.case && i.recipient_ori == mm.recipient_ori => {}
        _ => c.faults.push(EvidenceFault::Altered {
            section: section_name(KIND_INFO).into(),
        }),
    }
    if mm.reads != c.reads.len() as u64 {
        c.faults.push(EvidenceFault::RecordCount {
            signed: mm.reads,
            found: c.reads.len() as u64,
        });
    }
    EvidenceReport {
        info: c.info,
        hub: if signed_ok {
            c.hub.as_ref().map(|h| h.name.clone())
        } else {
            None
        },
        signed_at: Some(mm.created_at),
        reads: c.reads,
        holds: c.holds,
        nodes: c.nodes,
        accesses: c.accesses,
        faults: c.faults,
    }
}
