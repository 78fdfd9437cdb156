//! The change from one generation of a list to the next, small enough to
//! push to every edge.
//!
//! ```text
//! "ALPRHDL1" | deflate(
//!     from: source (varint len + UTF-8) | number varint | content hash (32)
//!     the new generation's signed header (varint len + bytes)
//!     removed: count varint, then the gaps between the ascending old
//!         record indices (four byte planes: all low bytes, then …)
//!     added: the same for the new record indices
//!     the added records column by column: plates and states as string
//!     columns, categories (1 byte each), then the twelve extra fields as
//!     string columns )
//! ```
//! A string column is coded `0` (transposed: lengths as two byte planes,
//! then every value's first byte, every second byte, …) or `1` (a
//! dictionary of its sorted distinct values, transposed, then each row's
//! index as two byte planes), whichever suits it: each run of bytes then
//! holds one kind of symbol, which deflate codes near its entropy (5,000
//! changed rows of a 1M-row list: about 75 KB).
//!
//! A changed entry is a removal and an addition. The new generation is
//! every old record not removed, in order, with the added records placed at
//! their indices: a linear merge without comparisons. The result must hash
//! to the content hash the hub signed, so a wrong or forged delta is
//! refused.

use std::cmp::Ordering;
use std::io::{Read, Write};

use crate::cert::TrustAnchor;
use crate::crypto::{tag, tagged_hash};
use crate::types::Hash32;

use super::generation::{
    bucket_bits, bucket_of, fill_directory, get_varint, put_varint, read_header, record_key,
    Generation, GenerationError, EXTRA_FIELDS, MAX_CERT_LEN, MAX_FIELD_BYTES, MAX_GENERATION_BYTES,
    MAX_INFO_LEN, MAX_ROWS, RECORD_LEN,
};
use super::{Category, MAX_PLATE_LEN};

/// First bytes of every delta (format version 1).
pub const DELTA_MAGIC: &[u8; 8] = b"ALPRHDL1";
/// Largest delta once decompressed (and most bytes its records may
/// expand to).
pub const MAX_DELTA_RAW: usize = 256 << 20;

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
        let gaps: Vec<u32> = list
            .iter()
            .map(|&k| {
                // Indices are below MAX_ROWS: gaps fit in u32.
                let gap = (k - next) as u32;
                next = k + 1;
                gap
            })
            .collect();
        put_u32_planes(&mut raw, &gaps);
    }
    let plates: Vec<&[u8]> = added.iter().map(|&k| new.plate(k)).collect();
    put_str_columns(&mut raw, &plates);
    let states: Vec<&[u8]> = added
        .iter()
        .map(|&k| &record_head(new, k)[10..12])
        .collect();
    put_str_columns(&mut raw, &states);
    for &k in &added {
        raw.push(record_head(new, k)[12]);
    }
    let fields: Vec<Vec<&[u8]>> = added.iter().map(|&k| split_extra(new.extra(k))).collect();
    for f in 0..EXTRA_FIELDS.len() {
        let column: Vec<&[u8]> = fields
            .iter()
            .map(|e| e.get(f).copied().unwrap_or(&[]))
            .collect();
        put_str_columns(&mut raw, &column);
    }

    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    out.extend_from_slice(DELTA_MAGIC);
    let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::best());
    // Writing to a Vec cannot fail.
    enc.write_all(&raw).expect("deflate into a Vec");
    enc.finish().expect("deflate into a Vec")
}

fn category_slot(c: Category) -> usize {
    Category::ALL.iter().position(|k| *k == c).unwrap_or(0)
}

/// A stretch of the new generation.
enum Run {
    /// Old records `a..b`, none removed.
    Old(usize, usize),
    /// The `k`th added record.
    Added(usize),
}

/// Where old record `i`'s extra starts (the blob's end for `i == len`).
fn old_extra_offset(records: &[u8], i: usize) -> usize {
    let at = i * RECORD_LEN;
    records
        .get(at + 14..at + 18)
        .map_or(0, |r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize)
}

/// Where old record `b - 1`'s extra ends (extras are laid out in order).
fn old_extra_end(records: &[u8], b: usize) -> usize {
    if b == 0 {
        return 0;
    }
    let at = (b - 1) * RECORD_LEN;
    records.get(at + 14..at + 20).map_or(0, |r| {
        u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize
            + usize::from(u16::from_le_bytes([r[4], r[5]]))
    })
}

/// The bucket of record `p` of `records`.
fn bucket(records: &[u8], p: usize, bits: u32) -> usize {
    let at = p * RECORD_LEN;
    let plate = records.get(at..at + MAX_PLATE_LEN).unwrap_or(&[]);
    bucket_of(record_key(plate).0, bits)
}

/// Numbers as four byte planes (all low bytes, then the next…): small
/// numbers leave the high planes zero, which deflate all but removes.
fn put_u32_planes(raw: &mut Vec<u8>, values: &[u32]) {
    for shift in [0, 8, 16, 24] {
        raw.extend(values.iter().map(|v| (v >> shift) as u8));
    }
}

/// Numbers below 2^16 as two byte planes.
fn put_u16_planes(raw: &mut Vec<u8>, values: &[u32]) {
    for shift in [0, 8] {
        raw.extend(values.iter().map(|v| (v >> shift) as u8));
    }
}

/// A column of strings, in one of two codings:
/// - `0`, transposed: the lengths (two byte planes), then every string's
///   first byte, every second byte, … so each column holds one kind of
///   character (the digits of an NCIC number) and compresses as such;
/// - `1`, a dictionary, for columns of few distinct values (makes,
///   colours, states): the sorted distinct values (count varint, then
///   transposed), then each row's index in it (two byte planes).
fn put_str_columns(raw: &mut Vec<u8>, values: &[&[u8]]) {
    let mut distinct: Vec<&[u8]> = values.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() <= usize::from(u16::MAX) && distinct.len() * 4 <= values.len() {
        raw.push(1);
        put_varint(raw, distinct.len() as u64);
        put_transposed(raw, &distinct);
        let index: Vec<u32> = values
            .iter()
            .map(|v| distinct.binary_search(v).unwrap_or(0) as u32)
            .collect();
        put_u16_planes(raw, &index);
    } else {
        raw.push(0);
        put_transposed(raw, values);
    }
}

/// Strings transposed (lengths ≤ MAX_FIELD_BYTES).
fn put_transposed(raw: &mut Vec<u8>, values: &[&[u8]]) {
    let lens: Vec<u32> = values.iter().map(|v| v.len() as u32).collect();
    put_u16_planes(raw, &lens);
    let longest = values.iter().map(|v| v.len()).max().unwrap_or(0);
    for pos in 0..longest {
        raw.extend(values.iter().filter_map(|v| v.get(pos)));
    }
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

    /// `count` numbers written by `put_u32_planes`.
    fn u32_planes(&mut self, count: usize, what: &str) -> Result<Vec<u32>, GenerationError> {
        let planes = self.bytes(count.checked_mul(4).ok_or_else(|| invalid(what))?, what)?;
        Ok((0..count)
            .map(|k| {
                u32::from_le_bytes([
                    planes[k],
                    planes[count + k],
                    planes[2 * count + k],
                    planes[3 * count + k],
                ])
            })
            .collect())
    }

    /// `count` numbers written by `put_u16_planes`.
    fn u16_planes(&mut self, count: usize, what: &str) -> Result<Vec<u32>, GenerationError> {
        let planes = self.bytes(count.checked_mul(2).ok_or_else(|| invalid(what))?, what)?;
        Ok((0..count)
            .map(|k| u32::from(u16::from_le_bytes([planes[k], planes[count + k]])))
            .collect())
    }

    /// `count` strings written by `put_str_columns`, each at most `max`
    /// bytes; `budget` is what the delta may still materialise.
    fn str_columns(
        &mut self,
        count: usize,
        max: usize,
        budget: &mut usize,
        what: &str,
    ) -> Result<Vec<Vec<u8>>, GenerationError> {
        let mode = self.bytes(1, what)?[0];
        match mode {
            0 => self.transposed(count, max, budget, what),
            1 => {
                let n = self.varint(what)?;
                if n > count as u64 {
                    return Err(invalid(format!("{what}: more values than rows")));
                }
                let dict = self.transposed(n as usize, max, budget, what)?;
                let index = self.u16_planes(count, what)?;
                let mut out = Vec::with_capacity(count);
                for k in index {
                    let v = dict
                        .get(k as usize)
                        .ok_or_else(|| invalid(format!("{what}: index out of range")))?;
                    *budget = budget
                        .checked_sub(v.len())
                        .ok_or_else(|| invalid("too large once expanded"))?;
                    out.push(v.clone());
                }
                Ok(out)
            }
            _ => Err(invalid(format!("{what}: unknown column coding {mode}"))),
        }
    }

    fn transposed(
        &mut self,
        count: usize,
        max: usize,
        budget: &mut usize,
        what: &str,
    ) -> Result<Vec<Vec<u8>>, GenerationError> {
        let lens = self.u16_planes(count, what)?;
        let mut total = 0usize;
        for &l in &lens {
            if l as usize > max {
                return Err(invalid(format!("{what} too long")));
            }
            total += l as usize;
        }
        // The bytes must be there before anything is allocated for them.
        let data = self.bytes(total, what)?;
        *budget = budget
            .checked_sub(total)
            .ok_or_else(|| invalid("too large once expanded"))?;
        let mut out: Vec<Vec<u8>> = lens
            .iter()
            .map(|&l| Vec::with_capacity(l as usize))
            .collect();
        let mut at = 0usize;
        let longest = lens.iter().copied().max().unwrap_or(0) as usize;
        for pos in 0..longest {
            for (v, &l) in out.iter_mut().zip(&lens) {
                if pos < l as usize {
                    v.push(data[at]);
                    at += 1;
                }
            }
        }
        Ok(out)
    }

    /// Ascending indices given as gaps, each below `limit`.
    fn indices(&mut self, limit: usize, what: &str) -> Result<Vec<usize>, GenerationError> {
        let count = self.varint(what)?;
        if count > limit as u64 {
            return Err(invalid(format!("{count} {what} of {limit} records")));
        }
        let gaps = self.u32_planes(count as usize, what)?;
        let mut out = Vec::with_capacity(gaps.len());
        let mut next = 0u64;
        for gap in gaps {
            let k = next + u64::from(gap);
            if k >= limit as u64 {
                return Err(invalid(format!("{what} index out of range")));
            }
            out.push(k as usize);
            next = k + 1;
        }
        Ok(out)
    }
}

/// Apply a delta to the generation it was made from; the result must
/// verify exactly as the new generation does: its header (carried in the
/// delta) under a hotlist key certified by `anchor`, its body against the
/// header's content hash.
pub fn apply(
    old: &Generation,
    delta: &[u8],
    anchor: &TrustAnchor,
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
    if header_len > (MAX_INFO_LEN + MAX_CERT_LEN + 256) as u64 {
        return Err(invalid("header too long"));
    }
    let header_bytes = r.bytes(header_len as usize, "header")?;
    // The header must be the whole of what read_header reads: append a
    // body-less generation and check it parsed to exactly its end.
    let header = read_header(header_bytes, anchor)?;
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
    let mut budget = MAX_DELTA_RAW;
    let plates = r.str_columns(n_add, MAX_PLATE_LEN, &mut budget, "plates")?;
    let states = r.str_columns(n_add, 2, &mut budget, "states")?;
    let cats = r.bytes(n_add, "categories")?;
    for k in 0..n_add {
        let (p, st) = (&plates[k], &states[k]);
        let plate_ok = !p.is_empty()
            && p.iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let state_ok = st.len() == 2 && (st[..] == [0, 0] || st.iter().all(u8::is_ascii_uppercase));
        if !plate_ok || !state_ok || usize::from(cats[k]) >= Category::ALL.len() {
            return Err(invalid(format!("added record {k} is malformed")));
        }
    }
    let mut fields: Vec<Vec<Vec<u8>>> = Vec::with_capacity(EXTRA_FIELDS.len());
    for name in EXTRA_FIELDS {
        fields.push(r.str_columns(n_add, MAX_FIELD_BYTES, &mut budget, name)?);
    }
    if r.at != raw.len() {
        return Err(invalid("trailing bytes"));
    }

    // The added records' extras, and so the new blob's size.
    let mut extras: Vec<Vec<u8>> = Vec::with_capacity(n_add);
    for ai in 0..n_add {
        let mut extra = Vec::with_capacity(64);
        for col in &fields {
            put_varint(&mut extra, col[ai].len() as u64);
            extra.extend_from_slice(&col[ai]);
        }
        if extra.len() > usize::from(u16::MAX) {
            return Err(invalid("an added record is malformed"));
        }
        extras.push(extra);
    }
    drop(fields);
    let removed_bytes: usize = removed.iter().map(|&i| old.extra(i).len()).sum();
    let blob_len = old.blob().len() - removed_bytes + extras.iter().map(Vec::len).sum::<usize>();
    if blob_len > MAX_GENERATION_BYTES {
        return Err(invalid("result over the generation size limit"));
    }

    // The new order as runs of old records and single added ones: a
    // linear merge without comparisons.
    let mut runs: Vec<Run> = Vec::with_capacity(2 * (n_add + removed.len()) + 1);
    let (mut oi, mut ri, mut ai, mut p) = (0usize, 0usize, 0usize, 0usize);
    while p < new_rows {
        if added.get(ai) == Some(&p) {
            runs.push(Run::Added(ai));
            ai += 1;
            p += 1;
            continue;
        }
        while removed.get(ri) == Some(&oi) {
            ri += 1;
            oi += 1;
        }
        // Old records up to the next removal, the next addition or the end.
        let until_removed = removed.get(ri).map_or(old.len(), |&r| r);
        let until_added = added.get(ai).map_or(new_rows, |&a| a) - p;
        let n = (until_removed - oi).min(until_added);
        if n == 0 {
            return Err(invalid("ran out of old records"));
        }
        runs.push(Run::Old(oi, oi + n));
        oi += n;
        p += n;
    }

    let bits = bucket_bits(new_rows);
    let dir_len = ((1usize << bits) + 1) * 4;
    let body_len = 12 + dir_len + new_rows * RECORD_LEN + blob_len;
    let mut bytes = Vec::with_capacity(header_bytes.len() + body_len);
    bytes.extend_from_slice(header_bytes);
    let body_at = bytes.len();
    bytes.extend_from_slice(&(new_rows as u32).to_le_bytes());
    bytes.extend_from_slice(&bits.to_le_bytes());
    bytes.extend_from_slice(&(blob_len as u32).to_le_bytes());
    let dir_at = bytes.len();
    bytes.resize(dir_at + dir_len, 0);
    let rec_at = bytes.len();

    // Records: old runs copied whole, then their extra offsets moved.
    let old_records = old.records();
    let mut off = 0usize;
    for run in &runs {
        match *run {
            Run::Old(a, b) => {
                let start = bytes.len();
                bytes.extend_from_slice(&old_records[a * RECORD_LEN..b * RECORD_LEN]);
                let first = old_extra_offset(old_records, a);
                for rec in bytes[start..].chunks_exact_mut(RECORD_LEN) {
                    let o = u32::from_le_bytes([rec[14], rec[15], rec[16], rec[17]]) as usize;
                    let moved = (o - first + off) as u32;
                    rec[14..18].copy_from_slice(&moved.to_le_bytes());
                }
                off += old_extra_end(old_records, b) - first;
            }
            Run::Added(k) => {
                let plate = &plates[k];
                bytes.extend_from_slice(plate);
                bytes.resize(bytes.len() + MAX_PLATE_LEN - plate.len(), 0);
                bytes.extend_from_slice(&states[k]);
                bytes.push(cats[k]);
                bytes.push(0);
                bytes.extend_from_slice(&(off as u32).to_le_bytes());
                bytes.extend_from_slice(&(extras[k].len() as u16).to_le_bytes());
                off += extras[k].len();
            }
        }
    }
    // The blob: old runs are one copy each.
    let old_blob = old.blob();
    for run in &runs {
        match *run {
            Run::Old(a, b) => {
                let (from, to) = (
                    old_extra_offset(old_records, a),
                    old_extra_end(old_records, b),
                );
                bytes.extend_from_slice(&old_blob[from..to]);
            }
            Run::Added(k) => bytes.extend_from_slice(&extras[k]),
        }
    }
    if bytes.len() != body_at + body_len {
        return Err(invalid("the result's size is not what the header says"));
    }

    // The directory: moved from the old one when the bucket count is the
    // same (a bucket's first record shifts by the removals before it and
    // the additions before it), else counted afresh.
    let (head, rest) = bytes.split_at_mut(rec_at);
    let dir = &mut head[dir_at..];
    let records = &rest[..new_rows * RECORD_LEN];
    if bits == bucket_bits(old.len()) {
        let added_buckets: Vec<usize> = added.iter().map(|&p| bucket(records, p, bits)).collect();
        let (mut ri, mut ai) = (0usize, 0usize);
        for (b, slot) in dir.chunks_exact_mut(4).enumerate() {
            let first_old = old.dir_slot(b) as usize;
            while removed.get(ri).is_some_and(|&r| r < first_old) {
                ri += 1;
            }
            while added_buckets.get(ai).is_some_and(|&ab| ab < b) {
                ai += 1;
            }
            let v = (first_old - ri + ai) as u32;
            slot.copy_from_slice(&v.to_le_bytes());
        }
    } else {
        fill_directory(dir, records, bits);
    }

    let hash = tagged_hash(tag::HOTLIST_HASH, &[&bytes[body_at..]]);
    if hash != header.content_hash {
        return Err(invalid(
            "the result does not match the hub's signed generation (wrong or forged delta)",
        ));
    }
    // The categories the header counts are those of the records.
    let mut counts = [0i64; Category::ALL.len()];
    for (c, n) in &old.info().categories {
        counts[category_slot(*c)] += *n as i64;
    }
    for &i in &removed {
        counts[category_slot(old.category(i))] -= 1;
    }
    for &c in cats {
        counts[usize::from(c)] += 1;
    }
    let listed: Vec<(Category, u64)> = Category::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (*c, n as u64))
        .collect();
    if listed != header.info.categories {
        return Err(invalid("category counts differ from the header's"));
    }
    Generation::from_applied(bytes, header)
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
