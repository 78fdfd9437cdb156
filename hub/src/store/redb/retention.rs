//! Retention in redb: a purge deletes reads' content, their index rows
//! and the images no read still holding content names.

use alpr_shared::log::retention::FreedImages;

use super::*;

/// Purge the content of node `id`'s reads in `ranges` (see
/// [`WriteOp::Purge`]).
fn purge_reads(
    id: u32,
    ranges: &[alpr_shared::log::SeqRange],
    entries: &mut redb::Table<&[u8; 12], &[u8]>,
    plate_time: &mut redb::Table<&[u8], ()>,
    geo: &mut redb::Table<&[u8; 24], &[u8; 8]>,
    images: &mut redb::Table<&[u8; 32], &[u8]>,
) -> Result<Purged, StoreError> {
    let corrupt = |e: alpr_shared::log::DecodeError| StoreError::Corrupt {
        table: "entries-v1",
        detail: e.to_string(),
    };
    let mut done = Purged::default();
    let mut freed = FreedImages::default();
    // Index rows and images are deleted in key order, each tree walked
    // once (plates and image hashes come in random order).
    let mut plate_rows = Vec::new();
    let mut geo_rows = Vec::new();
    for r in ranges {
        for seq in r.first..=r.last {
            let key = entry_key(id, seq);
            let Some(bytes) = entries
                .get(&key)
                .map_err(db_err)?
                .map(|v| v.value().to_vec())
            else {
                continue;
            };
            let mut e = SignedEntry::decode(&bytes).map_err(corrupt)?;
            let Some(read) = e.read().cloned() else {
                continue;
            };
            let at = e.header.captured_at;
            plate_rows.push(plate_key(&read.plate, at, id, seq));
            let cell =
                coordinates(&read.location).map_or(UNPLACED, |(lat, lon)| geo_cell(lat, lon));
            geo_rows.push(geo_key(cell, at, id, seq));
            freed.purged(&read);
            e.purge_content();
            entries
                .insert(&key, e.encode().as_slice())
                .map_err(db_err)?;
            done.reads += 1;
        }
    }
    plate_rows.sort_unstable();
    for k in &plate_rows {
        plate_time.remove(k.as_slice()).map_err(db_err)?;
    }
    geo_rows.sort_unstable();
    for k in &geo_rows {
        geo.remove(k).map_err(db_err)?;
    }
    // Keep an image a neighbouring read still holding content names.
    for r in ranges {
        let (before, after) = FreedImages::neighbours(r);
        for seq in (before..r.first).chain(r.last.saturating_add(1)..=after) {
            if let Some(v) = entries.get(&entry_key(id, seq)).map_err(db_err)? {
                if let Some(read) = SignedEntry::decode(v.value()).map_err(corrupt)?.read() {
                    freed.kept(read);
                }
            }
        }
    }
    for h in freed.into_sorted() {
        if images.remove(&h.0).map_err(db_err)?.is_some() {
            done.images += 1;
        }
    }
    Ok(done)
}

/// [`WriteOp::Purge`]: purge the content of `device`'s reads in `ranges`
/// and append the hub-signed record of it to the hub's log.
pub(super) fn purge(
    b: &mut Batch<'_>,
    device: &DeviceId,
    ranges: &[SeqRange],
    record: &SignedEntry,
) -> Result<WriteResult, StoreError> {
    check_purge_record(device, ranges, record)?;
    super::access::append(&mut b.access, record, "purge record")?;
    let id = match b.nodes.get(device.as_str()).map_err(db_err)? {
        Some(v) => decode_node(v.value())?.id,
        None => return Err(StoreError::NotFound(format!("no node {device} to purge"))),
    };
    let done = purge_reads(
        id,
        ranges,
        &mut b.entries,
        &mut b.plate_time,
        &mut b.geo,
        &mut b.images,
    )?;
    Ok(WriteResult::Purged(done))
}
