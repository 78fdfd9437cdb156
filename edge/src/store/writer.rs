//! The store's one writer: typed requests, and the thread that batches them
//! into durable transactions.
//!
//! A request is a value of a type that implements [`Write`]; it travels to
//! the writer with a oneshot for exactly its [`Write::Out`], so a request
//! cannot be answered with another's result. The writer writes every
//! request of a batch into one transaction and answers them only after the
//! commit; a failed commit answers nothing and is retried whole.

use std::sync::atomic::Ordering;
use std::time::Duration;

use alpr_shared::log::LogWriter;
use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot, watch};

use super::db::{disk_position, DbSlot, StoreHealth};
use super::tables::{Batch, Tables};
use super::{db_err, LogStatus, StoreError};

/// What a request's write gives: the outer error fails the whole
/// transaction (it is retried); the inner one refuses this request alone,
/// and the others of the batch go on.
pub(super) type Written<T> = Result<Result<T, StoreError>, StoreError>;

/// A change the writer makes inside a batch's transaction. It may be
/// written more than once (a failed commit is retried), so it reads itself
/// by reference.
pub(super) trait Write: Send + 'static {
    /// What the caller gets back once the change is durable.
    type Out: Send + 'static;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Self::Out>;
}

/// A request on its way to the writer, whatever its type.
pub(super) type Request = Box<dyn Pending>;

/// A request as the writer holds it: write it (again, on a retry), then
/// answer once its transaction committed, or fail it.
pub(super) trait Pending: Send {
    fn write(&mut self, b: &mut Batch<'_, '_>) -> Result<(), StoreError>;
    fn answer(self: Box<Self>);
    fn fail(self: Box<Self>, e: StoreError);
}

/// A request and the reply channel of its own type.
struct Req<W: Write> {
    op: W,
    reply: oneshot::Sender<Result<W::Out, StoreError>>,
    /// The last attempt's result, sent once its transaction commits.
    result: Option<Result<W::Out, StoreError>>,
}

/// Wrap `op` for the writer; the receiver gets its answer.
pub(super) fn request<W: Write>(op: W) -> (Request, oneshot::Receiver<Result<W::Out, StoreError>>) {
    let (reply, rx) = oneshot::channel();
    let req = Req {
        op,
        reply,
        result: None,
    };
    (Box::new(req), rx)
}

impl<W: Write> Pending for Req<W> {
    fn write(&mut self, b: &mut Batch<'_, '_>) -> Result<(), StoreError> {
        self.result = Some(self.op.write(b)?);
        Ok(())
    }

    fn answer(self: Box<Self>) {
        // Every request of a committed batch was written; were one not,
        // dropping its sender tells the caller the store stopped.
        if let Some(r) = self.result {
            let _ = self.reply.send(r);
        }
    }

    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(e));
    }
}

/// Most requests one transaction takes.
const MAX_BATCH: usize = 512;
/// Requests waiting, at most.
pub(super) const QUEUE: usize = 1024;
/// Longest wait between two attempts to reopen a failing database.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Write batches until every handle is dropped. A failed commit (a full
/// disk) acknowledges nothing: the writer reopens the database and retries
/// the same batch until it commits, while callers wait (the bounded queue
/// holds capture back). Returns why it stopped early, if it did: a corrupt
/// database, or shutdown while the disk was still failing.
pub(super) fn writer_loop(
    slot: &DbSlot,
    mut log: LogWriter,
    mut rx: mpsc::Receiver<Request>,
    status: watch::Sender<LogStatus>,
    health: &StoreHealth,
) -> Option<String> {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (len, head) = (log.len(), log.head());
        let mut wait = Duration::from_millis(100);
        let written = loop {
            let started = std::time::Instant::now();
            let mut st = *status.borrow();
            let attempt = slot
                .get()
                .and_then(|db| write_batch(&db, &mut log, &mut st, &mut batch));
            match attempt {
                Ok(()) => {
                    health.commits.fetch_add(1, Ordering::Relaxed);
                    health.commit_micros.fetch_add(
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    break Ok(st);
                }
                Err(e) => {
                    // Nothing of the batch is on disk: its entries will be
                    // sealed again, in the same places, by the retry.
                    log.rewind(len, head);
                    if StoreHealth::get(&health.failing).is_none() {
                        tracing::error!(error = %e, path = %slot.path.display(), "store commit failed; nothing was acknowledged; retrying until the disk accepts it");
                    }
                    StoreHealth::set(&health.failing, Some(e.to_string()));
                    if health.closing.load(Ordering::Acquire) {
                        break Err(format!("shutting down while the store was failing: {e}"));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                    match slot.reopen().and_then(|()| disk_position(&*slot.get()?)) {
                        Ok((next_seq, h)) => {
                            if next_seq != len || h != head {
                                break Err(format!(
                                    "after reopening, the log holds {next_seq} entries, not {len}"
                                ));
                            }
                        }
                        Err(e @ StoreError::Corrupt(_)) => break Err(e.to_string()),
                        Err(e) => StoreHealth::set(&health.failing, Some(e.to_string())),
                    }
                }
            }
        };
        let mut st = match written {
            Ok(st) => st,
            Err(why) => {
                tracing::error!(reason = %why, "the store stops; unacknowledged reads are not stored");
                for req in batch {
                    req.fail(StoreError::Db(why.clone()));
                }
                return Some(why);
            }
        };
        if StoreHealth::get(&health.failing).is_some() {
            tracing::info!("the store commits again");
            StoreHealth::set(&health.failing, None);
        }
        st.len = log.len();
        status.send_replace(st);
        for req in batch {
            req.answer();
        }
    }
    None
}

/// Write every request of `batch` into one durable transaction; `status`
/// takes what the batch changes.
fn write_batch(
    db: &Database,
    log: &mut LogWriter,
    status: &mut LogStatus,
    batch: &mut [Request],
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(db_err)?;
    tx.set_durability(Durability::Immediate).map_err(db_err)?;
    {
        let mut b = Batch {
            t: Tables::open(&tx)?,
            log,
            status,
        };
        for req in batch.iter_mut() {
            req.write(&mut b)?;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(())
}
