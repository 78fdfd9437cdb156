//! Alerts in redb: the index of nodes' alerts, the hub's past matches
//! and dispositions ([`AlertStore`]).

use super::*;

/// Index an alert or a disposition entry of node `id` (anything else is
/// left alone). A disposition the stage rules refuse (a node's log is the
/// node's word; the rules were checked there) is kept in the log and not
/// counted here.
pub(super) fn index_alert(
    t: &mut redb::Table<&[u8; 12], &[u8]>,
    id: u32,
    e: &alpr_shared::log::SignedEntry,
) -> Result<(), StoreError> {
    use alpr_shared::log::alert::Progress;
    if let Some(r) = e.alert() {
        let mut row = Progress::default().encode().to_vec();
        row.push(u8::from(r.covert));
        t.insert(&entry_key(id, e.seq()), row.as_slice())
            .map_err(db_err)?;
    } else if let Some(d) = e.disposition() {
        let key = entry_key(id, d.alert_seq);
        let Some(mut row) = t.get(&key).map_err(db_err)?.map(|v| v.value().to_vec()) else {
            return Ok(());
        };
        let Some(mut p) = row.get(..3).and_then(Progress::decode) else {
            return Err(StoreError::Corrupt {
                table: "alerts-v1",
                detail: "progress".into(),
            });
        };
        if p.apply(d.stage).is_ok() {
            row[..3].copy_from_slice(&p.encode());
            row.extend_from_slice(&e.seq().to_be_bytes());
            t.insert(&key, row.as_slice()).map_err(db_err)?;
        }
    }
    Ok(())
}

fn parse_alert_row(node: DeviceId, seq: u64, v: &[u8]) -> Result<AlertIndexRow, StoreError> {
    let bad = || StoreError::Corrupt {
        table: "alerts-v1",
        detail: format!("row of {node}#{seq}"),
    };
    let progress = v
        .get(..3)
        .and_then(alpr_shared::log::alert::Progress::decode)
        .ok_or_else(bad)?;
    let covert = v.get(3).copied().ok_or_else(bad)? != 0;
    let rest = v.get(4..).ok_or_else(bad)?;
    if rest.len() % 8 != 0 {
        return Err(bad());
    }
    Ok(AlertIndexRow {
        node,
        seq,
        progress,
        covert,
        dispositions: rest
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_be_bytes)
            .collect(),
    })
}

impl AlertStore for RedbStore {
    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<AlertIndexRow>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let names = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let (lo, hi) = match node {
            Some(d) => {
                let Some(rec) = nodes
                    .get(d.as_str())
                    .map_err(db_err)?
                    .map(|v| decode_node(v.value()))
                    .transpose()?
                else {
                    return Ok(Vec::new());
                };
                (entry_key(rec.id, 0), entry_key(rec.id, u64::MAX))
            }
            None => ([0u8; 12], [0xffu8; 12]),
        };
        let mut names = Names::new(&names);
        let mut out = Vec::new();
        for row in t.range::<&[u8; 12]>(&lo..=&hi).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let k = k.value();
            let id = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            if let Some(d) = names.get(id)? {
                out.push(parse_alert_row(d, be_u64(&k[4..])?, v.value())?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let Some(rec) = nodes
            .get(node.as_str())
            .map_err(db_err)?
            .map(|v| decode_node(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let Some(v) = t.get(&entry_key(rec.id, seq)).map_err(db_err)? else {
            return Ok(None);
        };
        parse_alert_row(node.clone(), seq, v.value()).map(Some)
    }

    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, HubAlert)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HUB_ALERTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value(), decode_row(v.value(), "hub-alerts-v1")?));
        }
        Ok(out)
    }

    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HUB_DISPOSITIONS).map_err(db_err)?;
        let rows = match alert {
            Some(a) => t.range((a, 0)..=(a, u64::MAX)),
            None => t.range::<(&str, u64)>(..),
        }
        .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().0.to_owned(),
                decode_row(v.value(), "hub-dispositions-v1")?,
            ));
        }
        Ok(out)
    }
}

/// [`WriteOp::HubAlerts`]: past matches the hub found, numbered on.
pub(super) fn hub_alerts(
    b: &mut Batch<'_>,
    found: Vec<HubAlert>,
) -> Result<WriteResult, StoreError> {
    let first = b
        .hub_alerts
        .last()
        .map_err(db_err)?
        .map_or(1, |(k, _)| k.value() + 1);
    for (n, a) in (first..).zip(found) {
        b.hub_alerts
            .insert(n, encode(&a).as_slice())
            .map_err(db_err)?;
    }
    Ok(WriteResult::Done)
}

/// [`WriteOp::HubDisposition`]: a stage recorded at the hub, after the
/// alert's others.
pub(super) fn hub_disposition(
    b: &mut Batch<'_>,
    alert: &str,
    disposition: &HubDisposition,
) -> Result<WriteResult, StoreError> {
    let next = b
        .hub_dispositions
        .range((alert, 0)..=(alert, u64::MAX))
        .map_err(db_err)?
        .next_back()
        .transpose()
        .map_err(db_err)?
        .map_or(0, |(k, _)| k.value().1 + 1);
    b.hub_dispositions
        .insert((alert, next), encode(disposition).as_slice())
        .map_err(db_err)?;
    Ok(WriteResult::Done)
}
