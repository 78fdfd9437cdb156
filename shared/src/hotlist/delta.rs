//! The change from one generation of a list to the next, small enough to
//! push to every edge.
//!
//! ```text
//! "ALPRHDL1" | deflate(
//!     from: source (varint len + UTF-8) | number varint | content hash (32)
//!     the new generation's signed header (varint len + bytes)
//!     removed: count varint, then old record indices as ascending gaps
//!     added: count varint, then new record indices as ascending gaps
//!     the added records column by column: plates (10 bytes each),
//!     states (2), categories (1), then each of the twelve extra fields
//!     (varint len + bytes) for every added record in turn )
//! ```
//! A changed entry is a removal and an addition. The new generation is
//! every old record not removed, in order, with the added records placed at
//! their indices: a linear merge without comparisons. The result must hash
//! to the content hash the hub signed, so a wrong or forged delta is
//! refused.

use std::cmp::Ordering;
use std::io::{Read, Write};

use crate::crypto::{tag, tagged_hash, PublicKey};
use crate::types::Hash32;

use super::generation::{
    get_varint, put_varint, read_header, record_key, write_body, Generation, GenerationError,
    EXTRA_FIELDS, MAX_FIELD_BYTES, MAX_GENERATION_BYTES, MAX_INFO_LEN, MAX_ROWS, RECORD_LEN,
};
use super::MAX_PLATE_LEN;

/// First bytes of every delta (format version 1).
pub const DELTA_MAGIC: &[u8; 8] = b"ALPRHDL1";
/// Largest delta once decompressed.
pub const MAX_DELTA_RAW: usize = MAX_GENERATION_BYTES;

fn invalid(msg: impl Into<String>) -> GenerationError {
    GenerationError::Invalid(format!("delta: {}", msg.into()))
}

/// Order of record `i` of `a` against record `j` of `b` (the index order).
fn cmp_records(a: &Generation, i: usize, b: &Generation, j: usize) -> Ordering {
    let (ra, rb) = (record_head(a, i), record_head(b, j));
    let (ea, eb) = (a.extra(i), b.extra(j));
    if ra == rb && ea == eb {
        return Ordering::Equal;
    }
    let ka = record_key(&ra[..MAX_PLATE_LEN]);
    let kb = record_key(&rb[..MAX_PLATE_LEN]);
    (ka, ra, ea).cmp(&(kb, rb, eb))
}

fn record_head(g: &Generation, i: usize) -> &[u8] {
    let at = i * RECORD_LEN;
    g.records().get(at..at + 14).unwrap_or(&[])
}

/// The bytes that take an edge holding `old` to `new` (compressed).
pub fn diff(old: &Generation, new: &Generation) -> Vec<u8> {
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0usize, 0usize);
    while i < old.len() || j < new.len() {
        let ord = if i == old.len() {
            Ordering::Greater
        } else if j == new.len() {
            Ordering::Less
        } else {
            cmp_records(old, i, new, j)
        };
        match ord {
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                removed.push(i);
                i += 1;
            }
            Ordering::Greater => {
                added.push(j);
                j += 1;
            }
        }
    }

    let mut raw = Vec::with_capacity(64 + added.len() * 96 + removed.len() * 3);
    let src = old.info().source.as_bytes();
    put_varint(&mut raw, src.len() as u64);
    raw.extend_from_slice(src);
    put_varint(&mut raw, old.info().number);
    raw.extend_from_slice(&old.content_hash().0);
    let header = new_header(new);
    put_varint(&mut raw, header.len() as u64);
    raw.extend_from_slice(header);
    for list in [&removed, &added] {
        put_varint(&mut raw, list.len() as u64);
        let mut next = 0usize;
        for &k in list.iter() {
            put_varint(&mut raw, (k - next) as u64);
            next = k + 1;
        }
    }
    for &k in &added {
        raw.extend_from_slice(&record_head(new, k)[..MAX_PLATE_LEN]);
    }
    for &k in &added {
        raw.extend_from_slice(&record_head(new, k)[10..12]);
    }
    for &k in &added {
        raw.push(record_head(new, k)[12]);
    }
    let fields: Vec<Vec<&[u8]>> = added.iter().map(|&k| split_extra(new.extra(k))).collect();
    for f in 0..EXTRA_FIELDS.len() {
        for entry in &fields {
            let v = entry.get(f).copied().unwrap_or(&[]);
            put_varint(&mut raw, v.len() as u64);
            raw.extend_from_slice(v);
        }
    }

    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    out.extend_from_slice(DELTA_MAGIC);
    let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::best());
    // Writing to a Vec cannot fail.
    enc.write_all(&raw).expect("deflate into a Vec");
    enc.finish().expect("deflate into a Vec")
}

/// The signed header of a generation (everything before its body).
fn new_header(g: &Generation) -> &[u8] {
    &g.bytes()[..g.header_len()]
}

/// An extra's twelve fields (checked well formed by `open`).
fn split_extra(extra: &[u8]) -> Vec<&[u8]> {
    let mut at = 0usize;
    (0..EXTRA_FIELDS.len())
        .map(|_| {
            let len = get_varint(extra, &mut at).unwrap_or(0) as usize;
            let v = extra.get(at..at + len).unwrap_or(&[]);
            at += len;
            v
        })
        .collect()
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self, what: &str) -> Result<u64, GenerationError> {
        get_varint(self.buf, &mut self.at).ok_or_else(|| invalid(format!("truncated {what}")))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], GenerationError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| invalid(format!("truncated {what}")))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// Ascending indices given as gaps, each below `limit`.
    fn indices(&mut self, limit: usize, what: &str) -> Result<Vec<usize>, GenerationError> {
        let count = self.varint(what)?;
        if count > limit as u64 {
            return Err(invalid(format!("{count} {what} of {limit} records")));
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut next = 0u64;
        for _ in 0..count {
            let k = next
                .checked_add(self.varint(what)?)
                .filter(|&k| k < limit as u64)
                .ok_or_else(|| invalid(format!("{what} index out of range")))?;
            out.push(k as usize);
            next = k + 1;
        }
        Ok(out)
    }
}

/// Apply a delta to the generation it was made from; the result must
/// verify under the hub's key exactly as the new generation does.
pub fn apply(
    old: &Generation,
    delta: &[u8],
    hub: &PublicKey,
) -> Result<Generation, GenerationError> {
    if delta.len() < DELTA_MAGIC.len() || &delta[..DELTA_MAGIC.len()] != DELTA_MAGIC {
        return Err(invalid("not a hotlist delta (bad magic)"));
    }
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(&delta[DELTA_MAGIC.len()..])
        .take(MAX_DELTA_RAW as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| invalid(format!("does not decompress: {e}")))?;
    if raw.len() > MAX_DELTA_RAW {
        return Err(invalid(format!("over {MAX_DELTA_RAW} bytes decompressed")));
    }
    let mut r = Reader { buf: &raw, at: 0 };

    let src_len = r.varint("source")?;
    if src_len > MAX_INFO_LEN as u64 {
        return Err(invalid("source name too long"));
    }
    let source = String::from_utf8_lossy(r.bytes(src_len as usize, "source")?).into_owned();
    let number = r.varint("number")?;
    let mut h = [0u8; 32];
    h.copy_from_slice(r.bytes(32, "hash")?);
    let (held, held_no) = (&old.info().source, old.info().number);
    if source != *held || number != held_no || Hash32(h) != *old.content_hash() {
        return Err(invalid(format!(
            "made from generation {number} of {source:?}, but this node holds generation \
             {held_no} of {held:?}: it needs the whole generation"
        )));
    }

    let header_len = r.varint("header")?;
    if header_len > (MAX_INFO_LEN + 256) as u64 {
        return Err(invalid("header too long"));
    }
    let header_bytes = r.bytes(header_len as usize, "header")?;
    // The header must be the whole of what read_header reads: append a
    // body-less generation and check it parsed to exactly its end.
    let header = read_header(header_bytes, hub)?;
    if header.body_at != header_bytes.len() {
        return Err(invalid("header has trailing bytes"));
    }
    if header.info.source != *held {
        return Err(invalid(format!(
            "turns {held:?} into a generation of {:?}",
            header.info.source
        )));
    }
    let new_rows = usize::try_from(header.info.rows)
        .ok()
        .filter(|&n| n <= MAX_ROWS)
        .ok_or_else(|| invalid("too many rows"))?;

    let removed = r.indices(old.len(), "removed")?;
    let added = r.indices(new_rows, "added")?;
    if old.len() - removed.len() + added.len() != new_rows {
        return Err(invalid(format!(
            "{} - {} + {} records is not the {new_rows} the header says",
            old.len(),
            removed.len(),
            added.len()
        )));
    }
    let n_add = added.len();
    let plates = r.bytes(n_add * MAX_PLATE_LEN, "plates")?;
    let states = r.bytes(n_add * 2, "states")?;
    let cats = r.bytes(n_add, "categories")?;
    let mut fields: Vec<Vec<&[u8]>> = Vec::with_capacity(EXTRA_FIELDS.len());
    for name in EXTRA_FIELDS {
        let mut col = Vec::with_capacity(n_add);
        for _ in 0..n_add {
            let len = r.varint(name)?;
            if len > MAX_FIELD_BYTES as u64 {
                return Err(invalid(format!("{name} too long")));
            }
            col.push(r.bytes(len as usize, name)?);
        }
        fields.push(col);
    }
    if r.at != raw.len() {
        return Err(invalid("trailing bytes"));
    }

    // The linear merge.
    let mut records = Vec::with_capacity(new_rows * RECORD_LEN);
    let mut blob = Vec::with_capacity(old.blob().len() + n_add * 96);
    let old_records = old.records();
    let (mut oi, mut ri, mut ai) = (0usize, 0usize, 0usize);
    let mut extra = Vec::with_capacity(256);
    for p in 0..new_rows {
        let off = blob.len();
        if added.get(ai) == Some(&p) {
            records.extend_from_slice(&plates[ai * MAX_PLATE_LEN..(ai + 1) * MAX_PLATE_LEN]);
            records.extend_from_slice(&states[ai * 2..ai * 2 + 2]);
            records.push(cats[ai]);
            records.push(0);
            extra.clear();
            for col in &fields {
                put_varint(&mut extra, col[ai].len() as u64);
                extra.extend_from_slice(col[ai]);
            }
            if extra.len() > usize::from(u16::MAX) {
                return Err(invalid("added record too long"));
            }
            blob.extend_from_slice(&extra);
            ai += 1;
        } else {
            while removed.get(ri) == Some(&oi) {
                ri += 1;
                oi += 1;
            }
            // Counts were checked above: an old record remains for p.
            let at = oi * RECORD_LEN;
            let rec = old_records
                .get(at..at + RECORD_LEN)
                .ok_or_else(|| invalid("ran out of old records"))?;
            records.extend_from_slice(&rec[..14]);
            blob.extend_from_slice(old.extra(oi));
            oi += 1;
        }
        let len = blob.len() - off;
        records.extend_from_slice(&(off as u32).to_le_bytes());
        records.extend_from_slice(&(len as u16).to_le_bytes());
    }
    if blob.len() > MAX_GENERATION_BYTES {
        return Err(invalid("result over the generation size limit"));
    }

    let mut bytes = Vec::with_capacity(header_bytes.len() + records.len() + blob.len() + (4 << 20));
    bytes.extend_from_slice(header_bytes);
    write_body(&mut bytes, &records, &blob);
    drop((records, blob));
    let hash = tagged_hash(tag::HOTLIST_HASH, &[&bytes[header_bytes.len()..]]);
    if hash != header.content_hash {
        return Err(invalid(
            "the result does not match the hub's signed generation (wrong or forged delta)",
        ));
    }
    Generation::open_inner(bytes, hub, Some(hash))
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
