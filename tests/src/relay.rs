//! A UDP relay between one edge and the hub that misbehaves on purpose:
//! independent or bursty (Gilbert–Elliott) loss, outages, a bandwidth
//! limit with propagation delay, and rebinding (its hub-side socket moves to
//! a new port, as a vehicle's address changes between networks).
//! `tc netem` is not available here; this is the project's own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How the relay treats packets (both directions alike).
#[derive(Debug, Clone, Default)]
pub struct LinkModel {
    /// Independent loss probability.
    pub loss: f64,
    /// Gilbert–Elliott: (P(good→bad), P(bad→good)) per packet; every packet
    /// is lost in the bad state.
    pub burst: Option<(f64, f64)>,
    /// Bottleneck bandwidth in bits per second (None: unlimited).
    pub rate_bps: Option<u64>,
    /// One-way propagation delay.
    pub delay: Duration,
}

/// Counters.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub packets: AtomicU64,
    pub dropped: AtomicU64,
    /// UDP payload bytes forwarded edge → hub and hub → edge.
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

struct Shared {
    model: Mutex<(LinkModel, StdRng, bool)>,
    outage: AtomicBool,
    client: Mutex<Option<SocketAddr>>,
    back: Mutex<Arc<UdpSocket>>,
    back_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    down: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    stats: RelayStats,
}

impl Shared {
    /// Whether this packet gets through the loss model.
    fn passes(&self) -> bool {
        if self.outage.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(mut g) = self.model.lock() else {
            return true;
        };
        let (model, rng, bad) = &mut *g;
        if let Some((to_bad, to_good)) = model.burst {
            if *bad {
                if rng.gen_bool(to_good.clamp(0.0, 1.0)) {
                    *bad = false;
                }
            } else if rng.gen_bool(to_bad.clamp(0.0, 1.0)) {
                *bad = true;
            }
            if *bad {
                return false;
            }
        }
        !(model.loss > 0.0 && rng.gen_bool(model.loss.clamp(0.0, 1.0)))
    }

    fn model(&self) -> LinkModel {
        self.model.lock().map(|g| g.0.clone()).unwrap_or_default()
    }
}

/// A running relay; stops when dropped.
pub struct Relay {
    /// Where the edge should send (instead of the hub).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    hub: SocketAddr,
}

#[derive(Clone, Copy)]
enum Dir {
    Up,
    Down,
}

impl Relay {
    pub fn start(hub: SocketAddr, model: LinkModel, seed: u64) -> anyhow::Result<Relay> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (addr, shared) = rt.block_on(async move {
            let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let addr = front.local_addr()?;
            let shared = Arc::new(Shared {
                model: Mutex::new((model, StdRng::seed_from_u64(seed), false)),
                outage: AtomicBool::new(false),
                client: Mutex::new(None),
                back: Mutex::new(back.clone()),
                back_task: Mutex::new(None),
                down: Mutex::new(None),
                stats: RelayStats::default(),
            });
            let up = shaper(shared.clone(), Dir::Up, front.clone(), hub);
            let down = shaper(shared.clone(), Dir::Down, front.clone(), hub);
            // Edge → hub.
            {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok((n, from)) = front.recv_from(&mut buf).await {
                        if let Ok(mut c) = shared.client.lock() {
                            *c = Some(from);
                        }
                        let _ = up.try_send(buf[..n].to_vec());
                    }
                });
            }
            let task = tokio::spawn(back_reader(back, down.clone()));
            if let Ok(mut t) = shared.back_task.lock() {
                *t = Some(task);
            }
            if let Ok(mut d) = shared.down.lock() {
                *d = Some(down);
            }
            anyhow::Ok((addr, shared))
        })?;
        Ok(Relay {
            addr,
            shared,
            rt: Some(rt),
            hub,
        })
    }

    pub fn set_model(&self, model: LinkModel) {
        if let Ok(mut g) = self.shared.model.lock() {
            g.0 = model;
            g.2 = false;
        }
    }

    /// Cut the link completely (true) or restore it (false).
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::Relaxed);
    }

    /// Move the hub-side socket to a new port: to the hub, the edge's
    /// address changes mid-connection.
    pub fn rebind(&self) -> anyhow::Result<SocketAddr> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("relay stopped"))?;
        let shared = self.shared.clone();
        rt.block_on(async move {
            let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let new_addr = sock.local_addr()?;
            let down = shared
                .down
                .lock()
                .ok()
                .and_then(|d| d.clone())
                .ok_or_else(|| anyhow::anyhow!("no down path"))?;
            let task = tokio::spawn(back_reader(sock.clone(), down));
            if let Ok(mut b) = shared.back.lock() {
                *b = sock;
            }
            if let Ok(mut t) = shared.back_task.lock() {
                if let Some(old) = t.replace(task) {
                    old.abort();
                }
            }
            anyhow::Ok(new_addr)
        })
    }

    pub fn stats(&self) -> &RelayStats {
        &self.shared.stats
    }

    pub fn hub(&self) -> SocketAddr {
        self.hub
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn back_reader(sock: Arc<UdpSocket>, down: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, _)) = sock.recv_from(&mut buf).await {
        let _ = down.try_send(buf[..n].to_vec());
    }
}

/// A direction's path: loss model, then a bandwidth queue (tail drop past
/// 250 ms of queueing), then propagation delay, then the socket.
fn shaper(
    shared: Arc<Shared>,
    dir: Dir,
    front: Arc<UdpSocket>,
    hub: SocketAddr,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4096);
    let (dtx, mut drx) = mpsc::channel::<(Instant, Vec<u8>)>(8192);
    let s = shared.clone();
    tokio::spawn(async move {
        let mut next_free = Instant::now();
        while let Some(p) = rx.recv().await {
            s.stats.packets.fetch_add(1, Ordering::Relaxed);
            if !s.passes() {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let model = s.model();
            let now = Instant::now();
            let start = next_free.max(now);
            let at = match model.rate_bps {
                Some(rate) if rate > 0 => {
                    if start - now > Duration::from_millis(250) {
                        s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let tx_time = Duration::from_nanos(
                        (p.len() as u64 * 8).saturating_mul(1_000_000_000) / rate,
                    );
                    next_free = start + tx_time;
                    next_free + model.delay
                }
                _ => now + model.delay,
            };
            let counter = match dir {
                Dir::Up => &s.stats.bytes_up,
                Dir::Down => &s.stats.bytes_down,
            };
            counter.fetch_add(p.len() as u64, Ordering::Relaxed);
            if dtx.send((at, p)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((at, p)) = drx.recv().await {
            tokio::time::sleep_until(at).await;
            match dir {
                Dir::Up => {
                    let back = shared.back.lock().map(|b| b.clone()).ok();
                    if let Some(b) = back {
                        let _ = b.send_to(&p, hub).await;
                    }
                }
                Dir::Down => {
                    let client = shared.client.lock().ok().and_then(|c| *c);
                    if let Some(c) = client {
                        let _ = front.send_to(&p, c).await;
                    }
                }
            }
        }
    });
    tx
}
