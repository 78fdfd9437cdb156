//! A response body written by blocking code as it goes (a log bundle of
//! every node): the writer runs on a blocking thread and hands chunks to
//! the connection through a bounded queue, so a slow client slows the
//! writer down instead of the hub holding the answer in memory or on disk.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;

/// Bytes per chunk handed to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the connection, at most.
const QUEUE: usize = 8;

/// Where the body's writer writes; see [`blocking_body`].
pub struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client stopped reading"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A body that `write` produces on a blocking thread. When `write` fails,
/// the body ends with an error (the client sees a cut answer, never a
/// short one that looks whole).
pub fn blocking_body<F>(write: F) -> Body
where
    F: FnOnce(&mut ChunkWriter) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let done = write(&mut w).and_then(|()| w.flush().map_err(|e| e.to_string()));
        if let Err(e) = done {
            let _ = tx.blocking_send(Err(io::Error::other(e)));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
