//! The hub's QUIC driver around [`alpr_shared::sync::HubSession`]: accept
//! connections (with a limit), authenticate nodes by their certificate
//! (deployment CA, node rules, revocation), keep one connection per node,
//! and run each stream's frames through the session, the verifier and the
//! writer. Refusals are logged with their reason, counted, and stored.
//!
//! The driver is given the running [`Hub`] by the composition root
//! (`serve`) and keeps its own state: the live connections
//! ([`Connections`], which the hub sees as its
//! [`LiveNodes`](crate::hub::LiveNodes)) and the limits on what nodes hold.

mod connection;
pub mod follow;
mod held;
pub mod hotlists;
pub mod limits;
mod live;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use alpr_shared::wire::quic;
use alpr_shared::wire::ALPN;
use tokio::sync::Semaphore;

use crate::config::HubConfig;
use crate::hub::Hub;
use crate::refusals::kind;

pub use live::Connections;

/// This many replacements of one identity's connection within
/// [`REPLACEMENT_WINDOW`] mean two devices share it.
pub const REPLACEMENTS_FOR_CONFLICT: usize = 3;
pub const REPLACEMENT_WINDOW: Duration = Duration::from_secs(60);

/// Entries the hub admits at once, over all connections. Ingest is bound
/// by signature checks, not by the writer, so a short queue costs no
/// throughput (`alpr-bench hub ingest --admit N`: 4k to 32k gave the same
/// reads/s) and keeps the acknowledgement of an admitted frame prompt.
pub const ADMITTED_ENTRIES: usize = 4_096;

/// Frames of one stream whose writes are queued ahead of their commits: a
/// node's next batch is verified while the previous one is written.
pub const PIPELINE: usize = 4;

/// Connection close code: the hub is at its connection limit; try later.
pub const CLOSE_BUSY: u32 = quic::CLOSE_BUSY;

/// How many frames are verified at once: one per core.
pub fn verify_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The QUIC endpoint nodes connect to: mutual TLS with the deployment's
/// CA, the sync protocol's ALPN, keep-alives and the flow-control windows
/// of [`limits::WINDOWS`].
pub fn endpoint(
    config: &HubConfig,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<quinn::Endpoint> {
    use anyhow::Context;
    let liveness = quic::Liveness {
        keep_alive: config.keep_alive,
        idle_timeout: config.idle_timeout,
    };
    let mut server = quic::server_config(ca_pem, cert_pem, key_pem, &[ALPN], liveness)?;
    quic::bound_receive(&mut server, liveness, limits::WINDOWS);
    quinn::Endpoint::server(server, config.listen)
        .with_context(|| format!("listening on {}", config.listen))
}

/// The driver: the hub, the live connections, and the limits every
/// connection task shares.
pub struct Driver {
    hub: Arc<Hub>,
    live: Arc<Connections>,
    /// Frames being verified at once, at most: one per core, so signature
    /// checks of many connections do not crowd out the writer's thread.
    verify_slots: Arc<Semaphore>,
    /// Entries admitted (being verified, queued or committed) at once, at
    /// most ([`ADMITTED_ENTRIES`]): beyond it frames wait in their streams,
    /// so what is admitted is acknowledged promptly.
    admission: Arc<Semaphore>,
    /// Each node's share of the hub's memory and writer queue.
    budgets: limits::Budgets,
    /// Handshakes take from their own budget, and only for as long as they
    /// last; a node's permit is taken once it has authenticated, so peers
    /// that never finish a handshake cannot lock enrolled nodes out.
    handshakes: Arc<Semaphore>,
    gate: Gate,
    tasks: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver(..)")
    }
}

/// The accept loop's limits on what passed the handshake.
#[derive(Clone)]
struct Gate {
    /// Permits of authenticated node connections (`max_connections`).
    nodes: Arc<Semaphore>,
    handshake_timeout: std::time::Duration,
}

impl Driver {
    /// The driver of `hub`'s node connections, keeping them in `live` (the
    /// hub's [`LiveNodes`](crate::hub::LiveNodes)), with `config`'s limits.
    pub fn new(hub: Arc<Hub>, live: Arc<Connections>, config: &HubConfig) -> Arc<Self> {
        Arc::new(Driver {
            hub,
            live,
            verify_slots: Arc::new(Semaphore::new(verify_slots())),
            admission: Arc::new(Semaphore::new(ADMITTED_ENTRIES)),
            budgets: limits::Budgets::new(config),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
            gate: Gate {
                nodes: Arc::new(Semaphore::new(config.max_connections)),
                handshake_timeout: config.handshake_timeout,
            },
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Take one incoming connection: refused at once when too many
    /// handshakes are in progress, else served on a task of its own.
    pub fn accept(self: &Arc<Self>, incoming: quinn::Incoming) {
        let Ok(handshake) = self.handshakes.clone().try_acquire_owned() else {
            let peer = incoming.remote_address();
            incoming.refuse();
            let hub = self.hub.clone();
            self.tasks.spawn(async move {
                let detail = "too many handshakes in progress";
                hub.refuse_as(None, peer, kind::HANDSHAKE_LIMIT, None, detail)
                    .await;
            });
            return;
        };
        let driver = self.clone();
        self.tasks.spawn(async move {
            connection::handle_incoming(driver, incoming, handshake).await;
        });
    }

    /// Wait for every connection task to end (the hub is shutting down).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
