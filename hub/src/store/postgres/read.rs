//! Reads of the hub's records on PostgreSQL, and the [`HubStorage`]
//! implementation of [`PgStore`].

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};

use super::PgStore;
use crate::store::*;

#[allow(unused_variables)]
impl HubStorage for PgStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        Err(StoreError::Db("not yet".into()))
    }

    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError> {
        Err(StoreError::Db("not yet: node".into()))
    }

    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError> {
        Err(StoreError::Db("not yet: nodes".into()))
    }

    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError> {
        Err(StoreError::Db("not yet: checkpoint".into()))
    }

    fn certificate(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: certificate".into()))
    }

    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError> {
        Err(StoreError::Db("not yet: certificates".into()))
    }

    fn revocations(&self) -> Result<Vec<alpr_shared::cert::Revocation>, StoreError> {
        Err(StoreError::Db("not yet: revocations".into()))
    }

    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: entries".into()))
    }

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        Err(StoreError::Db("not yet: refusals".into()))
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        Err(StoreError::Db("not yet: source_refusals".into()))
    }

    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        Err(StoreError::Db("not yet: reads_of_plate".into()))
    }

    fn plates_from(&self, first: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        Err(StoreError::Db("not yet: plates_from".into()))
    }

    fn plate_count(&self, plate: &str) -> Result<u64, StoreError> {
        Err(StoreError::Db("not yet: plate_count".into()))
    }

    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<IndexedRead>, StoreError> {
        Err(StoreError::Db("not yet: reads_of_plates".into()))
    }

    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        limit: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError> {
        Err(StoreError::Db("not yet: reads_in_box".into()))
    }

    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Err(StoreError::Db("not yet: entries_at".into()))
    }

    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: image".into()))
    }

    fn hub_access_entries(&self, first: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: hub_access_entries".into()))
    }

    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError> {
        Err(StoreError::Db("not yet: hub_access_head".into()))
    }

    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: policy".into()))
    }

    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        Err(StoreError::Db("not yet: policy_seed".into()))
    }

    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        Err(StoreError::Db("not yet: node_policies".into()))
    }

    fn node_hotlists(&self) -> Result<Vec<(DeviceId, NodeLists)>, StoreError> {
        Err(StoreError::Db("not yet: node_hotlists".into()))
    }

    fn user(&self, username: &str) -> Result<Option<crate::users::UserRecord>, StoreError> {
        Err(StoreError::Db("not yet: user".into()))
    }

    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: holds_doc".into()))
    }

    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: local_entries_doc".into()))
    }

    fn users(&self) -> Result<Vec<crate::users::UserRecord>, StoreError> {
        Err(StoreError::Db("not yet: users".into()))
    }

    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        Err(StoreError::Db("not yet: reads_per_hour".into()))
    }

    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        Err(StoreError::Db("not yet: node_accesses".into()))
    }

    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError> {
        Err(StoreError::Db("not yet: store_generation".into()))
    }

    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Db("not yet: generation_bytes".into()))
    }

    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError> {
        Err(StoreError::Db("not yet: generation_records".into()))
    }

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        Err(StoreError::Db("not yet: has_image".into()))
    }

    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<AlertIndexRow>, StoreError> {
        Err(StoreError::Db("not yet: alerts".into()))
    }

    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, HubAlert)>, StoreError> {
        Err(StoreError::Db("not yet: hub_alerts".into()))
    }

    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError> {
        Err(StoreError::Db("not yet: hub_dispositions".into()))
    }

    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError> {
        Err(StoreError::Db("not yet: alert".into()))
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::users::SessionRecord>, StoreError> {
        Err(StoreError::Db("not yet: session".into()))
    }

    fn lease_node(&self, device: &DeviceId) -> Result<Option<NodeLease>, StoreError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| StoreError::Db("the database runtime stopped".into()))?;
        self.leases.lease(rt, device)
    }

    fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.watch())
    }
}
