//! The hub's health for machines beyond the ingest counters: whether the
//! database can commit and the disk has room (`/healthz`, `hub health`,
//! and the metrics endpoint's figures).

use std::sync::Arc;

use crate::store::recovering::Recovering;

/// What the hub tracks for its health beyond the ingest counters.
#[derive(Debug, Default)]
pub struct HubHealth {
    /// The database, when it can reopen itself (the served hub).
    storage: Option<Arc<Recovering>>,
}

impl HubHealth {
    pub fn new(storage: Option<Arc<Recovering>>) -> Self {
        HubHealth { storage }
    }

    /// Why the database cannot be used now (it reopens itself).
    pub fn storage_error(&self) -> Option<String> {
        self.storage.as_ref().and_then(|s| s.failing())
    }

    /// Free bytes where the database lives.
    pub fn disk_free(&self) -> Option<u64> {
        self.storage
            .as_ref()
            .and_then(|s| s.path().parent().map(std::path::Path::to_owned))
            .and_then(|p| alpr_shared::health::disk_free(&p))
    }

    /// What is wrong now; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = self.storage_error() {
            out.push(format!("the database cannot commit: {e}"));
        }
        if self.disk_free() == Some(0) {
            out.push("the data folder's disk is full".into());
        }
        out
    }
}
