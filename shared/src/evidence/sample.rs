//! A whole case built in memory with a throwaway CA, hub and node: for the
//! evidence tests and `alpr-bench hub export`. Real certificates, real
//! signatures; the photos are random bytes of a JPEG's size.

use super::{CaseRead, EvidenceError, EvidenceReport, EvidenceWriter, ExportInfo, HubCertificates};
use crate::cert::pem_certificates;
use crate::control::holds::{Hold, HoldScope};
use crate::log::{AccessAction, AccessOutcome, AccessRecord, LogWriter, SignedEntry};
use crate::signer::dev::Deployment;
use crate::signer::{ExportSigning, HubKey, LogSigning};
use crate::types::{DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis};

/// Everything needed to write and verify a sample case.
pub struct SampleCase {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    /// The certificates of the hub's export and log keys.
    pub export_der: Vec<u8>,
    pub log_der: Vec<u8>,
    pub export_key: HubKey<ExportSigning>,
    /// The deployment (its CA can issue more: a test's wrong keys).
    pub deployment: Deployment,
    pub node_der: Vec<u8>,
    /// The node's log: case reads and other entries, in order.
    pub entries: Vec<SignedEntry>,
    /// For each entry: its photos if it is a case read.
    pub photos: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    pub checkpoint: crate::log::SignedCheckpoint,
    pub access: SignedEntry,
    pub hold: Hold,
    pub info: ExportInfo,
}

fn photo(len: usize, seed: u64) -> Vec<u8> {
    // A JPEG's start and end around filler: enough to be told apart.
    let mut v = Vec::with_capacity(len.max(4));
    v.extend_from_slice(&[0xFF, 0xD8]);
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    while v.len() + 2 < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x & 0xFF) as u8);
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// A case of `reads` reads, each with photos of `photo_bytes`, every other
/// entry of the node's log not part of the case.
pub fn sample_case(reads: usize, photo_bytes: usize) -> Result<SampleCase, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let deployment = Deployment::new()?;
    let name = DeviceId::new("pole-1").map_err(|x| e(&x))?;
    let (issued, key) = deployment
        .authority
        .issue_device(&name, DeviceKind::Pole, 30)
        .map_err(|x| e(&x))?;
    let export_key: HubKey<ExportSigning> = deployment.key("hub")?;
    let log_key: HubKey<LogSigning> = deployment.key("hub")?;
    let first = |pem: &str| -> Result<Vec<u8>, String> {
        pem_certificates(pem.as_bytes())
            .map_err(|x| e(&x))?
            .into_iter()
            .next()
            .ok_or_else(|| "no certificate".to_owned())
    };
    let ca_der = first(&deployment.ca_pem)?;
    let export_der = export_key.cert_der().to_vec();
    let log_der = log_key.cert_der().to_vec();
    let node_der = first(&issued.cert_pem)?;
    let mut log = LogWriter::new(key, name);
    let mut entries = Vec::new();
    let mut photos = Vec::new();
    let t0 = 1_780_000_000_000u64;
    for i in 0..reads * 2 {
        let case = i % 2 == 0;
        let plate = if case {
            "7ABC123".to_owned()
        } else {
            format!("OTHER{i}")
        };
        let (crop, overview) = (
            photo(photo_bytes / 8, i as u64),
            photo(photo_bytes, !(i as u64)),
        );
        let content = ReadContent {
            location: Location::Site {
                site_id: "main-st-north".into(),
            },
            camera: "cam0".into(),
            plate: plate.clone(),
            confidence: 9_500,
            char_confidence: vec![9_000; plate.len()],
            issuer: crate::types::Issuer::Region("United States".into()),
            detector_model: "yolo-v9-t-416".into(),
            ocr_model: "cct-xs-v2".into(),
            crop_hash: crate::crypto::sha256(&crop),
            overview_hash: crate::crypto::sha256(&overview),
        };
        let entry = log
            .append_read(content, UnixMillis(t0 + i as u64 * 1000), TimeSource::Gps)
            .map_err(|x| e(&x))?;
        entries.push(entry);
        photos.push(case.then_some((crop, overview)));
    }
    let checkpoint = log.checkpoint(UnixMillis(t0 + reads as u64 * 2000));
    let (log_secret, _) = log_key.into_log_key();
    let mut hub_log = LogWriter::new(log_secret, DeviceId::new("hub").map_err(|x| e(&x))?);
    let access = hub_log
        .append_access(
            AccessRecord {
                user: "sgt-lee".into(),
                agency: "CA0010000".into(),
                action: AccessAction::Export,
                purpose: Some("homicide".into()),
                case: Some("24-0117".into()),
                query: "export case=24-0117 to=CA0020000".into(),
                results: u32::try_from(reads).unwrap_or(u32::MAX),
                outcome: AccessOutcome::Allowed,
                source: "127.0.0.1".into(),
            },
            UnixMillis(t0 + reads as u64 * 3000),
            TimeSource::Ntp,
        )
        .map_err(|x| e(&x))?;
    let hold = Hold {
        id: "hold-1".into(),
        case: "24-0117".into(),
        reason: "homicide <investigation> & \"evidence\"".into(),
        placed_by: "sgt-lee".into(),
        agency: "CA0010000".into(),
        placed_at: UnixMillis(t0),
        placed_on: "hub".into(),
        scope: HoldScope {
            plates: vec!["7ABC123".into()],
            ..HoldScope::default()
        },
        released: None,
    };
    let info = ExportInfo {
        case: "24-0117".into(),
        recipient_ori: "CA0020000".into(),
        recipient_name: "County District Attorney".into(),
        purpose: Some("homicide".into()),
        exported_by: "sgt-lee".into(),
        agency: "CA0010000".into(),
        created_at: UnixMillis(t0 + reads as u64 * 3000),
    };
    Ok(SampleCase {
        ca_pem: deployment.ca_pem.clone(),
        ca_der,
        export_der,
        log_der,
        export_key,
        deployment,
        node_der,
        entries,
        photos,
        checkpoint,
        access,
        hold,
        info,
    })
}

impl SampleCase {
    /// Write the case's evidence bundle into memory.
    pub fn write(&self) -> Result<(Vec<u8>, EvidenceReport), EvidenceError> {
        let certs = HubCertificates {
            export: &self.export_der,
            log: &self.log_der,
        };
        self.write_signed(certs, &self.export_key)
    }

    /// [`Self::write`] with the given hub certificates, the manifest signed
    /// by `export_key` (a test's wrong key).
    pub fn write_signed(
        &self,
        certs: HubCertificates<'_>,
        export_key: &HubKey<ExportSigning>,
    ) -> Result<(Vec<u8>, EvidenceReport), EvidenceError> {
        let mut w = EvidenceWriter::new(
            Vec::new(),
            std::io::Cursor::new(Vec::new()),
            self.info.clone(),
            &self.ca_der,
            certs,
        )?;
        w.hold(&self.hold)?;
        w.node(std::slice::from_ref(&self.node_der), &self.checkpoint)?;
        for (e, p) in self.entries.iter().zip(&self.photos) {
            match p {
                Some((crop, overview)) => w.read(CaseRead {
                    entry: e,
                    crop,
                    overview,
                })?,
                None => w.header(e)?,
            }
        }
        w.access(&self.access)?;
        w.finish(export_key, self.info.created_at)
    }
}
