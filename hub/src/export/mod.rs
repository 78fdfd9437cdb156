//! Evidence export (policy 426.4, Civil Code §1798.90.55): a case's reads,
//! for a recipient agency listed in the policy, as one evidence bundle
//! ([`alpr_shared::evidence`]) that `hub verify` checks offline.
//!
//! `POST /api/v1/export` [`ExportRequest`] → the bundle's bytes
//! (`application/octet-stream`). Supervisors only
//! ([`Permission::ExportEvidence`]): they own their agency's cases;
//! auditors verify bundles but do not hand data out. The recipient must be
//! an agency in the policy, public and in-state: an out-of-state or federal
//! agency is refused with the reason ([`Agency::export_refusal`]). Every
//! attempt, refused or not, is in the access log (`AccessAction::Export`,
//! naming the case, the recipient and the count) with its reason: refused
//! by role, purpose or recipient, a case no hold names, a read or photo
//! not at the hub yet, or a bundle that failed on the way (recorded after
//! the allowed entry that names it). An allowed export's entry is durable
//! before the first byte is sent, and is inside the bundle.
//!
//! A case's reads are those its legal holds cover ([`held`]): the holds
//! the hub keeps and merges with every node's ([`crate::holds`]).

use std::collections::BTreeMap;
use std::io::{Seek, Write};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::control::holds::{held, Hold};
use alpr_shared::control::{Agency, SignedPolicy};
use alpr_shared::evidence::{CaseRead, EvidenceWriter, ExportInfo, HubCertificates};
use alpr_shared::log::SignedEntry;
use alpr_shared::signer::{ExportSigning, HubKey};
use alpr_shared::types::{DeviceId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::keys::HubKeys;
use crate::store::HubStorage;

/// Most reads one export may carry.
pub const MAX_EXPORT_READS: usize = 10_000;
/// Entries read from the store at a time.
const PAGE: usize = 4_096;

/// What `hub export` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub case: String,
    /// The recipient agency's ORI (listed in the policy).
    pub to: String,
    #[serde(default)]
    pub purpose: Option<String>,
}

/// The recipient's refusal under `policy`, if it may not receive data.
pub fn recipient(policy: &SignedPolicy, ori: &str) -> Result<Agency, String> {
    let doc = policy.policy();
    let Some(a) = doc.agencies.iter().find(|a| a.ori == ori) else {
        let listed = doc
            .agencies
            .iter()
            .map(|a| a.ori.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "{ori} is not an agency in policy v{} (listed: {}): exports go only to listed agencies",
            doc.version,
            if listed.is_empty() { "none" } else { &listed }
        ));
    };
    match a.export_refusal() {
        Some(why) => Err(format!("{why} (AG bulletin 2023-DLE-06)")),
        None => Ok(a.clone()),
    }
}

/// A case's reads, chosen and fetched: per node, the sequence numbers of
/// its case reads.
type Chosen = BTreeMap<DeviceId, Vec<u64>>;

/// The reads the holds cover, by node.
pub fn select(storage: &dyn HubStorage, holds: &[Hold]) -> Result<Chosen, String> {
    let active: Vec<Hold> = holds.iter().filter(|h| h.active()).cloned().collect();
    let mut chosen = Chosen::new();
    let mut count = 0usize;
    let mut add = |chosen: &mut Chosen, device: DeviceId, seq: u64| -> Result<(), String> {
        let seqs = chosen.entry(device).or_default();
        if !seqs.contains(&seq) {
            seqs.push(seq);
            count += 1;
        }
        if count > MAX_EXPORT_READS {
            return Err(format!(
                "the case covers more than {MAX_EXPORT_READS} reads: narrow its holds"
            ));
        }
        Ok(())
    };
    let e = |e: crate::store::StoreError| e.to_string();
    for h in &active {
        let s = &h.scope;
        if !s.plates.is_empty() {
            let from = s.from.unwrap_or(UnixMillis(0));
            let to = s.to.unwrap_or(UnixMillis(u64::MAX));
            let found = storage
                .reads_of_plates(&s.plates, from, to, MAX_EXPORT_READS + 1)
                .map_err(e)?;
            let at: Vec<(DeviceId, u64)> =
                found.iter().map(|r| (r.device.clone(), r.seq)).collect();
            for ((device, seq), bytes) in at.into_iter().zip(
                storage
                    .entries_at(
                        &found
                            .iter()
                            .map(|r| (r.device.clone(), r.seq))
                            .collect::<Vec<_>>(),
                    )
                    .map_err(e)?,
            ) {
                let Some(bytes) = bytes else { continue };
                let Ok(entry) = SignedEntry::decode(&bytes) else {
                    continue;
                };
                if held(
                    &active,
                    device.as_str(),
                    entry.header.captured_at,
                    entry.read(),
                ) && entry.read().is_some()
                {
                    add(&mut chosen, device, seq)?;
                }
            }
        } else {
            // No plate: scan the named nodes (or all) for what the hold covers.
            let nodes: Vec<DeviceId> = if s.nodes.is_empty() {
                storage
                    .nodes()
                    .map_err(e)?
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect()
            } else {
                s.nodes
                    .iter()
                    .filter_map(|n| DeviceId::new(n).ok())
                    .collect()
            };
            for device in nodes {
                let mut first = 0u64;
                loop {
                    let page = storage.entries(&device, first, PAGE).map_err(e)?;
                    if page.is_empty() {
                        break;
                    }
                    for bytes in &page {
                        let Ok(entry) = SignedEntry::decode(bytes) else {
                            continue;
                        };
                        first = entry.seq() + 1;
                        if entry.read().is_some()
                            && held(
                                std::slice::from_ref(h),
                                device.as_str(),
                                entry.header.captured_at,
                                entry.read(),
                            )
                        {
                            add(&mut chosen, device.clone(), entry.seq())?;
                        }
                    }
                    if page.len() < PAGE {
                        break;
                    }
                }
            }
        }
    }
    for seqs in chosen.values_mut() {
        seqs.sort_unstable();
    }
    Ok(chosen)
}

/// Why an export cannot be written now (a read not yet placed, a photo
/// not yet at the hub): a conflict, not a fault of the request.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Failed(String),
}

/// Check that every chosen read can be exported (under its node's latest
/// checkpoint, photos held), before anything is logged or written.
pub fn check_ready(storage: &dyn HubStorage, chosen: &Chosen) -> Result<(), ExportError> {
    let f = |e: crate::store::StoreError| ExportError::Failed(e.to_string());
    for (device, seqs) in chosen {
        let cp = storage.checkpoint(device).map_err(f)?.ok_or_else(|| {
            ExportError::NotReady(format!("node {device} has sent no checkpoint yet"))
        })?;
        if let Some(last) = seqs.last() {
            if *last >= cp.checkpoint.size {
                return Err(ExportError::NotReady(format!(
                    "read {device}#{last} is newer than the node's latest checkpoint ({} \
                     entries): export again after its next checkpoint",
                    cp.checkpoint.size
                )));
            }
        }
        let at: Vec<(DeviceId, u64)> = seqs.iter().map(|s| (device.clone(), *s)).collect();
        for (bytes, seq) in storage.entries_at(&at).map_err(f)?.into_iter().zip(seqs) {
            let entry = bytes
                .and_then(|b| SignedEntry::decode(&b).ok())
                .ok_or_else(|| ExportError::Failed(format!("read {device}#{seq} unreadable")))?;
            let Some(c) = entry.read() else {
                return Err(ExportError::NotReady(format!(
                    "read {device}#{seq} has no content at the hub (purged?)"
                )));
            };
            for h in [&c.crop_hash, &c.overview_hash] {
                if !storage.has_image(h).map_err(f)? {
                    return Err(ExportError::NotReady(format!(
                        "a photo of read {device}#{seq} is not at the hub yet"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What signs a bundle: the hub's export key (its manifest), the
/// certificate of its log key (its access entries), and the CA's.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub ca_der: &'a [u8],
    pub export_key: &'a HubKey<ExportSigning>,
    pub log_cert_der: &'a [u8],
}

impl<'a> Signer<'a> {
    /// The hub's signer of evidence bundles under the deployment's CA.
    pub fn of(anchor: &'a TrustAnchor, keys: &'a HubKeys) -> Self {
        Signer {
            ca_der: anchor.der(),
            export_key: &keys.export,
            log_cert_der: &keys.log_cert.der,
        }
    }
}

/// Write the bundle of `chosen` to `out` (`spill`: a scratch file for the
/// report's read sections): for each node its certificates,
/// its checkpoint and its entries from the first case read to the
/// checkpoint (case reads in full with photos, others as headers).
pub fn write_bundle<W: Write, S: std::io::Read + Write + Seek>(
    storage: &dyn HubStorage,
    signer: Signer<'_>,
    (out, spill): (W, S),
    info: ExportInfo,
    holds: &[Hold],
    chosen: &Chosen,
    access: &SignedEntry,
) -> Result<W, ExportError> {
    let f = |e: crate::store::StoreError| ExportError::Failed(e.to_string());
    let g = |e: alpr_shared::evidence::EvidenceError| ExportError::Failed(e.to_string());
    let created_at = info.created_at;
    let mut w = EvidenceWriter::new(
        out,
        spill,
        info,
        signer.ca_der,
        HubCertificates {
            export: signer.export_key.cert_der(),
            log: signer.log_cert_der,
        },
    )
    .map_err(g)?;
    for h in holds {
        w.hold(h).map_err(g)?;
    }
    for (device, seqs) in chosen {
        let Some(first) = seqs.first().copied() else {
            continue;
        };
        let cp = storage
            .checkpoint(device)
            .map_err(f)?
            .ok_or_else(|| ExportError::NotReady(format!("node {device}: no checkpoint")))?;
        let certs: Vec<Vec<u8>> = storage
            .certificates(device)
            .map_err(f)?
            .into_iter()
            .map(|c| c.der)
            .collect();
        w.node(&certs, &cp).map_err(g)?;
        let end = cp.checkpoint.size;
        let mut next = first;
        let mut case = seqs.iter().copied().peekable();
        while next < end {
            let limit = usize::try_from(end - next).unwrap_or(PAGE).min(PAGE);
            let page = storage.entries(device, next, limit).map_err(f)?;
            if page.is_empty() {
                return Err(ExportError::Failed(format!(
                    "node {device}: entries from #{next} are not at the hub"
                )));
            }
            for bytes in &page {
                let entry = SignedEntry::decode(bytes)
                    .map_err(|e| ExportError::Failed(format!("{device}#{next}: {e}")))?;
                if entry.seq() != next {
                    return Err(ExportError::Failed(format!(
                        "node {device}: entry #{next} is missing at the hub"
                    )));
                }
                if case.peek() == Some(&next) {
                    case.next();
                    let c = entry.read().ok_or_else(|| {
                        ExportError::NotReady(format!("read {device}#{next} has no content"))
                    })?;
                    let photo = |h| {
                        storage.image(h).map_err(f)?.ok_or_else(|| {
                            ExportError::NotReady(format!("a photo of {device}#{next} is missing"))
                        })
                    };
                    let crop = photo(&c.crop_hash)?;
                    let overview = photo(&c.overview_hash)?;
                    w.read(CaseRead {
                        entry: &entry,
                        crop: &crop,
                        overview: &overview,
                    })
                    .map_err(g)?;
                } else {
                    w.header(&entry).map_err(g)?;
                }
                next += 1;
            }
        }
    }
    w.access(access).map_err(g)?;
    let (out, report) = w.finish(signer.export_key, created_at).map_err(g)?;
    if !report.faults.is_empty() {
        let list: Vec<String> = report.faults.iter().map(ToString::to_string).collect();
        return Err(ExportError::Failed(format!(
            "the stored data does not verify, nothing exported: {}",
            list.join("; ")
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use alpr_shared::control::{Agency, AgencyKind, Policy};
    use alpr_shared::types::UnixMillis;

    use super::recipient;

    fn agency(ori: &str, kind: AgencyKind) -> Agency {
        Agency {
            ori: ori.into(),
            name: format!("agency {ori}"),
            kind,
        }
    }

    #[test]
    fn only_listed_in_state_public_agencies_receive_exports() {
        let policy = Policy {
            format: alpr_shared::control::policy::POLICY_FORMAT,
            version: 3,
            issued_at: UnixMillis(1),
            hub_retention_days: 365,
            edge_retention_days: 30,
            max_stale_ms: 86_400_000,
            officers: Vec::new(),
            agencies: vec![
                agency("CA0020000", AgencyKind::InStatePublic),
                agency("NV0010000", AgencyKind::OutOfState),
                agency("DCFBI0000", AgencyKind::Federal),
            ],
            revoked_nodes: Vec::new(),
            purposes: crate::policy::default_purposes(),
            hotlists: Default::default(),
        }
        .sign(&crate::keys::throwaway().expect("a policy key"))
        .expect("a valid policy");
        assert_eq!(
            recipient(&policy, "CA0020000").map(|a| a.ori),
            Ok("CA0020000".to_owned())
        );
        let federal = recipient(&policy, "DCFBI0000").expect_err("federal refused");
        assert!(
            federal.contains("federal") && federal.contains("§1798.90.55"),
            "{federal}"
        );
        assert!(federal.contains("2023-DLE-06"), "{federal}");
        let other = recipient(&policy, "NV0010000").expect_err("out of state refused");
        assert!(other.contains("out-of-state"), "{other}");
        let unknown = recipient(&policy, "CA9990000").expect_err("unlisted refused");
        assert!(unknown.contains("not an agency in policy v3"), "{unknown}");
    }
}
