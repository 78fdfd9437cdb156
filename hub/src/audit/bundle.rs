//! The log bundle an audit gets (`GET /api/v1/audit/bundle`): every node
//! log the hub holds and the hub's own log, as one `ALPR-LOG-BUNDLE2`
//! ([`alpr_shared::log::bundle`]) that the hub builds from its store and
//! signs. The hub signs no manifest a client sends: a bundle is hub-signed
//! only when the hub wrote every record of it, so one that lacks a node, a
//! tail or a checkpoint cannot be passed off as hub-signed and complete.
//!
//! The bundle is written as it is read, one node and one page at a time:
//! memory does not grow with the logs.
//!
//! # One snapshot under a running hub
//!
//! The hub keeps ingesting and retention keeps purging while a bundle is
//! written, so what is read, and in which order, makes it consistent:
//!
//! - per node, its latest checkpoint, then its size, then its
//!   certificates: a checkpoint is stored with the entries it covers and
//!   the log only grows, so every entry below the size, and every
//!   certificate that signed them, is there; entries at or past the size
//!   are left out;
//! - the hub's own log last, after every node: a purge commits its
//!   [`alpr_shared::log::EntryKind::NodePurge`] record with the content it
//!   removes ([`crate::access::AccessLog::purge`]), so a read whose content
//!   a node's pages no longer show is covered by a record read after them.
//!   (Read first, as the audit once did, a purge in between left reads
//!   purged without a record: NOT AUTHENTIC.)

use std::io::Write;

use alpr_shared::log::bundle::{BundleWriter, Manifest, SignedManifest};
use alpr_shared::log::SignedEntry;
use alpr_shared::signer::{ExportSigning, HubKey};
use alpr_shared::types::{DeviceId, UnixMillis};

use crate::keys::HubKeys;
use crate::store::{HubStorage, StoreError};

/// Entries read from the store at a time.
const PAGE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the bundle: {0}")]
    Write(#[from] std::io::Error),
}

/// What signs a log bundle: the hub's export key (its manifest, under
/// the certificate kind 4 carries), and the certificate of its log key
/// (under which the hub's own log is written).
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    export_key: &'a HubKey<ExportSigning>,
    log_cert_der: &'a [u8],
}

impl<'a> Signer<'a> {
    /// The hub's signer of log bundles: the one place that says which of
    /// its keys signs them.
    pub fn of(keys: &'a HubKeys) -> Self {
        Signer::new(&keys.export, &keys.log_cert.der)
    }

    /// A signer from an export key and a log key's certificate (tests,
    /// benches).
    pub fn new(export_key: &'a HubKey<ExportSigning>, log_cert_der: &'a [u8]) -> Self {
        Signer {
            export_key,
            log_cert_der,
        }
    }

    fn sign(&self, manifest: Manifest) -> SignedManifest {
        manifest.sign(self.export_key)
    }
}

/// What a bundle holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub nodes: u64,
    pub entries: u64,
    /// Entries of the hub's own log.
    pub hub_entries: u64,
}

/// Write the bundle of every node log `storage` holds and of the hub's
/// own log to `out`, signed by `signer`; see the module's notes on order.
pub fn write<W: Write>(
    storage: &dyn HubStorage,
    signer: Signer<'_>,
    out: W,
) -> Result<(W, Written), BundleError> {
    let mut w = BundleWriter::new(out)?;
    let mut written = Written::default();
    w.hub_certificate(signer.export_key.cert_der())?;
    for r in storage.revocations()? {
        w.revocation(&r)?;
    }
    for (device, _) in storage.nodes()? {
        if let Some(n) = node(storage, &mut w, &device)? {
            written.nodes += 1;
            written.entries += n;
        }
    }
    // Last: see "One snapshot under a running hub".
    written.hub_entries = hub_log(storage, &mut w, signer.log_cert_der)?;
    let signed = signer.sign(w.manifest(UnixMillis::now()));
    Ok((w.finish(&signed)?, written))
}

/// One node's snapshot: its certificates, latest checkpoint and entries
/// below its size; how many entries, or `None` for a node that holds no
/// log (only ever refused).
fn node<W: Write>(
    storage: &dyn HubStorage,
    w: &mut BundleWriter<W>,
    device: &DeviceId,
) -> Result<Option<u64>, BundleError> {
    let checkpoint = storage.checkpoint(device)?;
    let Some(record) = storage.node(device)? else {
        return Ok(None);
    };
    let size = record.next_seq;
    // The certificates that vouch for entries; a hub that kept only the
    // last one serves that.
    let mut certificates: Vec<Vec<u8>> = storage
        .certificates(device)?
        .into_iter()
        .filter(|c| c.effective_from.is_some())
        .map(|c| c.der)
        .collect();
    if certificates.is_empty() {
        certificates.extend(storage.certificate(device)?);
    }
    if certificates.is_empty() && size == 0 {
        return Ok(None);
    }
    for der in &certificates {
        w.certificate(der)?;
    }
    if let Some(c) = &checkpoint {
        w.checkpoint(c)?;
    }
    entries(w, size, |from, limit| storage.entries(device, from, limit)).map(Some)
}

/// The hub's own log, under its log key's certificate, up to its size now.
fn hub_log<W: Write>(
    storage: &dyn HubStorage,
    w: &mut BundleWriter<W>,
    log_cert_der: &[u8],
) -> Result<u64, BundleError> {
    let (size, _) = storage.hub_access_head()?;
    if size == 0 {
        return Ok(0);
    }
    w.certificate(log_cert_der)?;
    entries(w, size, |from, limit| {
        storage.hub_access_entries(from, limit)
    })
}

/// Write a log's entries below `size`, page by page. A signed loss leaves
/// a hole in the sequence numbers: each page starts after the last entry
/// written, not after a count.
fn entries<W: Write>(
    w: &mut BundleWriter<W>,
    size: u64,
    mut page: impl FnMut(u64, usize) -> Result<Vec<Vec<u8>>, StoreError>,
) -> Result<u64, BundleError> {
    let mut written = 0u64;
    let mut from = 0u64;
    while from < size {
        let limit = usize::try_from(size - from).unwrap_or(PAGE).min(PAGE);
        let got = page(from, limit)?;
        if got.is_empty() {
            break;
        }
        let seq = |b: &Vec<u8>| SignedEntry::decode(b).map(|e| e.seq()).ok();
        for bytes in &got {
            // Undecodable bytes are written as stored: the verifier names
            // them.
            if seq(bytes).is_some_and(|s| s >= size) {
                return Ok(written);
            }
            w.entry_bytes(bytes)?;
            written += 1;
        }
        let next = got
            .last()
            .and_then(seq)
            .map_or(from.saturating_add(got.len() as u64), |s| {
                s.saturating_add(1)
            });
        if next <= from {
            break;
        }
        from = next;
    }
    Ok(written)
}
