//! Bulk lists on the sync link, the driver's side: what a session needs of
//! the hub's lists ([`HotlistFeed`], which `HotlistService` provides), and
//! how a [`HubOutput::SendHotlist`](alpr_shared::sync::HubOutput) becomes
//! frames: the delta if the hub has one from the node's generation that
//! fits a frame, else the generation whole in chunks of at most
//! [`MAX_HOTLIST_CHUNK`], made one at a time as the stream drains.

use std::sync::Arc;

use alpr_shared::hotlist::generation::Generation;
use alpr_shared::wire::{full_generation_frames, Frame, MAX_HOTLIST_CHUNK};
use tokio::sync::watch;

/// The latest generation of each source.
pub type GenerationSet = Arc<Vec<Arc<Generation>>>;

/// What sync needs of the hub's bulk lists.
pub trait HotlistFeed: Send + Sync {
    /// The latest generation of each source, published after a durable import.
    fn watch(&self) -> watch::Receiver<GenerationSet>;
    /// Generation `number` of `source`, if the hub holds it.
    fn generation(&self, source: &str, number: u64) -> anyhow::Result<Option<Arc<Generation>>>;
    /// The delta from generation `from` to `to` of `source`; `None` when the
    /// hub has none (too far behind, or unknown): the list goes whole.
    fn delta(&self, source: &str, from: u64, to: u64) -> anyhow::Result<Option<Arc<Vec<u8>>>>;
}

/// No bulk lists (tools and tests without an import service).
pub struct NoHotlists(watch::Sender<GenerationSet>);

impl Default for NoHotlists {
    fn default() -> Self {
        NoHotlists(watch::Sender::new(Arc::new(Vec::new())))
    }
}

impl HotlistFeed for NoHotlists {
    fn watch(&self) -> watch::Receiver<GenerationSet> {
        self.0.subscribe()
    }
    fn generation(&self, _: &str, _: u64) -> anyhow::Result<Option<Arc<Generation>>> {
        Ok(None)
    }
    fn delta(&self, _: &str, _: u64, _: u64) -> anyhow::Result<Option<Arc<Vec<u8>>>> {
        Ok(None)
    }
}

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
    /// Decide (blocking: the service may read its store or compute a delta).
    pub fn make(
        feed: &dyn HotlistFeed,
        source: &str,
        from: Option<u64>,
        to: u64,
    ) -> anyhow::Result<Option<Plan>> {
        if let Some(from) = from {
            if let Some(delta) = feed.delta(source, from, to)? {
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
        Ok(feed.generation(source, to)?.map(Plan::Whole))
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
