//! `image-flood`: the hub's peak memory while many edges push images as
//! fast as they can. Starts `hub serve` (the built binary) with a test
//! PKI, connects `--edges` nodes over real QUIC with their own
//! certificates, each uploads entries naming its images and then pushes
//! them on `--streams` streams without waiting; prints the hub's resident
//! memory before and at its peak (VmHWM).

use std::time::Instant;

use alpr_e2e::flood::{push_images, FloodOptions};
use alpr_e2e::{Hub, Pki};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Edges pushing at once.
    #[arg(long, default_value_t = 100)]
    edges: usize,
    /// Image streams per edge.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Images per stream.
    #[arg(long, default_value_t = 2)]
    per_stream: usize,
    /// Size of each image, in KiB.
    #[arg(long, default_value_t = 1024)]
    image_kib: usize,
    /// Images that name no entry (refused after being read) instead of
    /// stored ones.
    #[arg(long)]
    unnamed: bool,
    /// More lines for the hub's config.
    #[arg(long, default_value = "")]
    hub_toml: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let nodes: Vec<_> = (0..args.edges)
        .map(|i| pki.node(&format!("edge-{i:03}")))
        .collect::<Result<_, _>>()?;
    let mut hub = Hub::start_with(&pki, dir.path(), &[], &args.hub_toml)?;
    let (before, _) = hub.proc.rss()?;
    let opts = FloodOptions {
        streams: args.streams,
        per_stream: args.per_stream,
        image_bytes: args.image_kib * 1024,
        named: !args.unnamed,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let addr = hub.addr;
    let results = rt.block_on(async {
        let mut all = tokio::task::JoinSet::new();
        for n in nodes {
            all.spawn(async move { push_images(addr, &n, opts).await });
        }
        let mut out = Vec::new();
        while let Some(r) = all.join_next().await {
            out.push(r?);
        }
        anyhow::Ok(out)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = hub.proc.rss()?;
    let mut failed = 0;
    let (mut sent, mut stored, mut refused) = (0, 0, 0);
    for r in &results {
        match r {
            Ok(o) => {
                sent += o.sent;
                stored += o.stored;
                refused += o.refused;
            }
            Err(e) => {
                failed += 1;
                eprintln!("edge failed: {e:#}");
            }
        }
    }
    hub.proc.stop()?;
    const MIB: f64 = 1024.0 * 1024.0;
    if args.json {
        println!(
            "{{\"edges\":{},\"images_sent\":{sent},\"images_stored\":{stored},\"refused\":{refused},\"failed_edges\":{failed},\"seconds\":{secs:.1},\"rss_before_mib\":{:.1},\"peak_rss_mib\":{:.1}}}",
            args.edges,
            before as f64 / MIB,
            peak as f64 / MIB
        );
    } else {
        println!(
            "{} edges × {} streams × {} images of {} KiB: {sent} sent, {stored} stored, {refused} refused, {failed} edges failed, {secs:.1} s",
            args.edges, args.streams, args.per_stream, args.image_kib
        );
        println!(
            "hub RSS before {:.1} MiB, peak (VmHWM) {:.1} MiB",
            before as f64 / MIB,
            peak as f64 / MIB
        );
    }
    if failed > 0 {
        eprintln!("hub log tail:\n{}", hub.proc.log_tail(30));
    }
    Ok(())
}
