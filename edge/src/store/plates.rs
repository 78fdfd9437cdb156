//! The plate index (`plate-time-v1`): reads by plate and capture time, for
//! searches on the node and past matches of a new hotlist entry. Written
//! with each read, its rows leave when retention purges the read.

use alpr_shared::types::UnixMillis;
use redb::ReadableDatabase;

use super::tables::{plate_key, PLATE_TIME};
use super::{db_err, StoreError, StoreHandle};

impl StoreHandle {
    /// Reads whose plate is in [`from_plate`, `to_plate`) (byte order),
    /// captured in [`from`, `to`]: (plate, seq). For past matches of a
    /// pattern, the caller filters by its prefix range.
    pub fn plates_in_range(
        &self,
        from_plate: &str,
        to_plate: Option<&str>,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let mut out = Vec::new();
        let lo = from_plate.as_bytes().to_vec();
        for row in t.range::<&[u8]>(lo.as_slice()..).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let Some(zero) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let plate = String::from_utf8_lossy(&k[..zero]).into_owned();
            if to_plate.is_some_and(|t| plate.as_str() >= t) {
                break;
            }
            let (Some(at), Some(seq)) = (
                k.get(zero + 1..zero + 9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok()),
                k.get(zero + 9..zero + 17)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ) else {
                continue;
            };
            let at = u64::from_be_bytes(at);
            if at < from.0 || at > to.0 {
                continue;
            }
            out.push((plate, u64::from_be_bytes(seq)));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Sequence numbers of reads of `plate` captured in [from, to].
    pub fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let lo = plate_key(plate, from, 0);
        let hi = plate_key(plate, to, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?
        {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            if let Some(s) = k.get(k.len().saturating_sub(8)..) {
                if let Ok(b) = <[u8; 8]>::try_from(s) {
                    out.push(u64::from_be_bytes(b));
                }
            }
        }
        Ok(out)
    }
}
