//! What one node, and all of them together, may hold in the hub: bytes in
//! flight (QUIC receive windows; frames being read, verified and queued
//! for the writer) and the node's share of the writer's queue. A frame's
//! announced size is reserved against its node's budget and the hub's
//! before its body is read, and released only after the commit that holds
//! it, so a node with many streams or huge frames waits for its own
//! budget instead of taking the hub's memory or every queue slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use alpr_shared::types::DeviceId;
use alpr_shared::wire::quic::{self, ReadFrameError, ReceiveWindows};
use alpr_shared::wire::{Frame, MAX_IMAGE_FRAME};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HubConfig;
use crate::ingest::Hold;

/// QUIC flow control towards the hub, per node connection: what a node
/// may send before the hub reads it. The connection's window holds every
/// stream's full window: streams waiting for the node's budget must not
/// take the window the stream holding it needs to finish its frame.
pub const WINDOWS: ReceiveWindows = ReceiveWindows {
    stream: STREAM_WINDOW,
    connection: STREAM_WINDOW * (BIDI_STREAMS + 1),
    bidi_streams: BIDI_STREAMS,
};
const STREAM_WINDOW: u32 = 512 * 1024;
const BIDI_STREAMS: u32 = 8;

/// Ops one node may have waiting in the writer's queue (of 1024), at most.
pub const NODE_QUEUED_OPS: usize = 64;

/// What a frame of `len` bytes is charged: the body, and its decoded copy
/// while both are alive.
fn charge(len: usize) -> usize {
    len.saturating_mul(2)
}

/// Check the limits of `config`: each must let the hub work.
pub fn check(config: &HubConfig) -> anyhow::Result<()> {
    let frame = charge(MAX_IMAGE_FRAME);
    anyhow::ensure!(
        config.max_connections >= 1,
        "max_connections must be at least 1"
    );
    anyhow::ensure!(
        config.max_handshakes >= 1,
        "max_handshakes must be at least 1"
    );
    anyhow::ensure!(
        !config.handshake_timeout.is_zero(),
        "handshake_timeout must be more than 0s"
    );
    anyhow::ensure!(
        config.node_buffer_bytes >= frame,
        "node_buffer_bytes must hold two image frames ({frame} bytes), not {}",
        config.node_buffer_bytes
    );
    anyhow::ensure!(
        config.buffer_bytes >= config.node_buffer_bytes,
        "buffer_bytes ({}) must be at least node_buffer_bytes ({})",
        config.buffer_bytes,
        config.node_buffer_bytes
    );
    anyhow::ensure!(
        config.db_cache_bytes >= 1024 * 1024,
        "db_cache_bytes must be at least 1 MiB, not {}",
        config.db_cache_bytes
    );
    anyhow::ensure!(
        u32::try_from(config.buffer_bytes).is_ok(),
        "buffer_bytes must be below 4 GiB"
    );
    Ok(())
}

/// The hub's memory budget and each connected node's share of it.
#[derive(Debug)]
pub struct Budgets {
    global: Arc<Semaphore>,
    node_bytes: usize,
    nodes: Mutex<HashMap<DeviceId, Weak<NodeBudget>>>,
}

impl Budgets {
    pub fn new(config: &HubConfig) -> Self {
        Budgets {
            global: Arc::new(Semaphore::new(config.buffer_bytes)),
            node_bytes: config.node_buffer_bytes.min(config.buffer_bytes),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// The budget of `node`, shared by all its connections and streams.
    pub fn node(&self, node: &DeviceId) -> Arc<NodeBudget> {
        let Ok(mut nodes) = self.nodes.lock() else {
            return Arc::new(self.fresh());
        };
        if let Some(b) = nodes.get(node).and_then(Weak::upgrade) {
            return b;
        }
        nodes.retain(|_, w| w.strong_count() > 0);
        let b = Arc::new(self.fresh());
        nodes.insert(node.clone(), Arc::downgrade(&b));
        b
    }

    fn fresh(&self) -> NodeBudget {
        NodeBudget {
            global: self.global.clone(),
            bytes: Arc::new(Semaphore::new(self.node_bytes)),
            capacity: self.node_bytes,
            ops: Arc::new(Semaphore::new(NODE_QUEUED_OPS)),
        }
    }
}

/// One node's share: bytes of frames in the hub, and queued writer ops.
#[derive(Debug)]
pub struct NodeBudget {
    global: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    capacity: usize,
    ops: Arc<Semaphore>,
}

/// Permits held by a frame until its write is committed.
#[derive(Debug, Default)]
pub struct FrameHold(Vec<OwnedSemaphorePermit>);

impl FrameHold {
    pub fn with(mut self, p: Option<OwnedSemaphorePermit>) -> Self {
        self.0.extend(p);
        self
    }

    pub fn boxed(self) -> Option<Hold> {
        Some(Box::new(self))
    }
}

impl NodeBudget {
    /// Read one frame, its announced size reserved against this node's
    /// budget and then the hub's before the body is read. The permits come
    /// back with the frame; keep them until its write is committed.
    pub async fn read_frame(
        &self,
        recv: &mut quinn::RecvStream,
        max: usize,
    ) -> Result<(Frame, FrameHold), ReadFrameError> {
        let len = quic::read_frame_len(recv, max).await?;
        let want = charge(len).clamp(1, self.capacity);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let mut hold = FrameHold::default();
        // Node first, then the hub: a node waits on its own share before
        // it competes with the others. Closed semaphores never happen (they
        // are never closed); reading on without a permit is then harmless.
        hold = hold.with(self.bytes.clone().acquire_many_owned(want).await.ok());
        hold = hold.with(self.global.clone().acquire_many_owned(want).await.ok());
        let frame = quic::read_frame_body(recv, len, max).await?;
        Ok((frame, hold))
    }

    /// A slot in the writer's queue for one op of this node; waits while
    /// the node has [`NODE_QUEUED_OPS`] queued.
    pub async fn op_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.ops.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_useless_limits_are_refused() {
        let ok = HubConfig::default();
        check(&ok).expect("defaults work");
        for bad in [
            HubConfig {
                max_connections: 0,
                ..HubConfig::default()
            },
            HubConfig {
                max_handshakes: 0,
                ..HubConfig::default()
            },
            HubConfig {
                handshake_timeout: std::time::Duration::ZERO,
                ..HubConfig::default()
            },
            HubConfig {
                node_buffer_bytes: 1024,
                ..HubConfig::default()
            },
        ] {
            assert!(check(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn a_node_shares_one_budget_across_its_connections() {
        let b = Budgets::new(&HubConfig::default());
        let d = DeviceId::new("p-1").expect("valid");
        let one = b.node(&d);
        let two = b.node(&d);
        assert!(Arc::ptr_eq(&one, &two));
        let mut slots = Vec::new();
        for _ in 0..NODE_QUEUED_OPS {
            slots.push(one.op_slot().await);
        }
        assert_eq!(one.ops.available_permits(), 0);
        assert_eq!(
            b.node(&DeviceId::new("p-2").expect("valid"))
                .ops
                .available_permits(),
            NODE_QUEUED_OPS,
            "another node keeps its share"
        );
    }
}
