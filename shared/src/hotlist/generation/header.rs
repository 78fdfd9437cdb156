//! A generation's signed header (shared by generation files and deltas):
//! where its parts lie, how it is written and signed with the hotlist key,
//! and how a reader checks the certificate it carries before the
//! signature.

use std::ops::Range;

use crate::cert::{KeyPurpose, TrustAnchor};
use crate::crypto::{tag, PublicKey, Signature};
use crate::signer::{HotlistSigning, HubKey};
use crate::types::Hash32;

use super::{
    invalid, u32_at, GenerationError, GenerationInfo, HASH_LEN, MAGIC, MAGIC_V1, MAX_CERT_LEN,
    MAX_INFO_LEN, SIG_LEN,
};

/// The parsed header of a generation file or delta.
pub(crate) struct Header {
    pub info: GenerationInfo,
    pub content_hash: Hash32,
    /// Where the body starts.
    pub body_at: usize,
}

/// Where the parts of a header lie, before anything is checked.
pub(super) struct Layout {
    info_at: usize,
    hash_at: usize,
    /// The certificate's range (format 2; empty in format 1).
    cert: Range<usize>,
    sig_at: usize,
    pub(super) body_at: usize,
}

pub(super) fn layout_header(bytes: &[u8], magic: &[u8; 8]) -> Result<Layout, GenerationError> {
    let info_len = u32_at(bytes, magic.len()).ok_or_else(|| invalid("truncated header"))? as usize;
    if info_len > MAX_INFO_LEN {
        return Err(invalid(format!(
            "info of {info_len} bytes is over the {MAX_INFO_LEN} limit"
        )));
    }
    let info_at = magic.len() + 4;
    let hash_at = info_at + info_len;
    let mut sig_at = hash_at + HASH_LEN;
    let mut cert = sig_at..sig_at;
    if magic == MAGIC {
        let cert_len = u32_at(bytes, sig_at).ok_or_else(|| invalid("truncated header"))? as usize;
        if cert_len > MAX_CERT_LEN {
            return Err(invalid(format!(
                "certificate of {cert_len} bytes is over the {MAX_CERT_LEN} limit"
            )));
        }
        cert = sig_at + 4..sig_at + 4 + cert_len;
        sig_at = cert.end;
    }
    let body_at = sig_at + SIG_LEN;
    if bytes.len() < body_at {
        return Err(invalid("truncated header"));
    }
    Ok(Layout {
        info_at,
        hash_at,
        cert,
        sig_at,
        body_at,
    })
}

pub(super) fn magic_of(bytes: &[u8]) -> Option<&[u8]> {
    bytes.get(..MAGIC.len())
}

/// Check a header's signature under `key` and read it.
pub(super) fn checked_header(
    bytes: &[u8],
    l: &Layout,
    key: &PublicKey,
) -> Result<Header, GenerationError> {
    let mut sig = [0u8; SIG_LEN];
    sig.copy_from_slice(&bytes[l.sig_at..l.body_at]);
    if !key.verify(tag::HOTLIST_SIG, &bytes[..l.sig_at], &Signature(sig)) {
        return Err(GenerationError::BadSignature);
    }
    let info: GenerationInfo = postcard::from_bytes(&bytes[l.info_at..l.hash_at])
        .map_err(|e| invalid(format!("info does not decode: {e}")))?;
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(&bytes[l.hash_at..l.hash_at + HASH_LEN]);
    Ok(Header {
        info,
        content_hash: Hash32(h),
        body_at: l.body_at,
    })
}

/// Parse and check a header at the start of `bytes`: its certificate
/// against `anchor` (for hotlists alone), its signature under that
/// certificate's key, and that the certificate was valid when the
/// generation was issued.
pub(crate) fn read_header(bytes: &[u8], anchor: &TrustAnchor) -> Result<Header, GenerationError> {
    match magic_of(bytes) {
        Some(m) if m == MAGIC => {}
        Some(m) if m == MAGIC_V1 => return Err(GenerationError::Format1),
        _ => return Err(invalid("not a hotlist generation (bad magic)")),
    }
    let l = layout_header(bytes, MAGIC)?;
    let cert = anchor
        .check_signer_der(&bytes[l.cert.clone()], KeyPurpose::Hotlist)
        .map_err(GenerationError::Certificate)?;
    let header = checked_header(bytes, &l, &cert.key)?;
    if !cert.valid_at(header.info.issued_at) {
        return Err(GenerationError::OutsideValidity);
    }
    Ok(header)
}

/// What a generation's signed header alone says ([`super::Generation::signed_header`]:
/// a node shows it to prove which generation it holds), once its
/// certificate and signature are checked as [`read_header`] does. `bytes`
/// must be the header and nothing more.
pub fn verify_header(
    bytes: &[u8],
    anchor: &TrustAnchor,
) -> Result<GenerationInfo, GenerationError> {
    let header = read_header(bytes, anchor)?;
    if header.body_at != bytes.len() {
        return Err(invalid("bytes after the signed header"));
    }
    Ok(header.info)
}

/// The signed header for `info` and a body hashing to `content_hash`.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    info: &GenerationInfo,
    content_hash: &Hash32,
    key: &HubKey<HotlistSigning>,
) -> Result<(), GenerationError> {
    let info_bytes =
        postcard::to_allocvec(info).map_err(|e| invalid(format!("info does not encode: {e}")))?;
    if info_bytes.len() > MAX_INFO_LEN {
        return Err(invalid(format!(
            "info of {} bytes is over the {MAX_INFO_LEN} limit (skip list too long?)",
            info_bytes.len()
        )));
    }
    let cert = key.cert_der();
    if cert.len() > MAX_CERT_LEN {
        return Err(invalid(
            "the hotlist key's certificate is over the size limit",
        ));
    }
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(info_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&info_bytes);
    out.extend_from_slice(&content_hash.0);
    out.extend_from_slice(&(cert.len() as u32).to_le_bytes());
    out.extend_from_slice(cert);
    let sig = key.sign(tag::HOTLIST_SIG, &out[start..]);
    out.extend_from_slice(&sig.0);
    Ok(())
}
