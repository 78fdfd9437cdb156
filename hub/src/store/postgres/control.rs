//! Control documents on PostgreSQL ([`ControlStore`]).

use alpr_shared::control::replica::ReplicatedDoc;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use deadpool_postgres::GenericClient;

use super::sql::{col, execute, hash, query, uncol};
use super::write::Commit;
use super::PgStore;
use crate::store::*;

impl ControlStore for PgStore {
    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of(
            "SELECT encoded FROM policy ORDER BY version DESC LIMIT 1",
            None,
        )
    }

    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        self.bytes_of("SELECT hash FROM policy_seed WHERE id = 1", None)?
            .map(|b| hash(&b, "policy_seed"))
            .transpose()
    }

    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.run(move |c| async move {
            let mut out = Vec::new();
            for r in query!(c, "SELECT name, version FROM node_policy ORDER BY name").await? {
                if let Ok(d) = DeviceId::new(r.get::<_, &str>(0)) {
                    out.push((d, uncol(r.get(1), "node_policy")?));
                }
            }
            Ok(out)
        })
    }

    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of("SELECT doc FROM holds WHERE id = 1", None)
    }

    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of("SELECT doc FROM local_entries WHERE id = 1", None)
    }
}

impl Commit<'_> {
    /// [`WriteOp::Policy`]: a newer version, or a conflict.
    pub(super) async fn policy(
        &mut self,
        version: u64,
        encoded: Vec<u8>,
        seed: Option<Hash32>,
    ) -> Result<WriteResult, StoreError> {
        let latest: Option<i64> = query!(self.tx, "SELECT max(version) FROM policy")
            .await?
            .first()
            .and_then(|r| r.get(0));
        let v = col(version, "policy version")?;
        if let Some(latest) = latest.filter(|l| *l >= v) {
            return Err(StoreError::Conflict(format!(
                "policy version {version} is not newer than the stored {latest}"
            )));
        }
        execute!(
            self.tx,
            "INSERT INTO policy (version, encoded) VALUES ($1, $2)",
            &v,
            &encoded
        )
        .await?;
        if let Some(seed) = seed {
            execute!(
                self.tx,
                "INSERT INTO policy_seed (id, hash) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET hash = excluded.hash",
                &seed.0.as_slice()
            )
            .await?;
        }
        self.changed = true;
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::NodePolicy`]: the version a node last said it holds.
    pub(super) async fn node_policy(
        &mut self,
        device: DeviceId,
        version: u64,
    ) -> Result<WriteResult, StoreError> {
        execute!(
            self.tx,
            "INSERT INTO node_policy (name, version) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            &device.as_str(),
            // What a node says it holds, kept as said up to the
            // column's range: never a reason to fail the commit.
            &super::sql::bound(version)
        )
        .await?;
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::Holds`]: merge into the saved legal holds document.
    pub(super) async fn holds(&mut self, doc: Vec<u8>) -> Result<WriteResult, StoreError> {
        self.merge_doc(Doc::Holds, doc)
            .await
            .map(|()| WriteResult::Done)
    }

    /// [`WriteOp::LocalEntries`]: merge into the saved local entries
    /// document.
    pub(super) async fn local_entries(&mut self, doc: Vec<u8>) -> Result<WriteResult, StoreError> {
        self.merge_doc(Doc::LocalEntries, doc)
            .await
            .map(|()| WriteResult::Done)
    }

    /// Merge `doc` into the stored automerge document, so edits made
    /// through another hub process survive.
    async fn merge_doc(&mut self, which: Doc, doc: Vec<u8>) -> Result<(), StoreError> {
        let table = which.table();
        let stored = query!(
            self.tx,
            &format!("SELECT doc FROM {table} WHERE id = 1 FOR UPDATE")
        )
        .await?;
        let merged = match stored.first() {
            None => doc,
            Some(row) => which.merge(row.get(0), &doc)?,
        };
        execute!(
            self.tx,
            &format!(
                "INSERT INTO {table} (id, doc) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
            ),
            &merged
        )
        .await?;
        self.changed = true;
        Ok(())
    }
}

/// The automerge documents a write merges into.
#[derive(Debug, Clone, Copy)]
enum Doc {
    Holds,
    LocalEntries,
}

impl Doc {
    fn table(self) -> &'static str {
        match self {
            Doc::Holds => "holds",
            Doc::LocalEntries => "local_entries",
        }
    }

    /// `new` merged into `stored`, saved.
    fn merge(self, stored: &[u8], new: &[u8]) -> Result<Vec<u8>, StoreError> {
        let table = self.table();
        let bad = |which: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
            table,
            detail: format!("the {which} document: {e}"),
        };
        fn merged<D: ReplicatedDoc>(
            stored: &[u8],
            new: &[u8],
            bad: impl Fn(&str, &dyn std::fmt::Display) -> StoreError,
        ) -> Result<Vec<u8>, StoreError> {
            let mut doc = D::load(stored).map_err(|e| bad("stored", &e))?;
            doc.merge_bytes(new, UnixMillis::now())
                .map_err(|e| bad("new or merged", &e))?;
            Ok(doc.save())
        }
        match self {
            Doc::Holds => merged::<alpr_shared::control::holds_doc::HoldsDoc>(stored, new, bad),
            Doc::LocalEntries => {
                merged::<alpr_shared::hotlist::local::LocalEntriesDoc>(stored, new, bad)
            }
        }
    }
}
