//! A log bundle: device certificates, log entries and checkpoints in one
//! file, enough for an auditor to verify offline with the CA certificate.
//!
//! Layout: the 16-byte magic `ALPR-LOG-BUNDLE1`, then records of
//! `kind: u8, len: u32 big-endian, bytes`. Kind 1 is a device certificate
//! (DER), 2 a [`SignedEntry`], 3 a [`SignedCheckpoint`]. Records are read
//! one at a time, so a bundle of any size streams.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::verify::{verify_devices, LogReport, VerifyOptions};
use super::{DecodeError, SignedCheckpoint, SignedEntry, MAX_ENTRY_BYTES};
use crate::cert::{CertError, TrustAnchor};

pub const MAGIC: &[u8; 16] = b"ALPR-LOG-BUNDLE1";
const MAX_CERT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a log bundle (bad magic)")]
    BadMagic,
    #[error("record {index}: unknown kind {kind}")]
    UnknownKind { index: u64, kind: u8 },
    #[error("record {index}: {len} bytes is over the limit of {max}")]
    TooLarge { index: u64, len: usize, max: usize },
    #[error("record {index}: {source}")]
    Record { index: u64, source: DecodeError },
    #[error("truncated bundle: {0}")]
    Truncated(io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The contents of a bundle.
#[derive(Debug, Default, Clone)]
pub struct Bundle {
    pub certificates: Vec<Vec<u8>>,
    pub entries: Vec<SignedEntry>,
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// Writes a bundle record by record.
pub struct BundleWriter<W: Write> {
    out: W,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(BundleWriter { out })
    }

    fn record(&mut self, kind: u8, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("record too large"))?;
        self.out.write_all(&[kind])?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(bytes)
    }

    pub fn certificate(&mut self, der: &[u8]) -> io::Result<()> {
        self.record(1, der)
    }

    pub fn entry(&mut self, e: &SignedEntry) -> io::Result<()> {
        self.record(2, &e.encode())
    }

    pub fn checkpoint(&mut self, c: &SignedCheckpoint) -> io::Result<()> {
        self.record(3, &c.encode())
    }

    /// An entry as stored (its canonical bytes), written as is: evidence
    /// carries exactly what the store held; readers decode and check it.
    pub fn entry_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(2, bytes)
    }

    /// A checkpoint as stored, written as is.
    pub fn checkpoint_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(3, bytes)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl Bundle {
    /// Read a whole bundle, refusing oversized or malformed records.
    pub fn read(mut input: impl Read) -> Result<Bundle, BundleError> {
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .map_err(|_| BundleError::BadMagic)?;
        if &magic != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let mut b = Bundle::default();
        let mut index = 0u64;
        loop {
            let mut kind = [0u8; 1];
            if input.read(&mut kind)? == 0 {
                break;
            }
            let mut len = [0u8; 4];
            input.read_exact(&mut len).map_err(BundleError::Truncated)?;
            let len = u32::from_be_bytes(len) as usize;
            let max = match kind[0] {
                1 => MAX_CERT_BYTES,
                2 => MAX_ENTRY_BYTES,
                3 => 512,
                k => return Err(BundleError::UnknownKind { index, kind: k }),
            };
            if len > max {
                return Err(BundleError::TooLarge { index, len, max });
            }
            let mut buf = vec![0u8; len];
            input.read_exact(&mut buf).map_err(BundleError::Truncated)?;
            let rec = |source| BundleError::Record { index, source };
            match kind[0] {
                1 => b.certificates.push(buf),
                2 => b.entries.push(SignedEntry::decode(&buf).map_err(rec)?),
                _ => b
                    .checkpoints
                    .push(SignedCheckpoint::decode(&buf).map_err(rec)?),
            }
            index += 1;
        }
        Ok(b)
    }

    /// Verify every device log in the bundle against the CA. Each device's
    /// certificate must be in the bundle and issued by `anchor`.
    pub fn verify(&self, anchor: &TrustAnchor, opts: VerifyOptions) -> Vec<LogReport> {
        let mut certs = BTreeMap::new();
        let mut refused: Vec<CertError> = Vec::new();
        for der in &self.certificates {
            match anchor.check_device_der(der) {
                Ok(c) => {
                    certs.insert(c.name.clone(), Ok(c));
                }
                Err(e) => refused.push(e),
            }
        }
        // Entries whose device has no accepted certificate are reported
        // with the reason the certificate(s) in the bundle were refused.
        let reason = refused.first().cloned().unwrap_or(CertError::NotPem);
        for e in &self.entries {
            certs
                .entry(e.header.device.clone())
                .or_insert_with(|| Err(reason.clone()));
        }
        verify_devices(&certs, &self.entries, &self.checkpoints, opts)
    }
}
