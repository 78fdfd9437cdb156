//! A log bundle: device certificates, log entries and checkpoints in one
//! file, closed by a manifest the hub signs, enough for an auditor to
//! verify offline with the CA certificate alone.
//!
//! Layout: the 16-byte magic `ALPR-LOG-BUNDLE2`, then records of
//! `kind: u8, len: u32 big-endian, bytes`. Kind 1 is the certificate (DER)
//! of a log's signer (a node's, or the hub's log key's for its own log), 2
//! a [`SignedEntry`], 3 a [`SignedCheckpoint`], 4 the certificate of the
//! hub's export key (DER), 5 the [`SignedManifest`], which is the last record,
//! 6 a [`Revocation`] (postcard). Revocations come before the first node;
//! each node's records are together: its certificates, its checkpoints,
//! then its entries in order. The hub's own log (its access log, with the
//! records of what retention purged from nodes' logs) is a log like the
//! nodes', under the hub's certificate, after them: the hub builds the
//! bundle and reads its own log last, so every purge that a node's entries
//! show is recorded in it.
//!
//! The manifest names every node with its log size, its latest checkpoint
//! and how many certificates it carries, and a SHA-256 over every byte
//! before the manifest. The hub signs it with its export key, whose
//! certificate the CA issued for that purpose alone (a bundle signed with
//! any other key, the hub's TLS key included, is refused), so a dropped,
//! added or changed byte, node, tail or checkpoint is reported. The hub
//! signs only bundles it built itself from its store. Bundles made before
//! the hub had a key per purpose carry its TLS certificate in kind 4 and
//! are refused for it: export them again.
//!
//! [`verify_bundle`] reads a bundle record by record: its memory does not
//! grow with the bundle's size, only with the number of nodes (and the
//! ranges of reads purged at the hub, which wait for the hub's log).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::verify::{AwaitingHubPurges, LogReport, LogVerifier, NodeKeys, RangeSet, VerifyOptions};
use super::{decode_exact, DecodeError, SignedCheckpoint, SignedEntry, MAX_ENTRY_BYTES};
use crate::cert::{claimed_name, CertError, KeyPurpose, Revocation, SignerCert, TrustAnchor};
use crate::crypto::{sha256, tag, PublicKey, Signature};
use crate::signer::{ExportSigning, HubKey};
use crate::types::{DeviceId, Hash32, UnixMillis};

pub const MAGIC: &[u8; 16] = b"ALPR-LOG-BUNDLE2";
/// The unsigned first version, refused with a clear error.
pub const MAGIC_V1: &[u8; 16] = b"ALPR-LOG-BUNDLE1";
const MAX_CERT_BYTES: usize = 16 * 1024;
const MAX_CHECKPOINT_BYTES: usize = 512;
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Most nodes one bundle may hold.
pub const MAX_NODES: usize = 20_000;
/// Most checkpoints one node may carry in a bundle.
const MAX_NODE_CHECKPOINTS: usize = 256;

/// Record kinds (see the layout above).
pub const KIND_CERT: u8 = 1;
pub const KIND_ENTRY: u8 = 2;
pub const KIND_CHECKPOINT: u8 = 3;
pub const KIND_HUB_CERT: u8 = 4;
pub const KIND_MANIFEST: u8 = 5;
pub const KIND_REVOCATION: u8 = 6;
const MAX_REVOCATION_BYTES: usize = 1024;
/// Most revocations one bundle may carry.
pub const MAX_REVOCATIONS: usize = 100_000;

/// The format version written in a manifest.
pub const MANIFEST_VERSION: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a log bundle (bad magic)")]
    BadMagic,
    #[error(
        "an unsigned version 1 bundle (ALPR-LOG-BUNDLE1): it cannot show that nothing was \
         dropped; export it again from the hub as a signed version 2 bundle"
    )]
    Version1,
    #[error("record {index}: unknown kind {kind}")]
    UnknownKind { index: u64, kind: u8 },
    #[error("record {index}: {len} bytes is over the limit of {max}")]
    TooLarge { index: u64, len: usize, max: usize },
    #[error("record {index}: {source}")]
    Record { index: u64, source: DecodeError },
    #[error("record {index}: unreadable certificate: {source}")]
    Certificate { index: u64, source: CertError },
    #[error("record {index}: {what}")]
    Layout { index: u64, what: String },
    #[error("more than {MAX_NODES} nodes in one bundle")]
    TooManyNodes,
    #[error("the bundle ends without the hub's signed manifest (truncated?)")]
    NoManifest,
    #[error("bytes after the manifest")]
    TrailingData,
    #[error("truncated bundle: {0}")]
    Truncated(io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One node as the hub vouches for it in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNode {
    pub device: DeviceId,
    /// One past the highest sequence number in the bundle.
    pub size: u64,
    /// SHA-256 of the latest checkpoint's record bytes, if any.
    pub checkpoint: Option<Hash32>,
    pub certificates: u32,
}

/// What the hub signs at the end of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u8,
    pub created_at: UnixMillis,
    /// Records before the manifest.
    pub records: u64,
    /// SHA-256 over every byte before the manifest record.
    pub digest: Hash32,
    pub nodes: Vec<ManifestNode>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a manifest always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let m: Manifest = decode_exact(bytes, MAX_MANIFEST_BYTES)?;
        if m.format != MANIFEST_VERSION {
            return Err(DecodeError::Version(m.format));
        }
        Ok(m)
    }

    /// Sign with the hub's export key.
    pub fn sign(self, key: &HubKey<ExportSigning>) -> SignedManifest {
        SignedManifest {
            signature: key.sign(tag::BUNDLE_MANIFEST_SIG, &self.encode()),
            manifest: self,
        }
    }
}

/// A manifest and the hub's signature over its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub signature: Signature,
}

impl SignedManifest {
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verify(
            tag::BUNDLE_MANIFEST_SIG,
            &self.manifest.encode(),
            &self.signature,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a manifest always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let m: SignedManifest = decode_exact(bytes, MAX_MANIFEST_BYTES)?;
        if m.manifest.format != MANIFEST_VERSION {
            return Err(DecodeError::Version(m.manifest.format));
        }
        Ok(m)
    }
}

/// Writes a bundle record by record and builds the manifest as it goes.
pub struct BundleWriter<W: Write> {
    out: W,
    hasher: Sha256,
    records: u64,
    nodes: BTreeMap<DeviceId, (ManifestNode, u64)>,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        let mut hasher = Sha256::new();
        hasher.update(MAGIC);
        Ok(BundleWriter {
            out,
            hasher,
            records: 0,
            nodes: BTreeMap::new(),
        })
    }

    fn record(&mut self, kind: u8, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("record too large"))?;
        let len = len.to_be_bytes();
        self.out.write_all(&[kind])?;
        self.out.write_all(&len)?;
        self.out.write_all(bytes)?;
        self.hasher.update([kind]);
        self.hasher.update(len);
        self.hasher.update(bytes);
        self.records += 1;
        Ok(())
    }

    fn node(&mut self, device: DeviceId) -> &mut (ManifestNode, u64) {
        self.nodes.entry(device.clone()).or_insert_with(|| {
            (
                ManifestNode {
                    device,
                    size: 0,
                    checkpoint: None,
                    certificates: 0,
                },
                0,
            )
        })
    }

    /// The certificate (DER) of the hub's export key, which signs the
    /// manifest.
    pub fn hub_certificate(&mut self, der: &[u8]) -> io::Result<()> {
        self.record(KIND_HUB_CERT, der)
    }

    /// A revocation, with the time it took effect. Write them before the
    /// first node.
    pub fn revocation(&mut self, r: &Revocation) -> io::Result<()> {
        let bytes = postcard::to_allocvec(r).map_err(io::Error::other)?;
        self.record(KIND_REVOCATION, &bytes)
    }

    /// A log signer's certificate (DER): a node's, or the hub's log key's
    /// before its own log. Write a log's certificates first.
    pub fn certificate(&mut self, der: &[u8]) -> io::Result<()> {
        self.record(KIND_CERT, der)?;
        if let Ok(name) = claimed_name(der) {
            self.node(name).0.certificates += 1;
        }
        Ok(())
    }

    pub fn entry(&mut self, e: &SignedEntry) -> io::Result<()> {
        self.entry_bytes(&e.encode())
    }

    pub fn checkpoint(&mut self, c: &SignedCheckpoint) -> io::Result<()> {
        self.checkpoint_bytes(&c.encode())
    }

    /// An entry as stored (its canonical bytes), written as is: evidence
    /// carries exactly what the store held; readers decode and check it.
    pub fn entry_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(KIND_ENTRY, bytes)?;
        if let Ok(e) = SignedEntry::decode(bytes) {
            let n = &mut self.node(e.header.device.clone()).0;
            n.size = n.size.max(e.seq().saturating_add(1));
        }
        Ok(())
    }

    /// A checkpoint as stored, written as is. Write a node's checkpoints
    /// before its entries.
    pub fn checkpoint_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(KIND_CHECKPOINT, bytes)?;
        if let Ok(c) = SignedCheckpoint::decode(bytes) {
            let hash = sha256(bytes);
            let (n, latest) = self.node(c.checkpoint.device.clone());
            if n.checkpoint.is_none() || c.checkpoint.size >= *latest {
                n.checkpoint = Some(hash);
                *latest = c.checkpoint.size;
            }
        }
        Ok(())
    }

    /// The manifest of everything written so far, for the hub to sign.
    pub fn manifest(&self, created_at: UnixMillis) -> Manifest {
        Manifest {
            format: MANIFEST_VERSION,
            created_at,
            records: self.records,
            digest: Hash32(self.hasher.clone().finalize().into()),
            nodes: self.nodes.values().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// Close the bundle with the signed manifest.
    pub fn finish(mut self, manifest: &SignedManifest) -> io::Result<W> {
        let bytes = manifest.encode();
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("manifest too large"))?;
        self.out.write_all(&[KIND_MANIFEST])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&bytes)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Close the bundle, signing the manifest with the hub's export key.
    pub fn finish_signed(
        self,
        key: &HubKey<ExportSigning>,
        created_at: UnixMillis,
    ) -> io::Result<W> {
        let signed = self.manifest(created_at).sign(key);
        self.finish(&signed)
    }
}

/// Something wrong with the bundle as a whole (rather than one node's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum BundleFault {
    /// No export certificate, or one the CA did not issue for exports.
    HubCertificate { reason: String },
    /// The manifest's signature does not verify with the export key.
    ManifestSignature,
    /// The bytes differ from what the hub signed: records were added,
    /// removed or changed.
    Altered,
    /// The number of records differs from what the hub signed.
    RecordCount { signed: u64, found: u64 },
    /// A node the hub signed for is not in the bundle.
    MissingNode { device: String },
    /// A node in the bundle that the hub did not sign for.
    UnlistedNode { device: String },
    /// A node's log is not the size the hub signed for.
    NodeSize {
        device: String,
        signed: u64,
        found: u64,
    },
    /// The latest checkpoint the hub signed for is not in the bundle.
    MissingCheckpoint { device: String },
    /// A node carries a different number of certificates than signed for.
    CertificateCount {
        device: String,
        signed: u32,
        found: u32,
    },
}

impl std::fmt::Display for BundleFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleFault::HubCertificate { reason } => {
                write!(f, "the hub's export certificate is refused: {reason}")
            }
            BundleFault::ManifestSignature => write!(
                f,
                "the manifest's signature does not verify with the hub's export key"
            ),
            BundleFault::Altered => write!(
                f,
                "the bundle's bytes are not what the hub signed: records were added, removed or changed"
            ),
            BundleFault::RecordCount { signed, found } => write!(
                f,
                "the hub signed for {signed} records but the bundle holds {found}"
            ),
            BundleFault::MissingNode { device } => {
                write!(f, "node {device} was signed for but is not in the bundle")
            }
            BundleFault::UnlistedNode { device } => {
                write!(f, "node {device} is in the bundle but the hub did not sign for it")
            }
            BundleFault::NodeSize {
                device,
                signed,
                found,
            } => write!(
                f,
                "node {device}: the hub signed for a log of {signed} entries but the bundle holds {found}"
            ),
            BundleFault::MissingCheckpoint { device } => write!(
                f,
                "node {device}: the latest checkpoint the hub signed for is not in the bundle"
            ),
            BundleFault::CertificateCount {
                device,
                signed,
                found,
            } => write!(
                f,
                "node {device}: the hub signed for {signed} certificates but the bundle holds {found}"
            ),
        }
    }
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    /// The hub that signed, as its certificate names it.
    pub hub: Option<String>,
    pub signed_at: UnixMillis,
    pub logs: Vec<LogReport>,
    /// The log signed with the hub's log key (the hub's own access log),
    /// by the name its certificate carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_log: Option<String>,
    pub faults: Vec<BundleFault>,
}

impl BundleReport {
    pub fn authentic(&self) -> bool {
        self.faults.is_empty() && self.logs.iter().all(LogReport::authentic)
    }
}

/// What is kept of a node once its records are read.
struct Seen {
    size: u64,
    certificates: u32,
    checkpoints: BTreeSet<Hash32>,
}

/// The node whose records are being read.
struct Current {
    verifier: LogVerifier,
    seen: Seen,
}

/// Reads records and keeps what the manifest is checked against.
struct Reader<R: Read> {
    input: R,
    hasher: Sha256,
    index: u64,
}

impl<R: Read> Reader<R> {
    /// The next record's kind and bytes, `None` at the end of input.
    fn next(&mut self) -> Result<Option<(u8, Vec<u8>)>, BundleError> {
        let mut kind = [0u8; 1];
        loop {
            match self.input.read(&mut kind) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(BundleError::Truncated)?;
        let n = u32::from_be_bytes(len) as usize;
        let index = self.index;
        let max = match kind[0] {
            KIND_CERT | KIND_HUB_CERT => MAX_CERT_BYTES,
            KIND_ENTRY => MAX_ENTRY_BYTES,
            KIND_CHECKPOINT => MAX_CHECKPOINT_BYTES,
            KIND_MANIFEST => MAX_MANIFEST_BYTES,
            KIND_REVOCATION => MAX_REVOCATION_BYTES,
            k => return Err(BundleError::UnknownKind { index, kind: k }),
        };
        if n > max {
            return Err(BundleError::TooLarge { index, len: n, max });
        }
        let mut buf = vec![0u8; n];
        self.input
            .read_exact(&mut buf)
            .map_err(BundleError::Truncated)?;
        if kind[0] != KIND_MANIFEST {
            self.hasher.update(kind);
            self.hasher.update(len);
            self.hasher.update(&buf);
            self.index += 1;
        }
        Ok(Some((kind[0], buf)))
    }
}

/// Read and verify a bundle, record by record: every node's log against
/// the CA (all its certificates), and the whole against the manifest the
/// hub signed. A malformed bundle is an error; what is wrong with an
/// otherwise readable bundle is in the report.
pub fn verify_bundle(
    input: impl Read,
    anchor: &TrustAnchor,
    opts: VerifyOptions,
) -> Result<BundleReport, BundleError> {
    let mut input = input;
    let mut magic = [0u8; 16];
    input
        .read_exact(&mut magic)
        .map_err(|_| BundleError::BadMagic)?;
    if &magic == MAGIC_V1 {
        return Err(BundleError::Version1);
    }
    if &magic != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let mut hasher = Sha256::new();
    hasher.update(magic);
    let mut r = Reader {
        input,
        hasher,
        index: 0,
    };
    let mut hub: Option<Result<SignerCert, CertError>> = None;
    // The logs whose certificate is the hub's log key's (the hub's own),
    // with that key: its purge records vouch for what it purged.
    let mut hub_logs: BTreeMap<DeviceId, Vec<PublicKey>> = BTreeMap::new();
    // The first of them, by name (the hub's own access log).
    let mut hub_log: Option<String> = None;
    let mut nodes = Nodes::default();
    let mut revocations: Vec<Revocation> = Vec::new();
    // What the hub signed that it purged from nodes' logs, from entries of
    // its own log whose signature its log key's certificate verifies;
    // applied to the nodes' reports at the end (the hub's log comes after
    // theirs).
    let mut hub_purges: BTreeMap<DeviceId, RangeSet> = BTreeMap::new();

    let manifest = loop {
        let Some((kind, buf)) = r.next()? else {
            return Err(BundleError::NoManifest);
        };
        let index = r.index.saturating_sub(1);
        let layout = |what: String| BundleError::Layout { index, what };
        match kind {
            KIND_MANIFEST => {
                let m = SignedManifest::decode(&buf).map_err(|source| BundleError::Record {
                    index: r.index,
                    source,
                })?;
                let mut more = [0u8; 1];
                if r.input.read(&mut more)? != 0 {
                    return Err(BundleError::TrailingData);
                }
                break m;
            }
            KIND_HUB_CERT => {
                if hub.is_some() {
                    return Err(layout("a second hub certificate".into()));
                }
                hub = Some(anchor.check_signer_der(&buf, KeyPurpose::Export));
            }
            KIND_REVOCATION => {
                if nodes.current.is_some() || !nodes.done.is_empty() {
                    return Err(layout("a revocation after the first node".into()));
                }
                if revocations.len() >= MAX_REVOCATIONS {
                    return Err(layout(format!("more than {MAX_REVOCATIONS} revocations")));
                }
                // The record's length was checked against its kind's limit.
                let rev: Revocation = decode_exact(&buf, buf.len())
                    .map_err(|source| BundleError::Record { index, source })?;
                revocations.push(rev);
            }
            KIND_CERT => {
                let name = claimed_name(&buf)
                    .map_err(|source| BundleError::Certificate { index, source })?;
                let checked = anchor.check_chain_signer_der(&buf);
                if let Ok(c) = &checked {
                    if c.name == name && anchor.check_signer_der(&buf, KeyPurpose::Log).is_ok() {
                        hub_log.get_or_insert_with(|| name.to_string());
                        hub_logs.entry(name.clone()).or_default().push(c.key);
                    }
                }
                let node = nodes.switch(&name, &revocations, opts).map_err(&layout)?;
                if node.verifier.entries() > 0 {
                    return Err(layout(format!("a certificate of {name} after its entries")));
                }
                node.seen.certificates += 1;
                match checked {
                    Ok(c) if c.name == name => node.verifier.add_certificate(c),
                    Ok(_) => {}
                    Err(e) => node.verifier.refuse_certificate(e),
                }
            }
            KIND_CHECKPOINT => {
                let c = SignedCheckpoint::decode(&buf)
                    .map_err(|source| BundleError::Record { index, source })?;
                let name = c.checkpoint.device.clone();
                let node = nodes.switch(&name, &revocations, opts).map_err(&layout)?;
                if node.verifier.entries() > 0 {
                    return Err(layout(format!("a checkpoint of {name} after its entries")));
                }
                if node.seen.checkpoints.len() >= MAX_NODE_CHECKPOINTS {
                    return Err(layout(format!(
                        "more than {MAX_NODE_CHECKPOINTS} checkpoints of {name}"
                    )));
                }
                node.seen.checkpoints.insert(sha256(&buf));
                node.verifier.checkpoint(&c);
            }
            _ => {
                let e = SignedEntry::decode(&buf)
                    .map_err(|source| BundleError::Record { index, source })?;
                let name = e.header.device.clone();
                let node = nodes.switch(&name, &revocations, opts).map_err(&layout)?;
                node.seen.size = node.seen.size.max(e.seq().saturating_add(1));
                node.verifier.entry(&e);
                if let (super::EntryKind::NodePurge { node, ranges, .. }, Some(keys)) =
                    (&e.header.kind, hub_logs.get(&name))
                {
                    if keys.iter().any(|k| e.signature_valid(k))
                        && (hub_purges.len() < MAX_NODES || hub_purges.contains_key(node))
                    {
                        let held = hub_purges.entry(node.clone()).or_default();
                        for r in ranges {
                            if held.len() >= super::verify::MAX_PENDING {
                                break;
                            }
                            held.insert(r.first, r.last);
                        }
                    }
                }
            }
        }
        if nodes.done.len() > MAX_NODES {
            return Err(BundleError::TooManyNodes);
        }
    };
    let (done, logs) = nodes.finish();
    let logs: Vec<LogReport> = logs
        .into_iter()
        .map(|log| {
            let hub = DeviceId::new(log.device())
                .ok()
                .and_then(|d| hub_purges.get(&d));
            log.resolve(hub)
        })
        .collect();

    let mut faults = Vec::new();
    let m = &manifest.manifest;
    let hub_name = match &hub {
        None => {
            faults.push(BundleFault::HubCertificate {
                reason: "the bundle carries no export certificate".into(),
            });
            None
        }
        Some(Err(e)) => {
            faults.push(BundleFault::HubCertificate {
                reason: e.to_string(),
            });
            None
        }
        Some(Ok(h)) => {
            if !manifest.signature_valid(&h.key) {
                faults.push(BundleFault::ManifestSignature);
            } else if !h.valid_at(m.created_at) {
                faults.push(BundleFault::HubCertificate {
                    reason: "the manifest was signed outside the certificate's validity".into(),
                });
            }
            Some(h.name.clone())
        }
    };
    let digest = Hash32(r.hasher.finalize().into());
    if digest != m.digest {
        faults.push(BundleFault::Altered);
    }
    if m.records != r.index {
        faults.push(BundleFault::RecordCount {
            signed: m.records,
            found: r.index,
        });
    }
    let mut listed = BTreeSet::new();
    for n in &m.nodes {
        let device = n.device.to_string();
        listed.insert(&n.device);
        let Some(seen) = done.get(&n.device) else {
            faults.push(BundleFault::MissingNode { device });
            continue;
        };
        if seen.size != n.size {
            faults.push(BundleFault::NodeSize {
                device: device.clone(),
                signed: n.size,
                found: seen.size,
            });
        }
        if let Some(cp) = &n.checkpoint {
            if !seen.checkpoints.contains(cp) {
                faults.push(BundleFault::MissingCheckpoint {
                    device: device.clone(),
                });
            }
        }
        if seen.certificates != n.certificates {
            faults.push(BundleFault::CertificateCount {
                device,
                signed: n.certificates,
                found: seen.certificates,
            });
        }
    }
    for d in done.keys() {
        if !listed.contains(d) {
            faults.push(BundleFault::UnlistedNode {
                device: d.to_string(),
            });
        }
    }
    Ok(BundleReport {
        hub: hub_name,
        signed_at: m.created_at,
        logs,
        hub_log,
        faults,
    })
}

/// The nodes met so far: the one whose records are being read, and
/// those whose records are closed (what was seen of each, and its log's
/// report awaiting the hub's purges).
#[derive(Default)]
struct Nodes {
    current: Option<Current>,
    done: BTreeMap<DeviceId, Seen>,
    logs: Vec<AwaitingHubPurges>,
}

impl Nodes {
    /// The node `name`'s state, finishing the previous node if it is
    /// another; a node whose records were already closed may not appear
    /// again.
    fn switch(
        &mut self,
        name: &DeviceId,
        revocations: &[Revocation],
        opts: VerifyOptions,
    ) -> Result<&mut Current, String> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.verifier.device() != name)
        {
            self.finish_current();
        }
        if self.current.is_none() {
            if self.done.contains_key(name) {
                return Err(format!("records of {name} in two places"));
            }
            self.current = Some(Current {
                verifier: LogVerifier::new(
                    name.clone(),
                    NodeKeys::new(Vec::new(), revocations),
                    opts,
                ),
                seen: Seen {
                    size: 0,
                    certificates: 0,
                    checkpoints: BTreeSet::new(),
                },
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| "no current node".to_owned())
    }

    fn finish_current(&mut self) {
        if let Some(c) = self.current.take() {
            let device = c.verifier.device().clone();
            self.logs.push(c.verifier.finish_awaiting_hub());
            self.done.insert(device, c.seen);
        }
    }

    /// Every node closed: what was seen of each, and the logs' reports.
    fn finish(mut self) -> (BTreeMap<DeviceId, Seen>, Vec<AwaitingHubPurges>) {
        self.finish_current();
        (self.done, self.logs)
    }
}
