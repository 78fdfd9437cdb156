//! Ingest: the single writer that turns verified batches into durable
//! commits. Connections verify signatures in parallel (see
//! [`alpr_shared::sync::verify_batch`]) and queue their batches a few frames
//! ahead of the commits ([`Writer::enqueue`]), so verification on the other
//! cores overlaps the writer's work; this actor batches whatever is waiting
//! — many connections' batches, contacts, images, refusals — into one
//! transaction, commits it durably, and only then answers each request, so
//! a receipt is never signed for something that is not on disk.
//!
//! A transaction is bounded by count and time: when requests were already
//! waiting as the last commit ended (the writer is the bottleneck), a batch
//! of entries below [`WriterConfig::min_batch`] waits up to
//! [`WriterConfig::linger`] for more, since every commit pays a flush of the
//! pages it dirtied whatever its size. Under light load nothing waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{HubStorage, WriteOp, WriteResult};

/// Counters the hub exposes (refusals, throughput).
#[derive(Debug, Default)]
pub struct Metrics {
    pub entries_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub refusals: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub commits: AtomicU64,
    /// Time spent in durable commits, in microseconds.
    pub commit_micros: AtomicU64,
    pub images_stored: AtomicU64,
    /// Refusals counted by kind (a refusal code, or a limit such as
    /// `connection-limit`), since start.
    pub refusals_by_kind: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Count one refusal of `kind` (and in the total).
    pub fn count_refusal(&self, kind: &str) {
        Metrics::add(&self.refusals, 1);
        if let Ok(mut m) = self.refusals_by_kind.lock() {
            *m.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Refusals since start, by kind.
    pub fn refusals_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        self.refusals_by_kind
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Something held until the op it came with is committed (a share of a
/// node's memory or queue budget), then released.
pub type Hold = Box<dyn std::any::Any + Send>;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the writer has stopped")]
    Stopped,
    #[error("storage failed: {0}")]
    Storage(String),
}

struct Request {
    op: WriteOp,
    weight: usize,
    /// May wait (up to the linger) for others to share its commit.
    lingers: bool,
    reply: oneshot::Sender<Result<WriteResult, String>>,
    /// Released after the commit that holds `op`.
    hold: Option<Hold>,
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer(..)")
    }
}

/// Bounds of one transaction: by count, and by time.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests waiting, at most.
    pub queue: usize,
    /// Entries (or ops) per transaction, at most.
    pub max_batch: usize,
    /// A transaction with fewer entries than this waits for more…
    pub min_batch: usize,
    /// …but its first request waits no longer than this.
    pub linger: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 1024,
            max_batch: 16_384,
            // Each commit costs a flush of every page it dirtied, whatever
            // its size; a few milliseconds of waiting buys several times
            // the rows per flush when many nodes upload at once.
            min_batch: 8_192,
            linger: Duration::from_millis(30),
        }
    }
}

/// Take the next transaction's requests: wait for one, then gather what is
/// queued, and, when `busy` (requests were already waiting as the last
/// commit ended) and below `min_batch`, what arrives within `linger` of the
/// first. Under light load nothing waits.
async fn gather(
    rx: &mut mpsc::Receiver<Request>,
    cfg: &WriterConfig,
    busy: bool,
) -> Option<Vec<Request>> {
    let first = rx.recv().await?;
    let deadline = tokio::time::Instant::now() + cfg.linger;
    let mut weight = first.weight;
    let mut batch = vec![first];
    while weight < cfg.max_batch {
        let next = match rx.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            // Only batches of entries wait: images, hellos and refusals
            // are few, small, and someone is waiting for each.
            Err(mpsc::error::TryRecvError::Empty)
                if busy && weight < cfg.min_batch && batch.iter().all(|r| r.lingers) =>
            {
                tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten()
            }
            Err(mpsc::error::TryRecvError::Empty) => None,
        };
        let Some(r) = next else { break };
        weight += r.weight;
        batch.push(r);
    }
    Some(batch)
}

impl Writer {
    /// Start the writer thread over `storage`. It stops, after committing
    /// what it holds, when every handle is dropped.
    pub fn spawn(
        storage: Arc<dyn HubStorage>,
        metrics: Arc<Metrics>,
        cfg: WriterConfig,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Request>(cfg.queue);
        let join = std::thread::Builder::new()
            .name("hub-writer".into())
            .spawn(move || {
                // Only to wait for requests with a time bound; commits run
                // outside it, on this thread.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime for the writer's timer");
                let mut busy = false;
                while let Some(batch) = rt.block_on(gather(&mut rx, &cfg, busy)) {
                    let mut holds = Vec::with_capacity(batch.len());
                    let (ops, replies): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .map(|r| {
                            holds.push(r.hold);
                            (r.op, r.reply)
                        })
                        .unzip();
                    let started = std::time::Instant::now();
                    let committed = storage.commit(ops);
                    Metrics::add(
                        &metrics.commit_micros,
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
                    busy = !rx.is_empty();
                    match committed {
                        Ok(results) => {
                            Metrics::add(&metrics.commits, 1);
                            for (res, reply) in results.into_iter().zip(replies) {
                                if let WriteResult::Ingested(Ok(i)) = &res {
                                    Metrics::add(&metrics.entries_stored, i.appended as u64);
                                    Metrics::add(&metrics.duplicates, i.duplicates as u64);
                                }
                                if let WriteResult::Image(true) = res {
                                    Metrics::add(&metrics.images_stored, 1);
                                }
                                let _ = reply.send(Ok(res));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "commit failed; the batch is not acknowledged");
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                    drop(holds);
                }
            })
            .expect("spawning the writer thread");
        (Writer { tx }, join)
    }

    /// Resolves when the writer thread has ended (it only ends on its own
    /// if it died: every handle is still held while the hub serves).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Submit one op; resolves after the durable commit that includes it.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteResult, IngestError> {
        self.enqueue(op).await?.committed().await
    }

    /// Queue one op (waiting only for room in the queue) and return what
    /// resolves after its commit: a caller may verify its next batch while
    /// this one is written. Ops are applied in the order they are queued.
    pub async fn enqueue(&self, op: WriteOp) -> Result<Pending, IngestError> {
        self.enqueue_holding(op, None).await
    }

    /// [`Writer::enqueue`], keeping `hold` until the op is committed (or
    /// failed): a node's budget stays taken while its op waits in the
    /// queue, even if the node has gone.
    pub async fn enqueue_holding(
        &self,
        op: WriteOp,
        hold: Option<Hold>,
    ) -> Result<Pending, IngestError> {
        let weight = match &op {
            WriteOp::Ingest { entries, .. } => entries.len().max(1),
            _ => 1,
        };
        let lingers = matches!(op, WriteOp::Ingest { .. });
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                op,
                weight,
                lingers,
                reply,
                hold,
            })
            .await
            .map_err(|_| IngestError::Stopped)?;
        Ok(Pending(rx))
    }
}

/// A queued op's result, available after the durable commit that holds it.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<WriteResult, String>>);

impl Pending {
    pub async fn committed(self) -> Result<WriteResult, IngestError> {
        self.0
            .await
            .map_err(|_| IngestError::Stopped)?
            .map_err(IngestError::Storage)
    }
}
