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

/// A node's section while it is being read.
struct NodeState {
    device: DeviceId,
    keys: Vec<PublicKey>,
    checkpoint: Option<SignedCheckpoint>,
    checkpoint_ok: bool,
    /// The last entry seen: its sequence and hash.
    last: Option<(u64, Hash32)>,
    /// Indices into `reads` of this node's case reads.
    reads: Vec<usize>,
}

/// The checks shared by the writer and the verifier: fed one record at a
/// time, in order.
struct Checker {
    anchor: TrustAnchor,
    /// The hub's export key's certificate: it signs the manifest.
    hub: Option<SignerCert>,
    /// The hub's log key's certificate: it signs the access entries.
    hub_log: Option<SignerCert>,
    /// Hub certificates read so far.
    hub_certs: u8,
    info: Option<ExportInfo>,
    holds: Vec<Hold>,
    node: Option<NodeState>,
    nodes: Vec<String>,
    reads: Vec<ReadVerdict>,
    /// Photos expected next: (read index, hash, is crop).
    photos: VecDeque<(usize, Hash32, bool)>,
    accesses: u64,
    faults: Vec<EvidenceFault>,
    sections: BTreeMap<u8, (u64, Sha256)>,
    all: Sha256,
    records: u64,
    /// The highest kind seen so far (sections come in order).
    stage: u8,
}

fn entry_checks(keys: &[PublicKey], e: &SignedEntry) -> (bool, bool) {
    let sig = keys.iter().any(|k| e.signature_valid(k));
    (sig, e.body_matches())
}

impl Checker {
    fn new(anchor: TrustAnchor) -> Self {
        let mut all = Sha256::new();
        all.update(MAGIC);
        Checker {
            anchor,
            hub: None,
            hub_log: None,
            hub_certs: 0,
            info: None,
            holds: Vec::new(),
            node: None,
            nodes: Vec::new(),
            reads: Vec::new(),
            photos: VecDeque::new(),
            accesses: 0,
            faults: Vec::new(),
            sections: BTreeMap::new(),
            all,
            records: 0,
            stage: 0,
        }
    }

    fn hash_record_start(&mut self, kind: u8, len: u32) {
        let s = self
            .sections
            .entry(kind)
            .or_insert_with(|| (0, Sha256::new()));
        s.0 += 1;
        s.1.update([kind]);
        s.1.update(len.to_be_bytes());
        self.all.update([kind]);
        self.all.update(len.to_be_bytes());
        self.records += 1;
    }

    fn hash_bytes(&mut self, kind: u8, bytes: &[u8]) {
        if let Some(s) = self.sections.get_mut(&kind) {
            s.1.update(bytes);
        }
        self.all.update(bytes);
    }

    fn layout(&mut self, what: impl Into<String>) {
        let index = self.records.saturating_sub(1);
        self.faults.push(EvidenceFault::Layout {
            index,
            what: what.into(),
        });
    }

    fn decode_err(&self, kind: u8, source: DecodeError) -> EvidenceError {
        EvidenceError::Record {
            index: self.records.saturating_sub(1),
            section: section_name(kind),
            source,
        }
    }

    /// Check one record's meaning (after its bytes were hashed).
    fn check(&mut self, kind: u8, bytes: &[u8]) -> Result<(), EvidenceError> {
        // Sections come in order; within a node, certificates, checkpoint
        // and entries may repeat per node.
        let node_kinds = [
            KIND_NODE_CERT,
            KIND_CHECKPOINT,
            KIND_HEADER,
            KIND_READ,
            KIND_IMAGE,
        ];
        let in_nodes = node_kinds.contains(&kind);
        if kind < self.stage && !(in_nodes && node_kinds.contains(&self.stage)) {
            self.layout(format!("{} out of order", section_name(kind)));
        }
        self.stage = if in_nodes && node_kinds.contains(&self.stage) {
            self.stage.max(kind)
        } else {
            kind
        };
        if kind != KIND_IMAGE && !self.photos.is_empty() {
            self.missing_photos();
        }
        match kind {
            KIND_INFO => {
                let info: ExportInfo =
                    decode_exact(bytes, MAX_SMALL).map_err(|e| self.decode_err(kind, e))?;
                if self.info.is_some() {
                    self.layout("a second export-details record");
                }
                self.info = Some(info);
            }
            KIND_CA if bytes != self.anchor.der() => {
                self.faults.push(EvidenceFault::CaMismatch);
            }
            KIND_HUB_CERT => {
                // The export key's certificate, then the log key's.
                self.hub_certs += 1;
                let (want, slot) = match self.hub_certs {
                    1 => (KeyPurpose::Export, &mut self.hub),
                    2 => (KeyPurpose::Log, &mut self.hub_log),
                    _ => {
                        self.layout("a third hub certificate");
                        return Ok(());
                    }
                };
                match self.anchor.check_signer_der(bytes, want) {
                    Ok(c) => *slot = Some(c),
                    Err(e) => self.faults.push(EvidenceFault::HubCertificate {
                        reason: format!("the certificate for {}: {e}", want.signs()),
                    }),
                }
            }
            KIND_HOLD => {
                let h: Hold =
                    decode_exact(bytes, MAX_SMALL).map_err(|e| self.decode_err(kind, e))?;
                self.holds.push(h);
            }
            KIND_NODE_CERT => {
                let start_new = self
                    .node
                    .as_ref()
                    .is_none_or(|n| n.checkpoint.is_some() || n.last.is_some());
                match self.anchor.check_device_der(bytes) {
                    Ok(c) => {
                        if start_new {
                            self.close_node();
                            self.nodes.push(c.name.to_string());
                            self.node = Some(NodeState {
                                device: c.name.clone(),
                                keys: vec![c.key],
                                checkpoint: None,
                                checkpoint_ok: false,
                                last: None,
                                reads: Vec::new(),
                            });
                        } else if let Some(n) = self.node.as_mut() {
                            if n.device != c.name {
                                let what = format!(
                                    "certificate of {} among those of {}",
                                    c.name, n.device
                                );
                                self.layout(what);
                            } else {
                                n.keys.push(c.key);
                            }
                        }
                    }
                    Err(e) => {
                        let node = crate::cert::claimed_name(bytes)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|_| "?".into());
                        self.faults.push(EvidenceFault::NodeCertificate {
                            node,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            KIND_CHECKPOINT => {
                let c = SignedCheckpoint::decode(bytes).map_err(|e| self.decode_err(kind, e))?;
                let Some(n) = self.node.as_mut() else {
                    self.layout("a checkpoint before any node certificate");
                    return Ok(());
                };
                if n.checkpoint.is_some() || n.last.is_some() {
                    self.layout("a second checkpoint, or one after the node's entries");
                    return Ok(());
                }
                let ok =
                    c.checkpoint.device == n.device && n.keys.iter().any(|k| c.signature_valid(k));
                if !ok {
                    let node = n.device.to_string();
                    self.faults.push(EvidenceFault::Checkpoint {
                        node,
                        what: "not signed by the node's certified key".into(),
                    });
                }
                n.checkpoint_ok = ok;
                n.checkpoint = Some(c);
            }
            KIND_HEADER | KIND_READ => {
                let e = SignedEntry::decode(bytes).map_err(|e| self.decode_err(kind, e))?;
                self.entry(kind, e);
            }
            KIND_IMAGE => {
                let hash = sha256(bytes);
                match self.photos.pop_front() {
                    Some((i, want, crop)) => {
                        let ok = hash == want;
                        let r = &mut self.reads[i];
                        if crop {
                            r.crop = ok;
                        } else {
                            r.overview = ok;
                        }
                        if !ok {
                            let (node, seq) = (r.node.clone(), r.seq);
                            let which = if crop { "crop" } else { "overview" };
                            self.faults.push(EvidenceFault::Read {
                                node,
                                seq,
                                what: format!("the {which} photo is not the one the node signed"),
                            });
                        }
                    }
                    None => self.layout("a photo that belongs to no read"),
                }
            }
            KIND_ACCESS => {
                self.close_node();
                let e = SignedEntry::decode(bytes).map_err(|e| self.decode_err(kind, e))?;
                self.accesses += 1;
                let signed = self
                    .hub_log
                    .as_ref()
                    .is_some_and(|h| e.signature_valid(&h.key) && h.valid_at(e.header.captured_at));
                if !signed {
                    self.faults.push(EvidenceFault::Access {
                        what: format!("entry #{} is not signed by the hub's log key", e.seq()),
                    });
                }
                let case = self.info.as_ref().map(|i| i.case.as_str());
                match e.access() {
                    Some(a) if a.action == AccessAction::Export && a.case.as_deref() == case => {}
                    _ => self.faults.push(EvidenceFault::Access {
                        what: format!("entry #{} is not this case's export", e.seq()),
                    }),
                }
            }
            KIND_HTML => self.close_node(),
            _ => {}
        }
        Ok(())
    }

    fn missing_photos(&mut self) {
        while let Some((i, _, crop)) = self.photos.pop_front() {
            let r = &self.reads[i];
            let which = if crop { "crop" } else { "overview" };
            let (node, seq) = (r.node.clone(), r.seq);
            self.faults.push(EvidenceFault::Read {
                node,
                seq,
                what: format!("its {which} photo is missing"),
            });
        }
    }

    fn entry(&mut self, kind: u8, e: SignedEntry) {
        let Some(n) = self.node.as_mut() else {
            self.layout("an entry before any node certificate");
            return;
        };
        let node = n.device.to_string();
        let seq = e.seq();
        let mut faults = Vec::new();
        if e.header.device != n.device {
            faults.push(EvidenceFault::Chain {
                node: node.clone(),
                seq,
                what: format!("an entry of {} in this node's section", e.header.device),
            });
        }
        if let Some((last, hash)) = n.last {
            if seq != last.saturating_add(1) {
                faults.push(EvidenceFault::Chain {
                    node: node.clone(),
                    seq,
                    what: format!("follows #{last}: entries missing or out of order"),
                });
            } else if e.header.prev != hash {
                faults.push(EvidenceFault::Chain {
                    node: node.clone(),
                    seq,
                    what: "does not link to the entry before it".into(),
                });
            }
        }
        let (sig, content) = entry_checks(&n.keys, &e);
        if !sig {
            faults.push(EvidenceFault::Chain {
                node: node.clone(),
                seq,
                what: "not signed by the node's certified key".into(),
            });
        }
        n.last = Some((seq, e.hash()));
        if kind == KIND_HEADER && e.body.is_some() {
            faults.push(EvidenceFault::Chain {
                node: node.clone(),
                seq,
                what: "a non-case entry carries its content".into(),
            });
        }
        if kind == KIND_READ {
            match (&e.header.kind, e.read()) {
                (EntryKind::Read { .. }, Some(c)) => {
                    let i = self.reads.len();
                    self.reads.push(ReadVerdict {
                        node: node.clone(),
                        seq,
                        plate: c.plate.clone(),
                        captured_at: e.header.captured_at,
                        time_source: e.header.time_source.to_string(),
                        location: c.location.to_string(),
                        camera: c.camera.clone(),
                        confidence: c.confidence,
                        signature: sig,
                        content,
                        crop: false,
                        overview: false,
                        placed_by_checkpoint: None,
                    });
                    n.reads.push(i);
                    self.photos.push_back((i, c.crop_hash, true));
                    self.photos.push_back((i, c.overview_hash, false));
                    if !content {
                        faults.push(EvidenceFault::Read {
                            node: node.clone(),
                            seq,
                            what: "its content is not what the node signed".into(),
                        });
                    }
                }
                _ => faults.push(EvidenceFault::Read {
                    node: node.clone(),
                    seq,
                    what: "a case read without its content".into(),
                }),
            }
        }
        self.faults.extend(faults);
    }

    /// End the current node: its chain must reach its checkpoint.
    fn close_node(&mut self) {
        let Some(n) = self.node.take() else { return };
        let node = n.device.to_string();
        let placed = match (&n.checkpoint, n.last) {
            (Some(c), Some((last, hash))) if n.checkpoint_ok => {
                let c = &c.checkpoint;
                if c.size == last.saturating_add(1) && c.head == hash {
                    Some(c.size)
                } else {
                    self.faults.push(EvidenceFault::Checkpoint {
                        node: node.clone(),
                        what: format!(
                            "the entries end at #{last}, the checkpoint names {} entries with \
                             another head: the chain does not reach it",
                            c.size
                        ),
                    });
                    None
                }
            }
            (None, _) => {
                self.faults.push(EvidenceFault::Checkpoint {
                    node: node.clone(),
                    what: "no checkpoint: the reads cannot be placed in the node's log".into(),
                });
                None
            }
            _ => None,
        };
        for i in n.reads {
            self.reads[i].placed_by_checkpoint = placed;
        }
    }

    fn section_hashes(&self) -> Vec<Section> {
        self.sections
            .iter()
            .filter(|(k, _)| **k != KIND_MANIFEST)
            .map(|(k, (n, h))| Section {
                kind: *k,
                records: *n,
                sha256: Hash32(h.clone().finalize().into()),
            })
            .collect()
    }
}

/// A case read handed to the writer, with its photos.
pub struct CaseRead<'a> {
    pub entry: &'a SignedEntry,
    pub crop: &'a [u8],
    pub overview: &'a [u8],
}

/// The certificates (DER) of the hub's keys an evidence bundle carries.
#[derive(Debug, Clone, Copy)]
pub struct HubCertificates<'a> {
    /// The export key's: it signs the manifest.
    pub export: &'a [u8],
    /// The log key's: it signs the export's access entries.
    pub log: &'a [u8],
}

/// Writes an evidence bundle section by section, checking what it writes.
/// Each read's part of the HTML report (its photos inline) goes to `spill`
/// as the read is written, and is copied into the bundle at
/// [`EvidenceWriter::finish`]: memory holds one read at a time.
pub struct EvidenceWriter<W: Write, S: Read + Write + Seek> {
    out: W,
    checker: Checker,
    spill: S,
    spilled: u64,
    info: ExportInfo,
}

impl<W: Write, S: Read + Write + Seek> EvidenceWriter<W, S> {
    /// Start a bundle: the export's details, the CA certificate and the
    /// certificates of the hub's export and log keys. `spill` is an empty
    /// scratch file (for the report's read sections).
    pub fn new(
        mut out: W,
        spill: S,
        info: ExportInfo,
        ca_der: &[u8],
        hub: HubCertificates<'_>,
    ) -> Result<Self, EvidenceError> {
        let anchor = TrustAnchor::from_der(ca_der.to_vec())
            .map_err(|e| EvidenceError::Misuse(format!("an unusable CA certificate: {e}")))?;
        out.write_all(MAGIC)?;
        let mut w = EvidenceWriter {
            out,
            checker: Checker::new(anchor),
            spill,
            spilled: 0,
            info: info.clone(),
        };
        let bytes =
            postcard::to_allocvec(&info).map_err(|e| EvidenceError::Misuse(e.to_string()))?;
        w.record(KIND_INFO, &bytes)?;
        w.record(KIND_CA, ca_der)?;
        w.record(KIND_HUB_CERT, hub.export)?;
        w.record(KIND_HUB_CERT, hub.log)?;
        Ok(w)
    }

    fn record(&mut self, kind: u8, bytes: &[u8]) -> Result<(), EvidenceError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| (*l as usize) <= max_len(kind))
            .ok_or_else(|| EvidenceError::TooLarge {
                index: self.checker.records,
                section: section_name(kind),
                len: bytes.len(),
                max: max_len(kind),
            })?;
        self.out.write_all(&[kind])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(bytes)?;
        self.checker.hash_record_start(kind, len);
        self.checker.hash_bytes(kind, bytes);
        self.checker.check(kind, bytes)
    }

    pub fn hold(&mut self, h: &Hold) -> Result<(), EvidenceError> {
        let bytes = postcard::to_allocvec(h).map_err(|e| EvidenceError::Misuse(e.to_string()))?;
        self.record(KIND_HOLD, &bytes)
    }

    /// Start a node's section: its certificates (DER) and its checkpoint.
    pub fn node(
        &mut self,
        certificates: &[Vec<u8>],
        checkpoint: &SignedCheckpoint,
    ) -> Result<(), EvidenceError> {
        if certificates.is_empty() {
            return Err(EvidenceError::Misuse("a node without certificates".into()));
        }
        self.checker.close_node();
        for c in certificates {
            self.record(KIND_NODE_CERT, c)?;
        }
        self.record(KIND_CHECKPOINT, &checkpoint.encode())
    }

    /// An entry of the node's log that is not part of the case: its signed
    /// header only (any content is dropped here).
    pub fn header(&mut self, e: &SignedEntry) -> Result<(), EvidenceError> {
        let mut e = e.clone();
        e.body = None;
        self.record(KIND_HEADER, &e.encode())
    }

    /// A case read, in full, with its photos.
    pub fn read(&mut self, r: CaseRead<'_>) -> Result<(), EvidenceError> {
        if r.entry.read().is_none() {
            return Err(EvidenceError::Misuse(format!(
                "read #{} without its content",
                r.entry.seq()
            )));
        }
        self.record(KIND_READ, &r.entry.encode())?;
        self.record(KIND_IMAGE, r.crop)?;
        self.record(KIND_IMAGE, r.overview)?;
        // The read's verdict so far; its place is the node's checkpoint,
        // whose chain is checked when the node's section ends (a break
        // is then listed at the top of the report, and in the verdict).
        let i = self.checker.reads.len().saturating_sub(1);
        let mut v = self
            .checker
            .reads
            .last()
            .cloned()
            .ok_or_else(|| EvidenceError::Misuse("a read the checks did not see".into()))?;
        v.placed_by_checkpoint = self.checker.node.as_ref().and_then(|n| {
            n.checkpoint
                .as_ref()
                .filter(|_| n.checkpoint_ok)
                .map(|c| c.checkpoint.size)
        });
        self.spilled += html::section(&mut self.spill, i, &v, r.crop, r.overview)?;
        Ok(())
    }

    /// An access-log entry of this export, signed by the hub's log key.
    pub fn access(&mut self, e: &SignedEntry) -> Result<(), EvidenceError> {
        self.record(KIND_ACCESS, &e.encode())
    }

    /// The report as the checks found it so far (before the HTML).
    pub fn report(&mut self) -> EvidenceReport {
        self.checker.close_node();
        EvidenceReport {
            info: self.checker.info.clone(),
            hub: self.checker.hub.as_ref().map(|h| h.name.clone()),
            signed_at: None,
            reads: self.checker.reads.clone(),
            holds: self.checker.holds.clone(),
            nodes: self.checker.nodes.clone(),
            accesses: self.checker.accesses,
            faults: self.checker.faults.clone(),
        }
    }

    /// Write the HTML report and the signed manifest. Returns the output
    /// and what the writer's checks found (the report lists any fault).
    pub fn finish(
        mut self,
        export_key: &HubKey<ExportSigning>,
        created_at: UnixMillis,
    ) -> Result<(W, EvidenceReport), EvidenceError> {
        let report = self.report();
        let head = html::head(&self.info, &report);
        let total = head.len() as u64 + self.spilled + html::TAIL.len() as u64;
        let len = u32::try_from(total)
            .ok()
            .filter(|l| (*l as usize) <= MAX_HTML_BYTES)
            .ok_or_else(|| EvidenceError::TooLarge {
                index: self.checker.records,
                section: section_name(KIND_HTML),
                len: usize::try_from(total).unwrap_or(usize::MAX),
                max: MAX_HTML_BYTES,
            })?;
        self.out.write_all(&[KIND_HTML])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.checker.hash_record_start(KIND_HTML, len);
        self.out.write_all(head.as_bytes())?;
        self.checker.hash_bytes(KIND_HTML, head.as_bytes());
        self.spill.flush()?;
        self.spill.seek(io::SeekFrom::Start(0))?;
        let mut left = self.spilled;
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = usize::try_from(left)
                .unwrap_or(chunk.len())
                .min(chunk.len());
            read_full(&mut self.spill, &mut chunk[..n])?;
            self.out.write_all(&chunk[..n])?;
            self.checker.hash_bytes(KIND_HTML, &chunk[..n]);
            left -= n as u64;
        }
        self.out.write_all(html::TAIL.as_bytes())?;
        self.checker.hash_bytes(KIND_HTML, html::TAIL.as_bytes());
        self.checker.check(KIND_HTML, &[])?;
        let manifest = EvidenceManifest {
            format: MANIFEST_VERSION,
            created_at,
            case: self.info.case.clone(),
            recipient_ori: self.info.recipient_ori.clone(),
            reads: report.reads.len() as u64,
            records: self.checker.records,
            digest: Hash32(self.checker.all.clone().finalize().into()),
            sections: self.checker.section_hashes(),
        };
        let signed = SignedEvidenceManifest {
            signature: export_key.sign(tag::EVIDENCE_MANIFEST_SIG, &manifest.encode()),
            manifest,
        };
        let bytes =
            postcard::to_allocvec(&signed).map_err(|e| EvidenceError::Misuse(e.to_string()))?;
        let len =
            u32::try_from(bytes.len()).map_err(|_| EvidenceError::Misuse("manifest".into()))?;
        self.out.write_all(&[KIND_MANIFEST])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&bytes)?;
        self.out.flush()?;
        Ok((self.out, report))
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
