//! Bulk lists on the sync link, the driver's side: how a [`HubOutput::SendHotlist`](alpr_shared::sync::HubOutput) becomes
//! frames: the delta if the hub has one from the node's generation that
//! fits a frame, else the generation whole in chunks of at most
//! [`MAX_HOTLIST_CHUNK`], made one at a time as the stream drains.

use std::sync::Arc;

use alpr_shared::hotlist::generation::Generation;
use alpr_shared::wire::{full_generation_frames, Frame, MAX_HOTLIST_CHUNK};

use crate::hotlist::{HotlistError, HotlistService};

/// The latest generation of each source.
pub type GenerationSet = Arc<Vec<Arc<Generation>>>;

/// (source, number) of each generation in `set`, for the session core.
pub fn summary(set: &GenerationSet) -> Vec<(String, u64)> {
    set.iter()
        .map(|g| (g.info().source.clone(), g.info().number))
        .collect()
}

/// How a list goes to one node.
pub enum Plan {
    Delta(Frame),
    Whole(Arc<Generation>),
}

impl Plan {
    /// Decide: the service reads its store or computes the delta (once
    /// for all nodes: it caches it).
    pub async fn make(
        lists: &HotlistService,
        source: &str,
        from: Option<u64>,
        to: u64,
    ) -> Result<Option<Plan>, HotlistError> {
        if let Some(from) = from {
            if let Some(delta) = lists.delta(source, from, to).await? {
                if delta.len() <= MAX_HOTLIST_CHUNK {
                    return Ok(Some(Plan::Delta(Frame::HotlistDelta {
                        source: source.to_owned(),
                        from,
                        to,
                        delta: delta.as_ref().clone(),
                    })));
                }
            }
        }
        Ok(lists.generation(source, to).await?.map(Plan::Whole))
    }

    /// Hand each frame to `send` in order, stopping at its first error.
    pub async fn send<F, Fut, E>(self, source: &str, to: u64, mut send: F) -> Result<(), E>
    where
        F: FnMut(Frame) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        match self {
            Plan::Delta(f) => send(f).await,
            Plan::Whole(g) => {
                for f in full_generation_frames(source, to, g.bytes()) {
                    send(f).await?;
                }
                Ok(())
            }
        }
    }
}
