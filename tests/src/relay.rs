//! A UDP relay between one edge and the hub that misbehaves on purpose:
//! independent or bursty (Gilbert–Elliott) loss, outages, a bandwidth
//! limit with propagation delay, and rebinding (its hub-side socket moves to
//! a new port, as a vehicle's address changes between networks).
//! `tc netem` is not available here; this is the project's own.
//!
//! A packet lost on the radio still held the radio for its length: loss is
//! decided after the bandwidth queue has charged the packet's time (see
//! [`Radio`]), so a lossy link carries less, as a real one does.

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
    /// UDP payload bytes that held the link each way: forwarded, or lost
    /// on the radio after taking their time on it.
    pub air_up: AtomicU64,
    pub air_down: AtomicU64,
}

/// What became of a packet offered to the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Tail-dropped: the queue before the radio was full (never sent).
    QueueFull,
    /// Sent, and lost on the way: it held the radio until `busy_until`.
    Lost { busy_until: Instant },
    /// Arrives at the other end at this time.
    Deliver { at: Instant },
}

/// One direction's bottleneck: a queue (tail drop past 250 ms of waiting)
/// in front of a radio of `rate_bps`, then propagation delay. Loss happens
/// on the radio, so a lost packet is charged its transmission time.
#[derive(Debug, Clone, Copy)]
pub struct Radio {
    next_free: Instant,
}

impl Radio {
    /// The longest a packet may wait for the radio before it is dropped.
    pub const MAX_QUEUE: Duration = Duration::from_millis(250);

    pub fn new(now: Instant) -> Self {
        Radio { next_free: now }
    }

    /// Offer a packet of `len` bytes at `now`; `lost` says whether the
    /// loss model takes it once it is on the air.
    pub fn offer(&mut self, now: Instant, len: usize, model: &LinkModel, lost: bool) -> Verdict {
        let on_air_until = match model.rate_bps {
            Some(rate) if rate > 0 => {
                let start = self.next_free.max(now);
                if start - now > Self::MAX_QUEUE {
                    return Verdict::QueueFull;
                }
                let tx_time =
                    Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / rate);
                self.next_free = start + tx_time;
                self.next_free
            }
            _ => now,
        };
        if lost {
            Verdict::Lost {
                busy_until: on_air_until,
            }
        } else {
            Verdict::Deliver {
                at: on_air_until + model.delay,
            }
        }
    }
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
    /// Whether this packet gets through the loss model (outages aside).
    fn passes(&self) -> bool {
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

/// A direction's path: outage, then a bandwidth queue (tail drop past
/// 250 ms of queueing) and the radio, where the loss model strikes, then
/// propagation delay, then the socket.
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
        let mut radio = Radio::new(Instant::now());
        while let Some(p) = rx.recv().await {
            s.stats.packets.fetch_add(1, Ordering::Relaxed);
            if s.outage.load(Ordering::Relaxed) {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let model = s.model();
            let lost = !s.passes();
            let (air, forwarded) = match dir {
                Dir::Up => (&s.stats.air_up, &s.stats.bytes_up),
                Dir::Down => (&s.stats.air_down, &s.stats.bytes_down),
            };
            let at = match radio.offer(Instant::now(), p.len(), &model, lost) {
                Verdict::QueueFull => {
                    s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Verdict::Lost { .. } => {
                    air.fetch_add(p.len() as u64, Ordering::Relaxed);
                    s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Verdict::Deliver { at } => at,
            };
            air.fetch_add(p.len() as u64, Ordering::Relaxed);
            forwarded.fetch_add(p.len() as u64, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkModel {
        LinkModel {
            rate_bps: Some(8_000), // 1 byte per millisecond
            delay: Duration::from_millis(50),
            ..LinkModel::default()
        }
    }

    #[test]
    fn a_lost_packet_holds_the_radio_for_its_length() {
        let t0 = Instant::now();
        let mut radio = Radio::new(t0);
        let ms = Duration::from_millis;
        assert_eq!(
            radio.offer(t0, 100, &link(), true),
            Verdict::Lost {
                busy_until: t0 + ms(100)
            }
        );
        // The next packet waits for the lost one to leave the air.
        assert_eq!(
            radio.offer(t0, 100, &link(), false),
            Verdict::Deliver {
                at: t0 + ms(200) + ms(50)
            }
        );
    }

    #[test]
    fn a_full_queue_drops_without_charging_the_radio() {
        let t0 = Instant::now();
        let mut radio = Radio::new(t0);
        // 300 ms of queue: the next packet would wait past 250 ms.
        for _ in 0..3 {
            assert!(matches!(
                radio.offer(t0, 100, &link(), false),
                Verdict::Deliver { .. }
            ));
        }
        assert_eq!(radio.offer(t0, 100, &link(), false), Verdict::QueueFull);
        assert_eq!(
            radio.offer(t0 + Duration::from_millis(100), 100, &link(), false),
            Verdict::Deliver {
                at: t0 + Duration::from_millis(400 + 50)
            }
        );
    }
}
