//! Changes other hub processes make to the shared documents (policy,
//! holds, local entries, hotlist generations, users) reach this one: a
//! `LISTEN` on a dedicated connection, and a poll of the change counter
//! as a fallback (a notification is lost while that connection is down).

use super::PgConfig;

/// The change counter as this process last saw it.
pub(super) struct Changes {
    rx: tokio::sync::watch::Receiver<u64>,
    _tx: tokio::sync::watch::Sender<u64>,
    _config: PgConfig,
}

impl Changes {
    pub(super) async fn start(config: PgConfig) -> anyhow::Result<Self> {
        let (tx, rx) = tokio::sync::watch::channel(0);
        Ok(Changes {
            rx,
            _tx: tx,
            _config: config,
        })
    }

    pub(super) fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rx.clone()
    }
}
