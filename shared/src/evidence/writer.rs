//! Writing an evidence bundle: sections in order, each record checked as
//! it is written (the verifier's own checks), the manifest signed last.

use super::*;

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

    pub(super) fn record(&mut self, kind: u8, bytes: &[u8]) -> Result<(), EvidenceError> {
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
