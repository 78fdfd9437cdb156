//! Alerts on PostgreSQL ([`AlertStore`]).

use alpr_shared::log::alert::Progress;
use alpr_shared::log::SignedEntry;
use alpr_shared::types::DeviceId;
use deadpool_postgres::GenericClient;

use super::read::{self, *};
use super::sql::{bound, execute, id_col, limit, query, uncol};
use super::write::{AlertRow, Commit};
use super::PgStore;
use crate::store::rows::{decode_row, encode};
use crate::store::*;

impl AlertStore for PgStore {
    fn alerts(&self, node: Option<&DeviceId>, n: usize) -> Result<Vec<AlertIndexRow>, StoreError> {
        let name = node.map(|d| d.as_str().to_owned());
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n.name, a.seq, a.progress, a.covert, a.dispositions \
                 FROM alerts a JOIN nodes n ON n.id = a.node_id \
                 WHERE ($1::text IS NULL OR n.name = $1) \
                 ORDER BY a.node_id, a.seq LIMIT $2",
                &name,
                &limit(n)
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let Ok(d) = DeviceId::new(r.get::<_, &str>(0)) else {
                    continue;
                };
                out.push(alert_index_row(
                    d,
                    uncol(r.get(1), "alerts")?,
                    r.get(2),
                    r.get(3),
                    r.get(4),
                )?);
            }
            Ok(out)
        })
    }

    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError> {
        let Some(id) = self.node_id(node)? else {
            return Ok(None);
        };
        let node = node.clone();
        self.run(move |c| async move {
            query!(
                c,
                "SELECT progress, covert, dispositions FROM alerts \
                 WHERE node_id = $1 AND seq = $2",
                &id_col(id)?,
                &bound(seq)
            )
            .await?
            .first()
            .map(|r| alert_index_row(node, seq, r.get(0), r.get(1), r.get(2)))
            .transpose()
        })
    }

    fn hub_alerts(&self, n: usize) -> Result<Vec<(u64, HubAlert)>, StoreError> {
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n, bytes FROM hub_alerts ORDER BY n DESC LIMIT $1",
                &limit(n)
            )
            .await?;
            numbered(&rows, "hub_alerts", |r| decode_row(r.get(1), "hub_alerts"))
        })
    }

    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError> {
        let alert = alert.map(str::to_owned);
        self.run(move |c| async move {
            query!(
                c,
                "SELECT alert, bytes FROM hub_dispositions \
                 WHERE ($1::text IS NULL OR alert = $1) ORDER BY alert, n",
                &alert
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0), decode_row(r.get(1), "hub_dispositions")?)))
            .collect()
        })
    }
}

impl Commit<'_> {
    /// [`WriteOp::HubDisposition`]: a stage after the alert's others.
    pub(super) async fn hub_disposition(
        &mut self,
        alert: String,
        disposition: crate::store::HubDisposition,
    ) -> Result<WriteResult, StoreError> {
        let next: i64 = query!(
            self.tx,
            "SELECT coalesce(max(n) + 1, 0) FROM hub_dispositions WHERE alert = $1",
            &alert
        )
        .await?
        .first()
        .map_or(0, |r| r.get(0));
        execute!(
            self.tx,
            "INSERT INTO hub_dispositions (alert, n, bytes) VALUES ($1, $2, $3)",
            &alert,
            &next,
            &encode(&disposition)
        )
        .await?;
        Ok(WriteResult::Done)
    }

    pub(super) async fn hub_alerts(&mut self, found: &[HubAlert]) -> Result<(), StoreError> {
        if found.is_empty() {
            return Ok(());
        }
        let last: i64 = query!(self.tx, "SELECT coalesce(max(n), 0) FROM hub_alerts")
            .await?
            .first()
            .map_or(0, |r| r.get(0));
        let numbers: Vec<i64> = (last + 1..).take(found.len()).collect();
        let bytes: Vec<Vec<u8>> = found.iter().map(encode).collect();
        execute!(
            self.tx,
            "INSERT INTO hub_alerts (n, bytes) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &numbers,
            &bytes
        )
        .await?;
        Ok(())
    }

    /// Index an alert or a disposition entry of node `id` (anything else
    /// is left alone). A disposition the stage rules refuse (a node's log
    /// is the node's word; the rules were checked there) is kept in the
    /// log and not counted here.
    pub(super) async fn index_alert(&mut self, id: u32, e: &SignedEntry) -> Result<(), StoreError> {
        if let Some(r) = e.alert() {
            self.pending.alerts.insert(
                (id, e.seq()),
                AlertRow {
                    progress: Progress::default(),
                    covert: r.covert,
                    dispositions: Vec::new(),
                },
            );
        } else if let Some(d) = e.disposition() {
            let key = (id, d.alert_seq);
            if !self.pending.alerts.contains_key(&key) {
                let Some((progress, covert, dispositions)) =
                    read::alert_cols(&self.tx, id, d.alert_seq).await?
                else {
                    return Ok(());
                };
                let Some((progress, dispositions)) = read::decode_alert(&progress, &dispositions)
                else {
                    return Err(StoreError::Corrupt {
                        table: "alerts",
                        detail: format!("row of node {id}#{}", d.alert_seq),
                    });
                };
                self.pending.alerts.insert(
                    key,
                    AlertRow {
                        progress,
                        covert,
                        dispositions,
                    },
                );
            }
            if let Some(row) = self.pending.alerts.get_mut(&key) {
                if row.progress.apply(d.stage).is_ok() {
                    row.dispositions.push(e.seq());
                }
            }
        }
        Ok(())
    }
}
