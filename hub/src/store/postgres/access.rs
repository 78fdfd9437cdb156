//! The access logs on PostgreSQL ([`AccessLogStore`]).

use alpr_shared::log::SignedEntry;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use deadpool_postgres::GenericClient;

use super::partition::at_col;
use super::read::{self, *};
use super::sql::{bound, col, execute, limit, query};
use super::write::Commit;
use super::PgStore;
use crate::store::*;

impl AccessLogStore for PgStore {
    fn hub_access_entries(&self, first: u64, n: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(move |c| async move {
            Ok(query!(
                c,
                "SELECT bytes FROM hub_access WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &bound(first),
                &limit(n)
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError> {
        self.run(move |c| async move { access_head(&c).await })
    }

    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        n: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n.name, a.seq, a.at FROM node_access a JOIN nodes n ON n.id = a.node_id \
                 WHERE a.at BETWEEN $1 AND $2 ORDER BY a.at, a.node_id, a.seq LIMIT $3",
                &at_col(from),
                &at_col(to),
                &limit(n)
            )
            .await?;
            Ok(indexed(&rows, 0)?
                .into_iter()
                .map(|r| (r.device, r.seq))
                .collect())
        })
    }
}

impl Commit<'_> {
    /// Append `e` to the hub's access log; another hub process having
    /// appended first is a conflict (the writer resumes and re-signs).
    pub(super) async fn append_access(
        &mut self,
        e: &SignedEntry,
        what: &str,
    ) -> Result<(), StoreError> {
        let (size, head) = match self.access_head {
            Some(h) => h,
            None => read::access_head(&self.tx).await?,
        };
        if e.seq() != size || e.header.prev != head {
            return Err(StoreError::Conflict(format!(
                "{what} {} does not extend the hub's access log of {size} entries",
                e.seq()
            )));
        }
        execute!(
            self.tx,
            "INSERT INTO hub_access (seq, bytes) VALUES ($1, $2)",
            &col(e.seq(), "seq")?,
            &e.encode()
        )
        .await?;
        self.access_head = Some((size + 1, e.hash()));
        Ok(())
    }
}
