//! `hub store check`: the consistency of every chain the store holds, read
//! from the store itself (either backend; on PostgreSQL while hubs run).
//!
//! For each node: every stored entry is verified from the start against
//! the certificates the node has held and the recorded revocations (the
//! same verifier as `hub audit verify` and `hub verify`), and the node's
//! record must agree with its chain: the next sequence number is one past
//! the last entry (or past a signed loss), the head is that entry's hash,
//! and no checkpoint reaches beyond the entries. The hub's own access log
//! is verified against the hub's certificate.

use alpr_shared::cert::{KeyPurpose, TrustAnchor};
use alpr_shared::log::verify::{LogReport, LogVerifier, NodeKeys, VerifyOptions};
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use alpr_shared::types::DeviceId;
use serde::Serialize;

use super::{HubStorage, StoreError};

/// Entries read per page.
const PAGE: usize = 4096;

/// What the check found for one chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainCheck {
    /// The node's name, or the hub's for its access log.
    pub chain: String,
    /// Entries read from the store.
    pub entries: u64,
    /// The node record's next sequence number (the hub's log: its size).
    pub next_seq: u64,
    /// Faults of the chain itself (signatures, links, gaps) and
    /// disagreements between the record and the chain.
    pub problems: Vec<String>,
}

impl ChainCheck {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The whole store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreCheck {
    pub chains: Vec<ChainCheck>,
}

impl StoreCheck {
    pub fn ok(&self) -> bool {
        self.chains.iter().all(ChainCheck::ok)
    }
}

/// Check every node's chain and the hub's access log (signed by the key of
/// `log_cert`, DER, which must be certified for the hub's log).
pub fn check(
    storage: &dyn HubStorage,
    anchor: &TrustAnchor,
    log_cert: &[u8],
) -> Result<StoreCheck, StoreError> {
    let revocations = storage.revocations()?;
    let mut chains = Vec::new();
    for (device, record) in storage.nodes()? {
        let mut problems = Vec::new();
        let mut certs = Vec::new();
        for c in storage.certificates(&device)? {
            match anchor.check_device_der(&c.der) {
                Ok(cert) if cert.name == device => certs.push(cert),
                Ok(cert) => problems.push(format!(
                    "certificate {} names {}, not this node",
                    c.serial, cert.name
                )),
                Err(e) => problems.push(format!("certificate {} is refused: {e}", c.serial)),
            }
        }
        let keys = NodeKeys::new(certs, &revocations);
        let checkpoint = storage.checkpoint(&device)?;
        let (entries, report) = verify_chain(&device, keys, checkpoint.as_ref(), |d, f| {
            storage.entries(d, f, PAGE)
        })?;
        problems.extend(report.faults.iter().map(ToString::to_string));
        if report.faults_omitted > 0 {
            problems.push(format!("{} more faults", report.faults_omitted));
        }
        let lost_past = report.losses.iter().map(|l| l.last + 1).max().unwrap_or(0);
        let expected_next = report.size.max(lost_past);
        if entries > 0 || record.next_seq > 0 {
            if record.next_seq != expected_next {
                problems.push(format!(
                    "the node record says the next entry is {}, the chain ends before {}",
                    record.next_seq, expected_next
                ));
            }
            let head = report.head.clone().unwrap_or_default();
            if lost_past <= report.size && head != record.head.to_hex() {
                problems.push(format!(
                    "the node record's head {} is not the last entry's hash {head}",
                    record.head.to_hex()
                ));
            }
        }
        chains.push(ChainCheck {
            chain: device.to_string(),
            entries,
            next_seq: record.next_seq,
            problems,
        });
    }
    chains.push(check_access_log(storage, anchor, log_cert)?);
    Ok(StoreCheck { chains })
}

fn check_access_log(
    storage: &dyn HubStorage,
    anchor: &TrustAnchor,
    log_cert: &[u8],
) -> Result<ChainCheck, StoreError> {
    let (size, head) = storage.hub_access_head()?;
    let signer = match anchor
        .check_signer_der(log_cert, KeyPurpose::Log)
        .and_then(|c| c.as_log_signer())
    {
        Ok(c) => c,
        Err(e) => {
            return Ok(ChainCheck {
                chain: "hub access log".into(),
                entries: 0,
                next_seq: size,
                problems: vec![format!("the hub's log certificate is refused: {e}")],
            })
        }
    };
    let name = signer.name.clone();
    let (entries, report) = verify_chain(&name, NodeKeys::single(&signer), None, |_, f| {
        storage.hub_access_entries(f, PAGE)
    })?;
    let mut problems: Vec<String> = report.faults.iter().map(ToString::to_string).collect();
    if report.size != size {
        problems.push(format!(
            "the log's recorded size is {size}, its entries end before {}",
            report.size
        ));
    }
    if size > 0 && report.head.as_deref() != Some(head.to_hex().as_str()) {
        problems.push("the log's recorded head is not its last entry's hash".into());
    }
    Ok(ChainCheck {
        chain: format!("hub access log ({name})"),
        entries,
        next_seq: size,
        problems,
    })
}

/// Verify a chain read page by page through `page(device, first)`.
fn verify_chain(
    device: &DeviceId,
    keys: NodeKeys,
    checkpoint: Option<&SignedCheckpoint>,
    page: impl Fn(&DeviceId, u64) -> Result<Vec<Vec<u8>>, StoreError>,
) -> Result<(u64, LogReport), StoreError> {
    let mut v = LogVerifier::new(device.clone(), keys, VerifyOptions { from_start: true });
    if let Some(c) = checkpoint {
        v.checkpoint(c);
    }
    let mut next = 0u64;
    let mut count = 0u64;
    loop {
        let rows = page(device, next)?;
        if rows.is_empty() {
            break;
        }
        let full = rows.len() >= PAGE;
        for bytes in rows {
            let e = SignedEntry::decode(&bytes).map_err(|e| StoreError::Corrupt {
                table: "entries",
                detail: format!("{device}: an entry after {next} cannot be decoded: {e}"),
            })?;
            next = e.seq() + 1;
            count += 1;
            v.entry(&e);
        }
        if !full {
            break;
        }
    }
    Ok((count, v.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;
    use crate::store::WriteOp;
    use alpr_shared::log::LogWriter;
    use alpr_shared::pki::{new_ca, Authority};
    use alpr_shared::sync::{verify_batch, Validity};
    use alpr_shared::types::{DeviceKind, TimeSource, UnixMillis};
    use alpr_shared::wire::Entries;

    #[test]
    fn a_consistent_store_passes_and_a_record_ahead_of_its_chain_is_reported() {
        let ca = new_ca("Check Agency", 30).expect("ca");
        let authority = Authority::load(&ca.cert_pem, &ca.key_pem).expect("authority");
        let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
        let device = DeviceId::new("pole-1").expect("name");
        let (issued, key) = authority
            .issue_device(&device, DeviceKind::Pole, 30)
            .expect("node cert");
        let der = alpr_shared::cert::pem_certificates(issued.cert_pem.as_bytes())
            .expect("pem")
            .remove(0);
        let (log_cert, _) = authority
            .issue_signer(KeyPurpose::Log, "hub", 30)
            .expect("log cert");
        let hub_der = alpr_shared::cert::pem_certificates(log_cert.cert_pem.as_bytes())
            .expect("pem")
            .remove(0);
        // The TLS certificate is no log key's: the access log is refused.
        let tls = authority
            .issue_hub(&["localhost".into()], 30)
            .expect("hub cert");
        let tls_der = alpr_shared::cert::pem_certificates(tls.cert_pem.as_bytes())
            .expect("pem")
            .remove(0);
        let dir = tempfile::tempdir().expect("dir");
        let store = RedbStore::open(&dir.path().join("hub.redb")).expect("open");
        let serial = anchor.check_device_der(&der).expect("valid").serial;
        store
            .commit(vec![WriteOp::Contact {
                device: device.clone(),
                serial,
                cert_der: der,
                reported_size: 12,
                at: UnixMillis(1),
            }])
            .expect("contact");
        let public = key.public();
        let mut w = LogWriter::new(key, device.clone());
        let now = UnixMillis::now();
        let log = (0..12)
            .map(|i| {
                w.append_read(
                    crate::sample::sample_read(i),
                    UnixMillis(now.0 + i),
                    TimeSource::Ntp,
                )
                .expect("valid")
            })
            .collect();
        let batch =
            Entries::from_log(log, Some(w.checkpoint(UnixMillis(now.0 + 100)))).expect("batch");
        let v = verify_batch(&public, &device, Validity::ALWAYS, batch).expect("verifies");
        store
            .commit(vec![WriteOp::Ingest {
                device: device.clone(),
                entries: v.entries,
                checkpoint: v.checkpoint,
                new_key: v.new_key,
                at: UnixMillis(2),
            }])
            .expect("ingest");

        let report = check(&store, &anchor, &tls_der).expect("check");
        let hub_log = report.chains.last().expect("the access log");
        assert!(
            hub_log
                .problems
                .iter()
                .any(|p| p.contains("server authentication")),
            "{hub_log:?}"
        );
        let report = check(&store, &anchor, &hub_der).expect("check");
        assert!(report.ok(), "{report:#?}");
        let node = &report.chains[0];
        assert_eq!(
            (node.chain.as_str(), node.entries, node.next_seq),
            ("pole-1", 12, 12)
        );

        // The record moved past entries the chain does not hold, with no
        // signed loss in the chain to say why: reported.
        store
            .commit(vec![WriteOp::Skip {
                device: device.clone(),
                first: 12,
                last: 20,
                head: alpr_shared::types::Hash32([7; 32]),
                at: UnixMillis(3),
            }])
            .expect("skip");
        let report = check(&store, &anchor, &hub_der).expect("check");
        assert!(!report.ok());
        assert!(
            report.chains[0]
                .problems
                .iter()
                .any(|p| p.contains("next entry is 21")),
            "{report:#?}"
        );
    }
}
