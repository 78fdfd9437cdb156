//! Bulk hotlist generations in redb ([`HotlistStore`]); floors are in
//! `floors`.

use super::*;

impl HotlistStore for RedbStore {
    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        {
            let mut gens = tx.open_table(HOTLIST_GEN).map_err(db_err)?;
            let mut imports = tx.open_table(HOTLIST_IMPORT).map_err(db_err)?;
            gens.insert((source, number), bytes).map_err(db_err)?;
            imports.insert((source, number), record).map_err(db_err)?;
            // Generations below `number + 1 - keep` go (the new one stays
            // whatever `keep` says).
            let first_kept = number.saturating_add(1).saturating_sub(keep.max(1));
            let old: Vec<u64> = gens
                .range((source, 0)..(source, first_kept))
                .map_err(db_err)?
                .map(|row| row.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for n in old {
                gens.remove((source, n)).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(())
    }

    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(HOTLIST_GEN) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let v = t
            .get((source, number))
            .map_err(db_err)?
            .map(|v| v.value().to_vec());
        Ok(v)
    }

    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let (imports, gens) = match (tx.open_table(HOTLIST_IMPORT), tx.open_table(HOTLIST_GEN)) {
            (Ok(i), Ok(g)) => (i, g),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
            (Err(e), _) | (_, Err(e)) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for row in imports
            .range((source, 0)..=(source, u64::MAX))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let n = k.value().1;
            let kept = gens.get((source, n)).map_err(db_err)?.is_some();
            out.push((n, v.value().to_vec(), kept));
        }
        Ok(out)
    }

    fn generation_floor(&self, source: &str) -> Result<u64, StoreError> {
        floors::floor(&self.db, source)
    }

    fn node_hotlists(&self) -> Result<Vec<(DeviceId, NodeLists)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_HOTLISTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let held: Vec<(String, u64)> = decode_row(v.value(), "node-hotlists-v1")?;
            if let Ok(d) = DeviceId::new(k.value()) {
                out.push((d, held));
            }
        }
        Ok(out)
    }
}

/// [`WriteOp::NodeHotlists`]: the bulk lists a node last said it holds.
pub(super) fn node_hotlists(
    b: &mut Batch<'_>,
    device: &DeviceId,
    held: &[(String, u64)],
) -> Result<WriteResult, StoreError> {
    b.node_hotlists
        .insert(device.as_str(), encode(&held).as_slice())
        .map_err(db_err)?;
    Ok(WriteResult::Done)
}
