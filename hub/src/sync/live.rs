//! The nodes connected now: one live connection per node (a newer one
//! replaces the older), how often each node's connections replaced one
//! another lately, and what a revocation does to them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use alpr_shared::cert::Revocation;
use alpr_shared::sync::HubSession;
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::{Refusal, RefusalCode};
use tracing::warn;

use super::{REPLACEMENTS_FOR_CONFLICT, REPLACEMENT_WINDOW};
use crate::config::normalise_serial;
use crate::hub::LiveNodes;

/// A node's live connection.
pub(super) struct Live {
    pub(super) conn: quinn::Connection,
    /// The serial of the certificate it authenticated with.
    pub(super) serial: String,
    pub(super) session: Arc<Mutex<HubSession>>,
}

/// The live connections by node, kept by the QUIC driver and seen by the
/// rest of the hub as [`LiveNodes`].
#[derive(Default)]
pub struct Connections {
    connections: Mutex<HashMap<DeviceId, Live>>,
    /// When each node's connections replaced one another lately: two live
    /// devices with one certificate keep doing it.
    replacements: Mutex<HashMap<DeviceId, VecDeque<Instant>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connections(..)")
    }
}

impl Connections {
    /// Keep `live` as `name`'s connection; the one it replaces, if any.
    pub(super) fn insert(&self, name: &DeviceId, live: Live) -> Option<Live> {
        self.connections
            .lock()
            .ok()
            .and_then(|mut m| m.insert(name.clone(), live))
    }

    /// Forget `name`'s connection if it is still `conn` (not a newer one).
    pub(super) fn remove(&self, name: &DeviceId, conn: &quinn::Connection) {
        if let Ok(mut m) = self.connections.lock() {
            if m.get(name)
                .is_some_and(|l| l.conn.stable_id() == conn.stable_id())
            {
                m.remove(name);
            }
        }
    }

    /// Count one replacement of `name`'s connection; `Some(count)` when they
    /// come often enough to mean two devices (then the count starts again).
    pub(super) fn count_replacement(&self, name: &DeviceId) -> Option<usize> {
        let mut m = self.replacements.lock().ok()?;
        let now = Instant::now();
        let times = m.entry(name.clone()).or_default();
        times.push_back(now);
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > REPLACEMENT_WINDOW)
        {
            times.pop_front();
        }
        (times.len() >= REPLACEMENTS_FOR_CONFLICT).then(|| {
            let n = times.len();
            times.clear();
            n
        })
    }
}

impl LiveNodes for Connections {
    fn names(&self) -> Vec<String> {
        self.connections
            .lock()
            .map(|m| m.keys().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.connections.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn revoke(&self, r: &Revocation, now: UnixMillis) -> Vec<(DeviceId, SocketAddr, Refusal)> {
        let live: Vec<(DeviceId, quinn::Connection, String, Arc<Mutex<HubSession>>)> = self
            .connections
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(d, l)| {
                        (
                            d.clone(),
                            l.conn.clone(),
                            l.serial.clone(),
                            l.session.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut closed = Vec::new();
        for (device, conn, serial, session) in live {
            if let Ok(mut s) = session.lock() {
                s.revoke(&r.serial, r.effective_at);
            }
            if normalise_serial(&serial) == r.serial && r.effective_at <= now {
                warn!(node = %device, serial = %r.serial, reason = %r.reason, "certificate revoked: closing the node's connection");
                let refusal = Refusal {
                    code: RefusalCode::Revoked,
                    seq: None,
                    detail: format!(
                        "certificate {} revoked from {} ({}); connection closed",
                        r.serial, r.effective_at, r.reason
                    ),
                };
                conn.close(
                    RefusalCode::Revoked.close_code().into(),
                    refusal.detail.as_bytes(),
                );
                closed.push((device, conn.remote_address(), refusal));
            }
        }
        closed
    }
}
