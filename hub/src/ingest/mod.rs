//! Ingest: the single writer that turns verified batches into durable
//! commits. Connections verify signatures in parallel (see
//! [`alpr_shared::sync::verify_batch`]); this actor batches whatever is
//! waiting — many connections' batches, contacts, images, refusals — into one
//! transaction, commits it durably, and only then answers each request, so
//! a receipt is never signed for something that is not on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

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
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

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
    reply: oneshot::Sender<Result<WriteResult, String>>,
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

/// Bounds of one transaction.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests waiting, at most.
    pub queue: usize,
    /// Entries (or ops) per transaction, at most.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 1024,
            max_batch: 16_384,
        }
    }
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
                while let Some(first) = rx.blocking_recv() {
                    let mut weight = first.weight;
                    let mut batch = vec![first];
                    while weight < cfg.max_batch {
                        match rx.try_recv() {
                            Ok(r) => {
                                weight += r.weight;
                                batch.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
                    let started = std::time::Instant::now();
                    let committed = storage.commit(ops);
                    Metrics::add(
                        &metrics.commit_micros,
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
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
                }
            })
            .expect("spawning the writer thread");
        (Writer { tx }, join)
    }

    /// Submit one op; resolves after the durable commit that includes it.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteResult, IngestError> {
        let weight = match &op {
            WriteOp::Ingest { entries, .. } => entries.len().max(1),
            _ => 1,
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { op, weight, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        rx.await
            .map_err(|_| IngestError::Stopped)?
            .map_err(IngestError::Storage)
    }
}
