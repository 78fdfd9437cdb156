//! The storage seam split by concern, as TiKV's `engine_traits` splits
//! its engine: each trait holds what one part of the hub keeps, and
//! [`super::HubStorage`] is all of them plus the batched write.

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};

use super::records::{
    AlertIndexRow, GeoBox, HubAlert, HubDisposition, IndexedRead, MissingImages, NodeCert,
    NodeLists, NodeRecord, PlacedReads, RefusalRecord, SourceRefusalRecord, StoreError,
};

/// Nodes and their chains: each node's record, its signed log (entries,
/// checkpoints), the certificates it has held, revocations, and the
/// refusals the hub logged.
pub trait ChainStore {
    /// A node's record, if it ever connected.
    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError>;
    /// All nodes, by name.
    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError>;
    /// The latest checkpoint the node signed and the hub checked.
    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError>;
    /// The certificate (DER) in force for the node's latest entries (or,
    /// before any took effect, the one most recently seen).
    fn certificate(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        let certs = self.certificates(device)?;
        let latest = certs
            .iter()
            .rfind(|c| c.effective_from.is_some())
            .or_else(|| certs.iter().max_by_key(|c| c.first_seen));
        Ok(latest.map(|c| c.der.clone()))
    }
    /// Every certificate the node has held, oldest first. (No default:
    /// a wrapper that forgot to forward it would serve a wrong history.)
    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError>;
    /// Every certificate of each of `devices` ([`ChainStore::certificates`]),
    /// in order, in one question where the store can.
    fn certificates_of(&self, devices: &[DeviceId]) -> Result<Vec<Vec<NodeCert>>, StoreError> {
        devices.iter().map(|d| self.certificates(d)).collect()
    }
    /// Revocations recorded at the hub, with the time each took effect.
    fn revocations(&self) -> Result<Vec<alpr_shared::cert::Revocation>, StoreError>;
    /// Canonical bytes of a device's entries from `first`, at most `limit`.
    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Canonical bytes of the given entries (`None`: not stored), in order,
    /// read in one transaction.
    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Canonical bytes of the entries of reads found through an index
    /// (`None`: not stored), in order. The capture time lets a store whose
    /// entries are partitioned by it look in one partition.
    fn entries_of_reads(&self, reads: &[IndexedRead]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let at: Vec<(DeviceId, u64)> = reads.iter().map(|r| (r.device.clone(), r.seq)).collect();
        self.entries_at(&at)
    }
    /// The most recent refusals, newest last.
    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError>;
    /// The most recent refusals of unauthenticated sources, newest last.
    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError>;
}

/// The access logs: the hub's own ([`crate::access`]) and the index of
/// nodes' access entries.
pub trait AccessLogStore {
    /// Canonical bytes of the hub's own access log from `first`, at most
    /// `limit` ([`crate::access`]).
    fn hub_access_entries(&self, first: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The hub's access log: its size and the hash of its last entry.
    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError>;
    /// Access entries of nodes (`EntryKind::Access` in their logs) whose
    /// time is in [from, to], as (node, seq) in time order, at most `limit`
    /// (index `node-access-v1`, written at ingest).
    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError>;
}

/// Accounts and sessions ([`crate::users`]): users, their signing keys,
/// sessions, and the login throttle's failures and locks.
pub trait AccountStore {
    /// A user account by username ([`crate::users`]).
    fn user(&self, username: &str) -> Result<Option<crate::store::UserRecord>, StoreError>;
    /// Every user account, by username.
    fn users(&self) -> Result<Vec<crate::store::UserRecord>, StoreError>;
    /// Every signing key of every user ([`WriteOp::UserKey`]), as
    /// (username, key), by username.
    fn user_keys(&self) -> Result<Vec<(String, crate::store::UserKey)>, StoreError>;
    /// The session kept under the SHA-256 of its token.
    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::store::SessionRecord>, StoreError>;
    /// Failed logins counted against `key` at or after `since`
    /// ([`WriteOp::LoginFailure`]).
    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError>;
    /// When `key`'s lock ends, if one is kept (it may have ended).
    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError>;
}

/// Control documents: the hub's signed policy and what each node holds
/// of it, the legal holds document and the local hotlist entries document.
pub trait ControlStore {
    /// The latest signed policy (encoded [`alpr_shared::control::SignedPolicy`]).
    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The hash of the `[policy]` configuration the latest version made
    /// from the configuration was made from.
    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError>;
    /// The policy version each node last said it holds or enforces.
    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError>;
    /// The saved legal holds document ([`crate::holds`]), if any.
    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The saved local hotlist entries document
    /// ([`crate::hotlist::local`]), if any.
    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Bulk hotlist generations ([`crate::hotlist`]), their floors, and the
/// lists each node holds.
pub trait HotlistStore {
    /// Keep generation `number` of the bulk list `source` ([`crate::hotlist`]):
    /// its signed bytes and its import record, in one durable transaction;
    /// then drop that source's generation bytes older than the last `keep`
    /// (import records stay: they are the list's history).
    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError>;
    /// The signed bytes of generation `number` of `source`, if still kept.
    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every import record of `source`, by generation number, and whether
    /// that generation's bytes are still kept.
    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError>;
    /// The highest generation number of `source` learned from a node
    /// ([`WriteOp::GenerationFloor`]); 0 if none.
    fn generation_floor(&self, source: &str) -> Result<u64, StoreError>;
    /// The bulk lists each node last said it holds.
    fn node_hotlists(&self) -> Result<Vec<(DeviceId, NodeLists)>, StoreError>;
}

/// Alerts: the index of alerts in nodes' logs, the past matches the hub
/// found and the disposition stages recorded at the hub.
pub trait AlertStore {
    /// Alerts raised in nodes' logs (of `node` only, if given), by node
    /// then sequence, at most `limit` (index `alerts-v1`, written at
    /// ingest with each disposition stage).
    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<AlertIndexRow>, StoreError>;
    /// One alert of a node's log, if indexed.
    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError>;
    /// Past matches the hub found, newest first, at most `limit`: (number,
    /// alert).
    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, HubAlert)>, StoreError>;
    /// Disposition stages recorded at the hub, in the order recorded, as
    /// (alert id, stage): of the alert `alert` (`node#seq` or `hub#N`)
    /// only, if given; else of every alert.
    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError>;
}

/// Search indexes over the stored reads ([`crate::search`]): by plate, by
/// place and time, and reads per hour.
pub trait SearchStore {
    /// (device, seq) of reads of `plate` captured in [from, to].
    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError>;
    /// Distinct plates of stored reads in the order they were first seen,
    /// from ordinal `first` (ordinals are 0, 1, 2, … with no gaps), at most
    /// `limit`: a search index loads them once, then only what is new.
    fn plates_from(&self, first: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError>;
    /// How many stored reads carry `plate` (0 if none).
    fn plate_count(&self, plate: &str) -> Result<u64, StoreError>;
    /// Reads of any of `plates` captured in [from, to], at most `limit`,
    /// plate by plate, each plate's in time order (one range scan each).
    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<IndexedRead>, StoreError>;
    /// Reads captured in [from, to] (of `node` only, if given) whose
    /// coordinates lie in the index cells covering `area`, at most `limit`;
    /// and how many reads of that window (and node) carry no coordinates
    /// (with `list_unplaced`, which: at most `limit`).
    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        limit: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError>;
    /// Reads stored per hour of capture (hour = captured_at / 3 600 000),
    /// for hours `first..=last` that have any: (hour, reads). Counted at
    /// ingest; a purge does not lower them.
    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError>;
}

/// The images reads name, by hash.
pub trait ImageStore: ChainStore {
    /// An image's bytes, if held.
    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether an image is held.
    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError>;
    /// Whether each image is held ([`ImageStore::has_image`]), in order.
    fn images_held(&self, hashes: &[Hash32]) -> Result<Vec<bool>, StoreError> {
        hashes.iter().map(|h| self.has_image(h)).collect()
    }
    /// Images named by the device's reads `from..to` (content held) that the
    /// hub lacks, in log order, at most `limit`; and where the search
    /// stopped (`to`, or the entry after the last one looked at when the
    /// list filled up). An empty image names nothing to store.
    fn missing_images(
        &self,
        device: &DeviceId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<MissingImages, StoreError> {
        const PAGE: usize = 1024;
        let none = alpr_shared::crypto::sha256(&[]);
        let mut out = MissingImages {
            images: Vec::new(),
            scanned_to: to,
        };
        let mut next = from;
        while next < to {
            let page = self.entries(device, next, PAGE)?;
            let full = page.len() == PAGE;
            let entries = page
                .iter()
                .map(|b| {
                    alpr_shared::log::SignedEntry::decode(b).map_err(|e| StoreError::Corrupt {
                        table: "entries",
                        detail: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The page's images asked about at once, not one by one.
            let named: Vec<Hash32> = entries
                .iter()
                .filter_map(|e| e.read())
                .flat_map(|r| [r.crop_hash, r.overview_hash])
                .collect();
            let held: std::collections::HashSet<Hash32> = named
                .iter()
                .zip(self.images_held(&named)?)
                .filter_map(|(h, held)| held.then_some(*h))
                .collect();
            for e in &entries {
                let seq = e.seq();
                if seq >= to {
                    return Ok(out);
                }
                next = seq + 1;
                let Some(r) = e.read() else { continue };
                if out.images.len() + 2 > limit {
                    out.scanned_to = seq;
                    return Ok(out);
                }
                let mut hashes = vec![r.crop_hash];
                if r.overview_hash != r.crop_hash {
                    hashes.push(r.overview_hash);
                }
                for h in hashes {
                    if h != none && !held.contains(&h) {
                        out.images.push((seq, h));
                    }
                }
            }
            if entries.is_empty() || !full {
                break;
            }
        }
        Ok(out)
    }
}
