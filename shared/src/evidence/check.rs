//! The checks a bundle passes record by record, shared by the writer and
//! the verifier: the CA, the node certificates and checkpoints, each read's
//! chain to its checkpoint, the photos bound to their reads, the hub's
//! access entry; and the section hashes the manifest signs.

use super::*;

/// A node's section while it is being read.
pub(super) struct NodeState {
    pub(super) device: DeviceId,
    pub(super) keys: Vec<PublicKey>,
    pub(super) checkpoint: Option<SignedCheckpoint>,
    pub(super) checkpoint_ok: bool,
    /// The last entry seen: its sequence and hash.
    pub(super) last: Option<(u64, Hash32)>,
    /// Indices into `reads` of this node's case reads.
    pub(super) reads: Vec<usize>,
}

/// The checks shared by the writer and the verifier: fed one record at a
/// time, in order.
pub(super) struct Checker {
    pub(super) anchor: TrustAnchor,
    /// The hub's export key's certificate: it signs the manifest.
    pub(super) hub: Option<SignerCert>,
    /// The hub's log key's certificate: it signs the access entries.
    pub(super) hub_log: Option<SignerCert>,
    /// Hub certificates read so far.
    pub(super) hub_certs: u8,
    pub(super) info: Option<ExportInfo>,
    pub(super) holds: Vec<Hold>,
    pub(super) node: Option<NodeState>,
    pub(super) nodes: Vec<String>,
    pub(super) reads: Vec<ReadVerdict>,
    /// Photos expected next: (read index, hash, is crop).
    pub(super) photos: VecDeque<(usize, Hash32, bool)>,
    pub(super) accesses: u64,
    pub(super) faults: Vec<EvidenceFault>,
    pub(super) sections: BTreeMap<u8, (u64, Sha256)>,
    pub(super) all: Sha256,
    pub(super) records: u64,
    /// The highest kind seen so far (sections come in order).
    pub(super) stage: u8,
}

pub(super) fn entry_checks(keys: &[PublicKey], e: &SignedEntry) -> (bool, bool) {
    let sig = keys.iter().any(|k| e.signature_valid(k));
    (sig, e.body_matches())
}

impl Checker {
    pub(super) fn new(anchor: TrustAnchor) -> Self {
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

    pub(super) fn hash_record_start(&mut self, kind: u8, len: u32) {
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

    pub(super) fn hash_bytes(&mut self, kind: u8, bytes: &[u8]) {
        if let Some(s) = self.sections.get_mut(&kind) {
            s.1.update(bytes);
        }
        self.all.update(bytes);
    }

    pub(super) fn layout(&mut self, what: impl Into<String>) {
        let index = self.records.saturating_sub(1);
        self.faults.push(EvidenceFault::Layout {
            index,
            what: what.into(),
        });
    }

    pub(super) fn decode_err(&self, kind: u8, source: DecodeError) -> EvidenceError {
        EvidenceError::Record {
            index: self.records.saturating_sub(1),
            section: section_name(kind),
            source,
        }
    }

    /// Check one record's meaning (after its bytes were hashed).
    pub(super) fn check(&mut self, kind: u8, bytes: &[u8]) -> Result<(), EvidenceError> {
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

    pub(super) fn missing_photos(&mut self) {
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

    pub(super) fn entry(&mut self, kind: u8, e: SignedEntry) {
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
    pub(super) fn close_node(&mut self) {
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

    pub(super) fn section_hashes(&self) -> Vec<Section> {
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
