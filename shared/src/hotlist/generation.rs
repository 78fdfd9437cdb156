//! A signed, immutable generation of a bulk list, laid out so it loads
//! without parsing.
//!
//! ```text
//! header  "ALPRHOT2" | info_len u32 | info (postcard GenerationInfo)
//!         | content hash (32) | cert_len u32 | certificate (DER)
//!         | signature (64) over everything before it
//! body    rows u32 | bucket_bits u32 | blob_len u32
//!         | directory: 2^bucket_bits + 1 × u32 (first record of each bucket)
//!         | records: rows × 20 bytes, sorted (see below)
//!         | blob: each record's other fields, in record order
//! ```
//! All integers little-endian. The content hash is
//! `tagged_hash(HOTLIST_HASH, body)`; the signature is the hub's hotlist
//! key's over `HOTLIST_SIG || header-before-signature`, and the certificate
//! is that key's: a reader checks it against the CA (issued for hotlists
//! alone, valid at the generation's `issued_at`) before the signature.
//! Format 1 (`ALPRHOT1`, the same header without the certificate) was
//! signed with the hub's single key; readers refuse it
//! ([`GenerationError::Format1`]): an edge then counts the list as missing
//! and gets it whole, and the hub signs its stored ones again
//! ([`Generation::resign_format1`]).
//!
//! A record is `plate [10] (zero padded) | state [2] (zeros if none) |
//! category u8 | 0 u8 | extra offset u32 | extra len u16`; its extra (in
//! the blob) is the twelve other text fields, each a varint length and
//! UTF-8 bytes, in [`EXTRA_FIELDS`] order.
//!
//! Records are sorted by the hash of the OCR-folded plate ([`key_hash`]),
//! then the folded plate, then the record's bytes and extra: every plate an
//! OCR engine could confuse with another sits in one run of one bucket, so
//! an exact or OCR-equivalent lookup is one probe of one bucket. The order
//! is a function of the entries alone (duplicates removed), so the same
//! entries and info always give the same bytes: an edge that rebuilds a
//! generation from a delta gets the hub's bytes and signature back.

use std::fmt;
use std::ops::Range;

use crate::cert::{CertError, TrustAnchor};
use crate::crypto::{tag, tagged_hash, PublicKey};
use crate::search::fold_char;
use crate::signer::{HotlistSigning, HubKey};
use crate::types::{Hash32, UnixMillis};

use super::{Category, HotEntry, ListSettings, MAX_ENTRY_TEXT, MAX_PLATE_LEN};

mod header;
pub use header::verify_header;
use header::{checked_header, layout_header, magic_of, Header};
pub(crate) use header::{read_header, write_header};

/// What the hub says about a generation (signed with it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerationInfo {
    /// The list's name (`ncic`, `ca-svs`, …).
    pub source: String,
    /// 1, 2, 3, … per source.
    pub number: u64,
    pub issued_at: UnixMillis,
    /// SHA-256 of the file it was imported from.
    pub source_sha256: Hash32,
    /// Rows the file held and rows in the generation.
    pub source_rows: u64,
    pub rows: u64,
    /// Rows per category.
    pub categories: Vec<(Category, u64)>,
    pub settings: ListSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("generation: {0}")]
    Invalid(String),
    #[error("the generation's signature is not the hub's")]
    BadSignature,
    #[error("the generation's certificate is refused: {0}")]
    Certificate(CertError),
    #[error("the generation was issued outside its certificate's validity")]
    OutsideValidity,
    #[error(
        "a format-1 generation, signed with the hub's single key before it had a key per \
         purpose: it no longer verifies; the hub sends the list again"
    )]
    Format1,
}

/// First bytes of every generation file (format version 2).
pub const MAGIC: &[u8; 8] = b"ALPRHOT2";
/// First bytes of a format-1 generation (no certificate).
pub const MAGIC_V1: &[u8; 8] = b"ALPRHOT1";
/// Largest certificate in a header.
pub const MAX_CERT_LEN: usize = 8 * 1024;
/// Most rows a generation may hold.
pub const MAX_ROWS: usize = 4_000_000;
/// Largest postcard `GenerationInfo` (skip lists included).
pub const MAX_INFO_LEN: usize = 64 * 1024;
/// Largest generation file.
pub const MAX_GENERATION_BYTES: usize = 1 << 30;
/// Bytes of one fixed-width record.
pub const RECORD_LEN: usize = 20;
/// Most bytes of one text field (MAX_ENTRY_TEXT characters of UTF-8).
pub const MAX_FIELD_BYTES: usize = 4 * MAX_ENTRY_TEXT;
/// The fields kept in the blob, in their order there.
pub const EXTRA_FIELDS: [&str; 12] = [
    "plate_type",
    "plate_year",
    "vehicle_year",
    "make",
    "model",
    "colour",
    "vin",
    "nic",
    "ori",
    "oca",
    "entered",
    "note",
];

const SIG_LEN: usize = 64;
const HASH_LEN: usize = 32;
const BODY_FIXED: usize = 12;
/// Largest signed header (magic, info length, info, content hash,
/// signature): what [`Generation::signed_header`] gives.
pub const MAX_HEADER_BYTES: usize = MAGIC.len() + 4 + MAX_INFO_LEN + HASH_LEN + SIG_LEN;

fn invalid(msg: impl Into<String>) -> GenerationError {
    GenerationError::Invalid(msg.into())
}

/// The hash that places a folded plate in the bucket directory: FNV-1a 64
/// then the splitmix64 finaliser. Part of the format: never change it.
pub fn key_hash(folded: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in folded {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Buckets (as a power of two) for `rows` records: about two per bucket.
pub fn bucket_bits(rows: usize) -> u32 {
    let rows = rows.max(2);
    let ceil_log2 = usize::BITS - (rows - 1).leading_zeros();
    ceil_log2.saturating_sub(1).clamp(4, 24)
}

pub(crate) fn bucket_of(hash: u64, bits: u32) -> usize {
    // bits ≤ 24: the shifted value fits in usize.
    (hash >> (64 - bits)) as usize
}

/// A plate folded into `out` (zero padded); `None` if it is too long.
pub fn fold_into(plate: &[u8], out: &mut [u8; MAX_PLATE_LEN]) -> Option<usize> {
    if plate.len() > MAX_PLATE_LEN {
        return None;
    }
    *out = [0; MAX_PLATE_LEN];
    for (o, &b) in out.iter_mut().zip(plate) {
        *o = fold_char(b);
    }
    Some(plate.len())
}

/// Why an entry cannot go in a generation, if it cannot (an importer
/// reports such rows as bad rather than failing the whole list).
pub fn check_entry(e: &HotEntry) -> Result<(), String> {
    let p = e.plate.as_bytes();
    if p.is_empty() || p.len() > MAX_PLATE_LEN {
        return Err(format!(
            "plate {:?} must have 1 to {MAX_PLATE_LEN} characters",
            e.plate
        ));
    }
    if !p
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(format!("plate {:?} must be A-Z and 0-9 only", e.plate));
    }
    let s = e.state.as_bytes();
    if !(s.is_empty() || (s.len() == 2 && s.iter().all(u8::is_ascii_uppercase))) {
        return Err(format!(
            "state {:?} must be two letters A-Z or empty",
            e.state
        ));
    }
    for (name, v) in EXTRA_FIELDS.iter().zip(e.details()) {
        if v.chars().count() > MAX_ENTRY_TEXT {
            return Err(format!("{name} is longer than {MAX_ENTRY_TEXT} characters"));
        }
    }
    Ok(())
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint at `*at`, advancing it; `None` if truncated or over 64 bits.
pub(crate) fn get_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn category_index(c: Category) -> u8 {
    // ALL has 13 items: the position fits in u8.
    Category::ALL.iter().position(|k| *k == c).unwrap_or(0) as u8
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The first 14 bytes of an entry's record (plate, state, category, 0)
/// and its extra.
pub(crate) fn encode_entry(e: &HotEntry) -> ([u8; 14], Vec<u8>) {
    let mut head = [0u8; 14];
    head[..e.plate.len().min(MAX_PLATE_LEN)]
        .copy_from_slice(&e.plate.as_bytes()[..e.plate.len().min(MAX_PLATE_LEN)]);
    if e.state.len() == 2 {
        head[10..12].copy_from_slice(e.state.as_bytes());
    }
    head[12] = category_index(e.category);
    let mut extra = Vec::with_capacity(64);
    for f in e.details() {
        put_varint(&mut extra, f.len() as u64);
        extra.extend_from_slice(f.as_bytes());
    }
    (head, extra)
}

/// The sort key of a record: hash of the folded plate, folded plate.
pub(crate) fn record_key(plate: &[u8]) -> (u64, [u8; MAX_PLATE_LEN]) {
    let mut folded = [0u8; MAX_PLATE_LEN];
    let len = fold_into(plate_of(plate), &mut folded).unwrap_or(0);
    (key_hash(&folded[..len]), folded)
}

/// The plate bytes of a (zero-padded) 10-byte plate field.
fn plate_of(field: &[u8]) -> &[u8] {
    let end = field
        .iter()
        .take(MAX_PLATE_LEN)
        .position(|&b| b == 0)
        .unwrap_or(field.len().min(MAX_PLATE_LEN));
    &field[..end]
}

/// Append the body for `records` (rows × RECORD_LEN, sorted, extra offsets
/// set) and `blob` to `out`.
pub(crate) fn write_body(out: &mut Vec<u8>, records: &[u8], blob: &[u8]) {
    let n = records.len() / RECORD_LEN;
    let bits = bucket_bits(n);
    let buckets = 1usize << bits;
    out.reserve(BODY_FIXED + (buckets + 1) * 4 + records.len() + blob.len());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    let dir_at = out.len();
    out.resize(dir_at + (buckets + 1) * 4, 0);
    fill_directory(&mut out[dir_at..], records, bits);
    out.extend_from_slice(records);
    out.extend_from_slice(blob);
}

/// The directory of `records`: slot `b` (of `dir.len() / 4`) is the first
/// record whose bucket is ≥ b.
pub(crate) fn fill_directory(dir: &mut [u8], records: &[u8], bits: u32) {
    let n = records.len() / RECORD_LEN;
    let mut slots = dir.chunks_exact_mut(4);
    let mut next_bucket = 0usize;
    for (i, rec) in records.chunks_exact(RECORD_LEN).enumerate() {
        let b = bucket_of(record_key(&rec[..MAX_PLATE_LEN]).0, bits);
        while next_bucket <= b {
            if let Some(s) = slots.next() {
                s.copy_from_slice(&(i as u32).to_le_bytes());
            }
            next_bucket += 1;
        }
    }
    for s in slots {
        s.copy_from_slice(&(n as u32).to_le_bytes());
    }
}

/// A generation held in memory, ready to match. Everything is read in
/// place from the one byte buffer `open` checked.
pub struct Generation {
    bytes: Vec<u8>,
    info: GenerationInfo,
    content_hash: Hash32,
    rows: usize,
    bits: u32,
    dir_at: usize,
    rec_at: usize,
    blob_at: usize,
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("source", &self.info.source)
            .field("number", &self.info.number)
            .field("rows", &self.rows)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Generation {
    /// Sort, check and sign `entries` as generation `info` (its `rows` and
    /// `categories` are filled in here). Identical rows are kept once.
    pub fn build(
        mut info: GenerationInfo,
        entries: Vec<HotEntry>,
        key: &HubKey<HotlistSigning>,
    ) -> Result<Generation, GenerationError> {
        if entries.len() > MAX_ROWS {
            return Err(invalid(format!(
                "{} rows is over the {MAX_ROWS} a generation may hold",
                entries.len()
            )));
        }
        let mut items = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            check_entry(e).map_err(|r| invalid(format!("entry {}: {r}", i + 1)))?;
            let (head, extra) = encode_entry(e);
            let (hash, folded) = record_key(&head[..MAX_PLATE_LEN]);
            items.push((hash, folded, head, extra));
        }
        drop(entries);
        items.sort_unstable();
        items.dedup_by(|a, b| a.2 == b.2 && a.3 == b.3);

        let mut counts = [0u64; Category::ALL.len()];
        let mut records = Vec::with_capacity(items.len() * RECORD_LEN);
        let mut blob = Vec::new();
        for (_, _, head, extra) in &items {
            counts[usize::from(head[12])] += 1;
            records.extend_from_slice(head);
            records.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            records.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            blob.extend_from_slice(extra);
        }
        if blob.len() > MAX_GENERATION_BYTES {
            return Err(invalid("the list's text is over the generation size limit"));
        }
        info.rows = items.len() as u64;
        info.categories = Category::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (*c, n))
            .collect();
        drop(items);

        let mut body = Vec::new();
        write_body(&mut body, &records, &blob);
        drop((records, blob));
        let content_hash = tagged_hash(tag::HOTLIST_HASH, &[&body]);
        let mut bytes = Vec::with_capacity(body.len() + 256);
        write_header(&mut bytes, &info, &content_hash, key)?;
        bytes.extend_from_slice(&body);
        drop(body);
        let l = layout_header(&bytes, MAGIC)?;
        let header = checked_header(&bytes, &l, &key.public())?;
        Generation::open_with(bytes, header, Some(content_hash))
    }

    /// Load stored or received bytes, checking the signer's certificate
    /// against `anchor` and its signature ([`read_header`]), the content
    /// hash and every offset.
    pub fn open(bytes: Vec<u8>, anchor: &TrustAnchor) -> Result<Generation, GenerationError> {
        Self::check_size(&bytes)?;
        let header = read_header(&bytes, anchor)?;
        Generation::open_with(bytes, header, None)
    }

    /// A format-1 generation (signed with the hub's single key, `legacy`,
    /// before it had a key per purpose), checked under that key and signed
    /// again, unchanged but for its header, with the hotlist key: how a hub
    /// keeps serving the generations it stored then.
    pub fn resign_format1(
        bytes: &[u8],
        legacy: &PublicKey,
        key: &HubKey<HotlistSigning>,
    ) -> Result<Generation, GenerationError> {
        Self::check_size(bytes)?;
        if magic_of(bytes) != Some(&MAGIC_V1[..]) {
            return Err(invalid("not a format-1 generation"));
        }
        let l = layout_header(bytes, MAGIC_V1)?;
        let old = checked_header(bytes, &l, legacy)?;
        let body = &bytes[l.body_at..];
        if tagged_hash(tag::HOTLIST_HASH, &[body]) != old.content_hash {
            return Err(invalid(
                "the content does not match the signed hash (corrupt or altered)",
            ));
        }
        let mut out = Vec::with_capacity(bytes.len() + key.cert_der().len() + 4);
        write_header(&mut out, &old.info, &old.content_hash, key)?;
        out.extend_from_slice(body);
        let l = layout_header(&out, MAGIC)?;
        let header = checked_header(&out, &l, &key.public())?;
        let g = Generation::layout(out, header)?;
        g.check_records()?;
        Ok(g)
    }

    fn check_size(bytes: &[u8]) -> Result<(), GenerationError> {
        if bytes.len() > MAX_GENERATION_BYTES {
            return Err(invalid(format!(
                "{} bytes is over the {MAX_GENERATION_BYTES} a generation may have",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// `hashed`: the content hash of the body, already computed by the
    /// caller from these very bytes.
    fn open_with(
        bytes: Vec<u8>,
        header: Header,
        hashed: Option<Hash32>,
    ) -> Result<Generation, GenerationError> {
        Self::check_size(&bytes)?;
        let body = &bytes[header.body_at..];
        let actual = match hashed {
            Some(h) => h,
            None => tagged_hash(tag::HOTLIST_HASH, &[body]),
        };
        if actual != header.content_hash {
            return Err(invalid(
                "the content does not match the signed hash (corrupt or altered)",
            ));
        }
        let g = Generation::layout(bytes, header)?;
        g.check_records()?;
        Ok(g)
    }

    fn layout(bytes: Vec<u8>, header: Header) -> Result<Generation, GenerationError> {
        let at = header.body_at;
        let short = || invalid("truncated body");
        let rows = u32_at(&bytes, at).ok_or_else(short)? as usize;
        let bits = u32_at(&bytes, at + 4).ok_or_else(short)?;
        let blob_len = u32_at(&bytes, at + 8).ok_or_else(short)? as usize;
        if rows > MAX_ROWS {
            return Err(invalid(format!("{rows} rows is over the {MAX_ROWS} limit")));
        }
        if rows as u64 != header.info.rows {
            return Err(invalid(format!(
                "{rows} records but the info says {}",
                header.info.rows
            )));
        }
        if bits != bucket_bits(rows) {
            return Err(invalid(format!("{bits} bucket bits for {rows} rows")));
        }
        let dir_at = at + BODY_FIXED;
        let rec_at = dir_at + ((1usize << bits) + 1) * 4;
        let blob_at = rec_at + rows * RECORD_LEN;
        if bytes.len() != blob_at + blob_len {
            return Err(invalid(format!(
                "{} bytes where the layout needs {}",
                bytes.len(),
                blob_at + blob_len
            )));
        }
        Ok(Generation {
            bytes,
            info: header.info,
            content_hash: header.content_hash,
            rows,
            bits,
            dir_at,
            rec_at,
            blob_at,
        })
    }

    /// A generation rebuilt from a held one and a delta whose content hash
    /// matched the hub's signed one. The records carried over were checked
    /// when the held generation was opened, the added ones when the delta
    /// was read, and their offsets were laid out afresh: only the layout
    /// and the directory are left to check.
    pub(crate) fn from_applied(
        bytes: Vec<u8>,
        header: Header,
    ) -> Result<Generation, GenerationError> {
        let g = Generation::layout(bytes, header)?;
        g.check_directory()?;
        Ok(g)
    }

    fn check_directory(&self) -> Result<(), GenerationError> {
        let buckets = 1usize << self.bits;
        let mut prev = 0u32;
        for b in 0..=buckets {
            let v = u32_at(&self.bytes, self.dir_at + b * 4).unwrap_or(u32::MAX);
            if v < prev || v as usize > self.rows || (b == 0 && v != 0) {
                return Err(invalid(format!("directory slot {b} out of order")));
            }
            prev = v;
        }
        if prev as usize != self.rows {
            return Err(invalid("directory does not end at the last record"));
        }
        Ok(())
    }

    /// Every directory slot, record and extra is within bounds and well
    /// formed, so reading them later cannot fail.
    fn check_records(&self) -> Result<(), GenerationError> {
        self.check_directory()?;
        let blob = &self.bytes[self.blob_at..];
        let mut expect_off = 0usize;
        let mut counts = [0u64; Category::ALL.len()];
        for i in 0..self.rows {
            let r = self.record(i);
            let plate = plate_of(&r[..MAX_PLATE_LEN]);
            let padded_ok = r[plate.len()..MAX_PLATE_LEN].iter().all(|&b| b == 0);
            if plate.is_empty()
                || !padded_ok
                || !plate
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(invalid(format!("record {i}: bad plate")));
            }
            let st = &r[10..12];
            if !(st == [0, 0] || st.iter().all(u8::is_ascii_uppercase)) {
                return Err(invalid(format!("record {i}: bad state")));
            }
            let cat = usize::from(r[12]);
            if cat >= Category::ALL.len() || r[13] != 0 {
                return Err(invalid(format!("record {i}: bad category")));
            }
            counts[cat] += 1;
            let off = u32::from_le_bytes([r[14], r[15], r[16], r[17]]) as usize;
            let len = usize::from(u16::from_le_bytes([r[18], r[19]]));
            if off != expect_off || off + len > blob.len() {
                return Err(invalid(format!("record {i}: extra out of place")));
            }
            expect_off = off + len;
            let extra = &blob[off..off + len];
            let mut at = 0usize;
            for _ in 0..EXTRA_FIELDS.len() {
                let l = get_varint(extra, &mut at).unwrap_or(u64::MAX);
                if l > MAX_FIELD_BYTES as u64 || at + l as usize > extra.len() {
                    return Err(invalid(format!("record {i}: bad extra")));
                }
                at += l as usize;
            }
            if at != extra.len() {
                return Err(invalid(format!("record {i}: bad extra")));
            }
        }
        if expect_off != blob.len() {
            return Err(invalid("blob has bytes no record uses"));
        }
        let cats: Vec<(Category, u64)> = Category::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (*c, n))
            .collect();
        if cats != self.info.categories {
            return Err(invalid("category counts differ from the info"));
        }
        Ok(())
    }

    pub fn info(&self) -> &GenerationInfo {
        &self.info
    }

    /// The signed hash of the body (identifies the content).
    pub fn content_hash(&self) -> &Hash32 {
        &self.content_hash
    }

    /// The bytes to store or send.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw record `i` (`i < len()`, checked by callers).
    fn record(&self, i: usize) -> &[u8] {
        let at = self.rec_at + i * RECORD_LEN;
        &self.bytes[at..at + RECORD_LEN]
    }

    /// Directory slot `b`: the first record of bucket `b` (or after).
    pub(crate) fn dir_slot(&self, b: usize) -> u32 {
        u32_at(&self.bytes, self.dir_at + b * 4).unwrap_or(self.rows as u32)
    }

    /// Bytes of the signed header (the body follows).
    pub(crate) fn header_len(&self) -> usize {
        self.dir_at - BODY_FIXED
    }

    /// The signed header alone: the hub's signature over the info and the
    /// content hash, which [`verify_header`] checks without the body.
    pub fn signed_header(&self) -> &[u8] {
        &self.bytes[..self.header_len()]
    }

    /// The records (as bytes) in index order.
    pub(crate) fn records(&self) -> &[u8] {
        &self.bytes[self.rec_at..self.blob_at]
    }

    /// The whole blob.
    pub(crate) fn blob(&self) -> &[u8] {
        &self.bytes[self.blob_at..]
    }

    /// The extra bytes of record `i`.
    pub(crate) fn extra(&self, i: usize) -> &[u8] {
        let r = self.record(i);
        let off = u32::from_le_bytes([r[14], r[15], r[16], r[17]]) as usize;
        let len = usize::from(u16::from_le_bytes([r[18], r[19]]));
        self.blob().get(off..off + len).unwrap_or(&[])
    }

    /// Record `i`'s plate.
    pub fn plate(&self, i: usize) -> &[u8] {
        if i >= self.rows {
            return &[];
        }
        plate_of(&self.record(i)[..MAX_PLATE_LEN])
    }

    /// Record `i`'s state (empty if none).
    pub fn state(&self, i: usize) -> &[u8] {
        if i >= self.rows {
            return &[];
        }
        let s = &self.record(i)[10..12];
        if s == [0, 0] {
            &[]
        } else {
            s
        }
    }

    pub fn category(&self, i: usize) -> Category {
        if i >= self.rows {
            return Category::Other;
        }
        Category::ALL
            .get(usize::from(self.record(i)[12]))
            .copied()
            .unwrap_or(Category::Other)
    }

    /// The entry at `i` in index order (`None` past the end).
    pub fn get(&self, i: usize) -> Option<HotEntry> {
        if i >= self.rows {
            return None;
        }
        let extra = self.extra(i);
        let mut at = 0usize;
        let mut field = || {
            let len = get_varint(extra, &mut at).unwrap_or(0) as usize;
            let s = extra.get(at..at + len).unwrap_or(&[]);
            at += len;
            String::from_utf8_lossy(s).into_owned()
        };
        let mut e = HotEntry {
            plate: String::from_utf8_lossy(self.plate(i)).into_owned(),
            state: String::from_utf8_lossy(self.state(i)).into_owned(),
            category: self.category(i),
            ..HotEntry::default()
        };
        e.plate_type = field();
        e.plate_year = field();
        e.vehicle_year = field();
        e.make = field();
        e.model = field();
        e.colour = field();
        e.vin = field();
        e.nic = field();
        e.ori = field();
        e.oca = field();
        e.entered = field();
        e.note = field();
        Some(e)
    }

    /// The entry at `i` in index order (an empty entry past the end).
    pub fn entry(&self, i: usize) -> HotEntry {
        self.get(i).unwrap_or_default()
    }

    /// The records whose plate folds to `folded` (a plate already passed
    /// through [`fold_char`]): one probe of one bucket.
    pub fn probe(&self, folded: &[u8]) -> Range<usize> {
        if folded.is_empty() || folded.len() > MAX_PLATE_LEN || self.rows == 0 {
            return 0..0;
        }
        let b = bucket_of(key_hash(folded), self.bits);
        let lo = u32_at(&self.bytes, self.dir_at + b * 4).unwrap_or(0) as usize;
        let hi = u32_at(&self.bytes, self.dir_at + (b + 1) * 4).unwrap_or(0) as usize;
        let hi = hi.min(self.rows);
        let same = |i: usize| {
            let p = plate_of(&self.record(i)[..MAX_PLATE_LEN]);
            p.len() == folded.len() && p.iter().zip(folded).all(|(&a, &f)| fold_char(a) == f)
        };
        let mut i = lo;
        while i < hi && !same(i) {
            i += 1;
        }
        let start = i;
        while i < hi && same(i) {
            i += 1;
        }
        start..i
    }

    /// Entries listed for exactly this plate (any state).
    pub fn lookup(&self, plate: &str) -> Vec<HotEntry> {
        let mut folded = [0u8; MAX_PLATE_LEN];
        let Some(len) = fold_into(plate.as_bytes(), &mut folded) else {
            return Vec::new();
        };
        self.probe(&folded[..len])
            .filter(|&i| self.plate(i) == plate.as_bytes())
            .filter_map(|i| self.get(i))
            .collect()
    }
}

#[cfg(test)]
#[path = "generation_tests.rs"]
pub(crate) mod tests;
