//! Edges that push images at the hub as fast as they can, over real QUIC
//! connections with real node certificates: for the hub's memory bound
//! (`tests/abuse.rs`) and its peak-RSS bench (`image-flood`).

use std::net::SocketAddr;
use std::sync::Arc;

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::types::{DeviceId, TimeSource, UnixMillis};
use alpr_shared::wire::quic;
use alpr_shared::wire::{Entries, Frame, ImageBlob, Lane};
use anyhow::Context;

use crate::raw::RawNode;
use crate::NodeFiles;

/// What each edge sends.
#[derive(Debug, Clone, Copy)]
pub struct FloodOptions {
    /// Image streams open at once (the hub allows 8).
    pub streams: usize,
    /// Images per stream, written back to back without waiting.
    pub per_stream: usize,
    pub image_bytes: usize,
    /// Upload entries naming the images first, so the hub stores them;
    /// otherwise the images name nothing and are refused after being read.
    pub named: bool,
}

/// What one edge saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct FloodOutcome {
    pub sent: u64,
    pub stored: u64,
    pub refused: u64,
}

fn image(edge: &str, i: usize, len: usize) -> Vec<u8> {
    // Distinct per edge and image (so nothing deduplicates), cheap to make.
    let seed = sha256(format!("{edge}/{i}").as_bytes()).0;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seed[..len.min(32)]);
    while v.len() < len {
        let n = v.len().min(len - v.len());
        v.extend_from_within(..n);
    }
    v
}

/// Frames one edge sends: entries naming its images (if any), and the
/// encoded image frames.
struct Prepared {
    entries: Vec<Frame>,
    images: Vec<Arc<Vec<u8>>>,
}

fn prepare(node: &NodeFiles, opts: FloodOptions) -> anyhow::Result<Prepared> {
    let total = opts.streams * opts.per_stream;
    let mut frames = Vec::with_capacity(total);
    let mut entries = Vec::new();
    if opts.named {
        let key = SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&node.key)?)
            .context("the node key")?;
        let mut w = LogWriter::new(key, DeviceId::new(&node.name)?);
        let mut log = Vec::new();
        for pair in 0..total.div_ceil(2) {
            let (a, b) = (
                image(&node.name, 2 * pair, opts.image_bytes),
                image(&node.name, 2 * pair + 1, opts.image_bytes),
            );
            let mut read = alpr_hub::sample::sample_read(pair as u64);
            read.crop_hash = sha256(&a);
            read.overview_hash = sha256(&b);
            let e = w.append_read(read, UnixMillis::now(), TimeSource::Ntp)?;
            let seq = e.seq();
            log.push(e);
            for bytes in [a, b] {
                frames.push(Frame::Image(ImageBlob {
                    seq,
                    hash: sha256(&bytes),
                    bytes,
                }));
            }
        }
        for chunk in log.chunks(64) {
            let e = Entries::from_log(chunk.to_vec(), None).context("consecutive entries")?;
            entries.push(Frame::Entries(e));
        }
        frames.truncate(total);
    } else {
        for i in 0..total {
            let bytes = image(&node.name, i, opts.image_bytes);
            frames.push(Frame::Image(ImageBlob {
                seq: 0,
                hash: sha256(&bytes),
                bytes,
            }));
        }
    }
    let images = frames.iter().map(|f| Arc::new(f.encode())).collect();
    Ok(Prepared { entries, images })
}

/// Connect as `node`, say hello, (upload entries naming the images,) and
/// push `streams × per_stream` images as fast as the hub takes them. The
/// frames are made before connecting.
pub async fn push_images(
    hub: SocketAddr,
    node: &NodeFiles,
    opts: FloodOptions,
) -> anyhow::Result<FloodOutcome> {
    let made = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || prepare(&node, opts)).await??
    };
    let raw = RawNode::connect(hub, node).await?;
    let welcome = raw.hello(&node.name).await?;
    anyhow::ensure!(
        matches!(welcome, Frame::Welcome(_)),
        "no welcome: {welcome:?}"
    );
    for e in made.entries {
        let answer = raw.exchange(Lane::Entries, &[e]).await?;
        anyhow::ensure!(
            matches!(answer.first(), Some(Frame::Ack(_))),
            "entries not acknowledged: {answer:?}"
        );
    }
    let encoded = made.images;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..opts.streams {
        let mine: Vec<Arc<Vec<u8>>> = encoded
            .iter()
            .skip(s * opts.per_stream)
            .take(opts.per_stream)
            .cloned()
            .collect();
        let conn = raw.conn.clone();
        tasks.spawn(async move {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&[Lane::Images.tag()]).await?;
            let n = mine.len();
            let writer = async move {
                for f in mine {
                    // A stream the hub stopped (after a refusal) ends here.
                    if send.write_all(&f).await.is_err() {
                        break;
                    }
                }
                let _ = send.finish();
                anyhow::Ok(send)
            };
            let reader = async move {
                let mut out = FloodOutcome::default();
                while out.stored + out.refused < n as u64 {
                    match quic::read_frame(&mut recv, Lane::Images.max_frame()).await {
                        Ok(Frame::ImageAck { .. }) => out.stored += 1,
                        Ok(_) => out.refused += 1,
                        Err(_) => break,
                    }
                }
                out.sent = n as u64;
                anyhow::Ok(out)
            };
            let (w, r) = tokio::join!(writer, reader);
            let _send = w?;
            r
        });
    }
    let mut total_out = FloodOutcome::default();
    while let Some(r) = tasks.join_next().await {
        let o = r??;
        total_out.sent += o.sent;
        total_out.stored += o.stored;
        total_out.refused += o.refused;
    }
    raw.close().await;
    Ok(total_out)
}
