//! `alpr-bench edge push-edges` (hidden; `alpr-bench hub push` starts it): N
//! simulated edges in this process, each applying the hub's lists the way
//! a running edge does — the edge's sync core over a real QUIC connection
//! with its own node certificate, each list checked against the
//! deployment's CA (a hotlist key's certificate, its signature), stored
//! durably and swapped in by [`alpr_edge::sync::apply_hotlist`]
//! into the edge's own generations store, and the matcher rebuilt by a
//! [`MatcherSource`] following that store, as `edge run` wires them.
//!
//! `--dir` holds one folder per edge (`node.crt`, `node.key`; the edge
//! keeps its lists there). The first, by name, is the seed: it fetches the
//! list whole over the protocol; every other edge starts from its own copy
//! of that file (opened and checked by its own store), connects, and
//! waits. Each event is a line of JSON on stdout
//! ([`alpr_shared::hotlist::push_events::PushEvent`]); the process ends
//! when its standard input closes.
//!
//! The edges share this machine's cores: an apply waits for a free one
//! (at most one blocking task per core runs at once), so "applied on every
//! edge" is what N edges' applies cost this machine, not what each edge's
//! own CPU would take (`alpr-bench edge hotlist` times one apply alone).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::hotlist::local::LocalEntriesDoc;
use alpr_shared::hotlist::push_events::{now_us, PushEvent};
use alpr_shared::sync::{EdgeEvent, EdgeSync, LinkState, LogSource, SyncTuning};
use alpr_shared::types::{DeviceId, Hash32};
use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{Lane, ALPN};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use alpr_edge::alert::MatcherSource;
use alpr_edge::hotlist::generations::Generations;
use alpr_edge::sync::{apply_hotlist, HotlistUpdate, SharedStatus};

#[derive(Debug, clap::Args)]
pub struct PushEdgesArgs {
    /// The hub's QUIC address.
    #[arg(long)]
    pub hub: SocketAddr,
    /// The deployment CA's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// One folder per edge (node.crt, node.key); the first by name is the seed.
    #[arg(long)]
    pub dir: PathBuf,
    /// Simulated edges sharing one UDP socket.
    #[arg(long, default_value_t = 4)]
    pub edges_per_socket: usize,
}

/// Most handshakes at once: edges come online a few at a time; the
/// measure is of the push, not of a thousand simultaneous handshakes.
const CONNECTING: usize = 32;

/// Print one event line (stdout is the hub's pipe).
fn emit(e: &PushEvent) {
    if let Ok(line) = serde_json::to_string(e) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

struct NoLog;

impl LogSource for NoLog {
    fn log_len(&self) -> u64 {
        0
    }
    fn entries(&self, _: u64, _: usize, _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn pending_images(&self, _: u64, _: usize) -> Vec<(u64, Hash32)> {
        Vec::new()
    }
    fn image(&self, _: &Hash32) -> Option<Vec<u8>> {
        None
    }
}

/// An edge's node certificate and key (PEM).
fn credentials(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cert = std::fs::read(dir.join("node.crt"))
        .with_context(|| format!("reading {}/node.crt", dir.display()))?;
    // (A bench's throwaway key: no need to keep it zeroised.)
    let key = alpr_shared::private::read_key_file(&dir.join("node.key"))?.to_vec();
    Ok((cert, key))
}

pub fn push_edges(args: PushEdgesArgs) -> anyhow::Result<ExitCode> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Applies (checks, writes, matcher builds) queue for a core rather
        // than run a thousand at once.
        .max_blocking_threads(cores.max(2))
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// What every simulated edge shares.
struct Shared {
    hub: SocketAddr,
    ca: Vec<u8>,
    /// The same CA, as the lists are checked against it.
    anchor: TrustAnchor,
    connecting: tokio::sync::Semaphore,
    done: CancellationToken,
}

async fn run(args: PushEdgesArgs) -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .with_context(|| format!("listing {}", args.dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    anyhow::ensure!(dirs.len() >= 2, "need a seed edge and at least one edge");
    let seed_dir = dirs.remove(0);
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).context("the CA certificate")?;
    let shared = Arc::new(Shared {
        hub: args.hub,
        ca,
        anchor,
        connecting: tokio::sync::Semaphore::new(CONNECTING),
        done: CancellationToken::new(),
    });
    let liveness = Liveness {
        keep_alive: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(120),
    };
    let per_socket = args.edges_per_socket.max(1);
    let mut endpoints = Vec::new();
    for _ in 0..(dirs.len() + 1).div_ceil(per_socket) {
        endpoints.push(quinn::Endpoint::client(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        )))?);
    }
    let endpoint = |i: usize| endpoints.get(i / per_socket).cloned();

    // The seed holds nothing: the list comes whole.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(dirs.len() + 1);
    let seed = SimEdge::open(usize::MAX, &seed_dir, shared.clone()).await?;
    seed.run(
        endpoint(0).context("no socket")?,
        liveness,
        ready_tx.clone(),
        true,
    )
    .await
    .context("the seed edge")?;

    // Every edge starts from its own copy of the seed's file.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, dir) in dirs.iter().enumerate() {
        copy_lists(&seed_dir, dir)?;
        let edge = SimEdge::open(i, dir, shared.clone()).await?;
        let ep = endpoint(i + 1).context("no socket")?;
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            if let Err(e) = edge.run(ep, liveness, ready, false).await {
                emit(&PushEvent::Failed {
                    edge: i,
                    error: format!("{e:#}"),
                });
            }
        });
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < dirs.len() {
        if ready_rx.recv().await.is_none() {
            break;
        }
        ready += 1;
    }
    emit(&PushEvent::Ready { edges: ready });
    // Until the hub's bench closes our standard input.
    let _ = tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await;
    shared.done.cancel();
    while tasks.join_next().await.is_some() {}
    for e in &endpoints {
        e.wait_idle().await;
    }
    Ok(())
}

/// Hard-link (or copy) the seed's list files into `dir`'s own store.
fn copy_lists(seed: &Path, dir: &Path) -> anyhow::Result<()> {
    let (from, to) = (seed.join("hotlists"), dir.join("hotlists"));
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(&from).with_context(|| format!("listing {}", from.display()))? {
        let path = e?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        let target = to.join(name);
        if std::fs::hard_link(&path, &target).is_err() {
            std::fs::copy(&path, &target)
                .with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

/// One simulated edge: its own list store and matcher, as `edge run`
/// builds them.
struct SimEdge {
    index: usize,
    name: DeviceId,
    cert: Vec<u8>,
    key: Vec<u8>,
    generations: Generations,
    matchers: MatcherSource,
    shared: Arc<Shared>,
}

impl SimEdge {
    async fn open(index: usize, dir: &Path, shared: Arc<Shared>) -> anyhow::Result<SimEdge> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("an edge folder without a name")?;
        let name = DeviceId::new(name.to_owned())?;
        let (cert, key) = credentials(dir)?;
        let (d, anchor) = (dir.to_path_buf(), shared.anchor.clone());
        let generations =
            tokio::task::spawn_blocking(move || Generations::open(&d, anchor)).await??;
        let matchers = MatcherSource::new();
        matchers.follow_bulk(generations.watch(), shared.done.clone());
        Ok(SimEdge {
            index,
            name,
            cert,
            key,
            generations,
            matchers,
            shared,
        })
    }

    /// Connect, say what it holds, and apply what the hub sends until
    /// `done` (the seed: until it holds the list whole).
    async fn run(
        self,
        endpoint: quinn::Endpoint,
        liveness: Liveness,
        ready: tokio::sync::mpsc::Sender<()>,
        seed: bool,
    ) -> anyhow::Result<()> {
        let cfg = quic::client_config(&self.shared.ca, &self.cert, &self.key, ALPN, liveness)?;
        let permit = self.shared.connecting.acquire().await?;
        let started = Instant::now();
        let conn = endpoint
            .connect_with(cfg, self.shared.hub, "localhost")?
            .await
            .with_context(|| format!("{}: connecting", self.name))?;
        drop(permit);
        let now = || started.elapsed();
        let mut core = EdgeSync::new(
            self.name.clone(),
            SyncTuning::default(),
            0,
            7,
            self.shared.anchor.clone(),
        );
        for (source, generation) in self.generations.held() {
            core.set_hotlist_held(&source, generation);
        }
        let status = SharedStatus::default();
        let mut matchers = self.matchers.watch();
        matchers.borrow_and_update();
        core.link_up(now(), 0);
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[Lane::Control.tag()]).await?;
        let mut greeted = false;
        loop {
            while let Some(o) = core.poll_transmit(now(), &NoLog) {
                quic::write_frame(&mut send, &o.frame).await?;
            }
            if !greeted && !seed && core.state() == LinkState::Ready {
                greeted = true;
                let _ = ready.send(()).await;
            }
            let mut whole = false;
            while let Some(ev) = core.poll_event() {
                match ev {
                    EdgeEvent::HotlistDelta {
                        source,
                        from,
                        to,
                        delta,
                    } => {
                        emit(&PushEvent::Delivered {
                            edge: self.index,
                            at_us: now_us(),
                            to,
                            bytes: delta.len() as u64,
                        });
                        let update = HotlistUpdate::Delta { from, to, delta };
                        self.apply(&mut core, &status, &mut matchers, source, update)
                            .await?;
                        emit(&PushEvent::Applied {
                            edge: self.index,
                            at_us: now_us(),
                            generation: to,
                        });
                    }
                    EdgeEvent::HotlistFull {
                        source,
                        generation,
                        bytes,
                    } => {
                        // (An edge the hub cannot send a delta gets the
                        // list whole: delivered and applied all the same.)
                        let size = bytes.len() as u64;
                        if !seed {
                            emit(&PushEvent::Delivered {
                                edge: self.index,
                                at_us: now_us(),
                                to: generation,
                                bytes: size,
                            });
                        }
                        let update = HotlistUpdate::Full { generation, bytes };
                        self.apply(&mut core, &status, &mut matchers, source, update)
                            .await?;
                        if seed {
                            emit(&PushEvent::Whole {
                                ms: started.elapsed().as_secs_f64() * 1e3,
                                generation,
                                bytes: size,
                            });
                            whole = true;
                        } else {
                            emit(&PushEvent::Applied {
                                edge: self.index,
                                at_us: now_us(),
                                generation,
                            });
                        }
                    }
                    EdgeEvent::LocalEntries(doc) => {
                        tokio::task::spawn_blocking(move || LocalEntriesDoc::load(&doc)).await??;
                        emit(&PushEvent::Local {
                            edge: self.index,
                            at_us: now_us(),
                        });
                    }
                    EdgeEvent::Refused(r) => anyhow::bail!("{}: refused: {r:?}", self.name),
                    EdgeEvent::HotlistRefused { why, .. } => {
                        anyhow::bail!("{}: list refused: {why}", self.name)
                    }
                    _ => {}
                }
            }
            if whole {
                // The seed's work is done: it leaves.
                while let Some(o) = core.poll_transmit(now(), &NoLog) {
                    quic::write_frame(&mut send, &o.frame).await?;
                }
                break;
            }
            let frame = tokio::select! {
                _ = self.shared.done.cancelled() => break,
                f = quic::read_frame(&mut recv, Lane::Control.max_frame_from_hub()) => f?,
            };
            core.handle_frame(frame, now(), &NoLog);
        }
        conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
        Ok(())
    }

    /// The edge's own apply, then the matcher rebuilt from the new set.
    async fn apply(
        &self,
        core: &mut EdgeSync,
        status: &SharedStatus,
        matchers: &mut tokio::sync::watch::Receiver<Arc<alpr_shared::hotlist::matcher::Matcher>>,
        source: String,
        update: HotlistUpdate,
    ) -> anyhow::Result<()> {
        let want = match &update {
            HotlistUpdate::Delta { to, .. } => *to,
            HotlistUpdate::Full { generation, .. } => *generation,
        };
        apply_hotlist(core, &self.generations, status, source.clone(), update).await;
        let held = self.generations.get(&source).map(|g| g.info().number);
        anyhow::ensure!(
            held == Some(want),
            "{}: generation {want} of {source} was not applied: {}",
            self.name,
            status
                .lock()
                .ok()
                .and_then(|s| s.hotlist_error.clone())
                .unwrap_or_default()
        );
        tokio::time::timeout(Duration::from_secs(120), matchers.changed())
            .await
            .context("the matcher was not rebuilt within 120 s")??;
        matchers.borrow_and_update();
        Ok(())
    }
}
