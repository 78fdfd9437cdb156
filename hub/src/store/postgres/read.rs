//! Reads of the hub's records on PostgreSQL, and the [`HubStorage`]
//! implementation of [`PgStore`]. Orders and limits are the redb store's.

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32};
use deadpool_postgres::GenericClient;

use super::sql::{bound, id_col, id_of, limit, millis, query, uncol};
use super::PgStore;
use crate::store::rows::decode_row;
use crate::store::*;

/// Every certificate of node `id`, in the order they took effect (pending
/// ones last, by when they were first seen).
pub(super) async fn node_certs(
    c: &impl GenericClient,
    id: u32,
) -> Result<Vec<NodeCert>, StoreError> {
    let rows = query!(
        c,
        "SELECT serial, der, first_seen, effective_from FROM node_certs \
         WHERE node_id = $1 ORDER BY serial",
        &id_col(id)?
    )
    .await?;
    let mut out = rows
        .iter()
        .map(|r| node_cert(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    in_effect_order(&mut out);
    Ok(out)
}

/// A `node_certs` row's `serial, der, first_seen, effective_from`, from
/// column `at` on.
pub(super) fn node_cert(r: &tokio_postgres::Row, at: usize) -> Result<NodeCert, StoreError> {
    const T: &str = "node_certs";
    Ok(NodeCert {
        serial: r.get(at),
        der: r.get(at + 1),
        first_seen: millis(r.get(at + 2), T)?,
        effective_from: r
            .get::<_, Option<i64>>(at + 3)
            .map(|v| uncol(v, T))
            .transpose()?,
    })
}

/// The latest checked checkpoint of node `id`.
pub(super) async fn checkpoint_of(
    c: &impl GenericClient,
    id: u32,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    query!(
        c,
        "SELECT bytes FROM checkpoints WHERE node_id = $1",
        &id_col(id)?
    )
    .await?
    .first()
    .map(|r| {
        SignedCheckpoint::decode(r.get(0)).map_err(|e| StoreError::Corrupt {
            table: "checkpoints",
            detail: e.to_string(),
        })
    })
    .transpose()
}

/// Size and head of the hub's access log.
pub(super) async fn access_head(c: &impl GenericClient) -> Result<(u64, Hash32), StoreError> {
    let rows = query!(c, "SELECT bytes FROM hub_access ORDER BY seq DESC LIMIT 1").await?;
    let Some(row) = rows.first() else {
        return Ok((0, Hash32::ZERO));
    };
    let e = alpr_shared::log::SignedEntry::decode(row.get(0)).map_err(|e| StoreError::Corrupt {
        table: "hub_access",
        detail: e.to_string(),
    })?;
    Ok((e.seq() + 1, e.hash()))
}

/// An `alerts` row's stage and disposition entries, if they decode.
pub(super) fn decode_alert(
    progress: &[u8],
    dispositions: &[u8],
) -> Option<(alpr_shared::log::alert::Progress, Vec<u64>)> {
    let progress = alpr_shared::log::alert::Progress::decode(progress)?;
    if !dispositions.len().is_multiple_of(8) {
        return None;
    }
    let seqs = dispositions
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_be_bytes)
        .collect();
    Some((progress, seqs))
}

/// An `alerts` row as the hub shows it.
pub(super) fn alert_index_row(
    node: DeviceId,
    seq: u64,
    progress: &[u8],
    covert: bool,
    dispositions: &[u8],
) -> Result<AlertIndexRow, StoreError> {
    let Some((progress, dispositions)) = decode_alert(progress, dispositions) else {
        return Err(StoreError::Corrupt {
            table: "alerts",
            detail: format!("row of {node}#{seq}"),
        });
    };
    Ok(AlertIndexRow {
        node,
        seq,
        progress,
        covert,
        dispositions,
    })
}

/// Rows of (name, seq, captured_at) as indexed reads; rows of nodes whose
/// name no longer reads are left out.
pub(super) fn indexed(
    rows: &[tokio_postgres::Row],
    from: usize,
) -> Result<Vec<IndexedRead>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(d) = DeviceId::new(r.get::<_, &str>(from)) else {
            continue;
        };
        out.push(IndexedRead {
            device: d,
            seq: uncol(r.get(from + 1), "reads")?,
            captured_at: millis(r.get(from + 2), "reads")?,
        });
    }
    Ok(out)
}

impl PgStore {
    /// The id of a node, if it ever connected.
    pub(super) fn node_id(&self, device: &DeviceId) -> Result<Option<u32>, StoreError> {
        let name = device.as_str().to_owned();
        self.run(move |c| async move {
            query!(c, "SELECT id FROM nodes WHERE name = $1", &name)
                .await?
                .first()
                .map(|r| id_of(r.get(0), "nodes"))
                .transpose()
        })
    }

    /// The newest `limit` rows' postcard records of a log-like table,
    /// oldest first.
    pub(super) fn newest<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        n: usize,
    ) -> Result<Vec<T>, StoreError> {
        let sql = format!(
            "SELECT bytes FROM (SELECT at, id, bytes FROM {table} ORDER BY at DESC, id DESC \
             LIMIT $1) r ORDER BY at, id"
        );
        self.run(move |c| async move {
            query!(c, &sql, &limit(n))
                .await?
                .iter()
                .map(|r| decode_row(r.get(0), table))
                .collect()
        })
    }

    /// One `bytea` column of the first row of a query with one text
    /// parameter (or none).
    pub(super) fn bytes_of(
        &self,
        sql: &'static str,
        key: Option<String>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |c| async move {
            let rows = match &key {
                Some(k) => query!(c, sql, k).await?,
                None => query!(c, sql).await?,
            };
            Ok(rows.first().map(|r| r.get(0)))
        })
    }
}

/// Alert rows of node `id` by seq (for a disposition naming one stored
/// before this commit): (progress, covert, dispositions).
pub(super) async fn alert_cols(
    c: &impl GenericClient,
    id: u32,
    seq: u64,
) -> Result<Option<(Vec<u8>, bool, Vec<u8>)>, StoreError> {
    Ok(query!(
        c,
        "SELECT progress, covert, dispositions FROM alerts WHERE node_id = $1 AND seq = $2",
        &id_col(id)?,
        &bound(seq)
    )
    .await?
    .first()
    .map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// Rows of (number, value): the first column a number of `table` kept as
/// a column ([`uncol`]), the second what `value` makes of the row.
pub(super) fn numbered<T>(
    rows: &[tokio_postgres::Row],
    table: &'static str,
    value: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<(u64, T)>, StoreError> {
    rows.iter()
        .map(|r| Ok((uncol(r.get(0), table)?, value(r)?)))
        .collect()
}
