//! Catch-up benchmark: a patrol shift's reads queued offline, then synced
//! through the project's relay emulating a slow lossy radio link (default
//! 1 Mbit/s, 100 ms RTT, 2 % loss; lost packets still take their time on
//! the link). Prints the time taken against the time the payload needs at
//! that bandwidth (the entries' bytes, and the images' with `--images`)
//! and against the time the bytes the relay carried need.
//!
//! `cargo build --workspace --bins && target/debug/catchup-bench [READS]`
//! `target/debug/catchup-bench 300 --images --rtt-ms 600` (images lane)

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alpr_e2e::relay::{LinkModel, Relay};
use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_shared::wire::{Entries, Frame};
use anyhow::Context;
use clap::Parser;
use rand::RngCore;

#[derive(Debug, Parser)]
#[command(about = "Catch-up of an offline backlog over an emulated radio link")]
struct Args {
    /// Reads queued offline.
    #[arg(default_value_t = 20_000)]
    reads: u64,
    /// Each read carries a crop image of `--image-bytes` random bytes
    /// (incompressible, unique): measures the image lane.
    #[arg(long)]
    images: bool,
    #[arg(long, default_value_t = 8 * 1024)]
    image_bytes: usize,
    /// Link bandwidth, bits per second (each way).
    #[arg(long, default_value_t = 1_000_000)]
    rate_bps: u64,
    /// Round-trip propagation delay, milliseconds.
    #[arg(long, default_value_t = 100)]
    rtt_ms: u64,
    /// Packet loss on the radio (each way).
    #[arg(long, default_value_t = 0.02)]
    loss: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// A replay file of `n` reads, each with its own crop of `bytes` random bytes.
fn write_replay(dir: &Path, n: u64, bytes: usize) -> anyhow::Result<std::path::PathBuf> {
    let imgs = dir.join("replay");
    std::fs::create_dir_all(&imgs)?;
    let file = imgs.join("reads.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut rng = rand::thread_rng();
    let mut buf = vec![0u8; bytes];
    for i in 0..n {
        rng.fill_bytes(&mut buf);
        let name = format!("crop-{i:06}.jpg");
        std::fs::write(imgs.join(&name), &buf)?;
        writeln!(
            out,
            "{}",
            serde_json::json!({"plate": format!("IMG{:05}", i % 100_000), "crop": name})
        )?;
    }
    out.flush()?;
    Ok(file)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate_bps > 0, "--rate-bps must be above 0");
    anyhow::ensure!(
        (0.0..1.0).contains(&args.loss),
        "--loss is a fraction in [0, 1)"
    );
    let reads = args.reads;
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-shift")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let relay = Relay::start(hub.addr, LinkModel::default(), 20)?;
    relay.set_outage(true);
    let opts = if args.images {
        let file =
            write_replay(dir.path(), reads, args.image_bytes).context("writing the replay file")?;
        EdgeOptions {
            generate: 0,
            backoff_max: Duration::from_millis(300),
            extra_toml: format!("file = {:?}\n", file.display().to_string()),
            ..EdgeOptions::default()
        }
    } else {
        EdgeOptions {
            generate: reads,
            backoff_max: Duration::from_millis(300),
            ..EdgeOptions::default()
        }
    };
    let link = format!(
        "{} Mbit/s, {} ms RTT, {} % loss",
        args.rate_bps as f64 / 1e6,
        args.rtt_ms,
        args.loss * 100.0
    );
    let mut edge = Edge::start(&node, relay.addr, dir.path(), &opts)?;
    eprintln!("queueing {reads} reads offline…");
    wait_for(Duration::from_secs(600), "reads queued", || {
        (edge.status()?["log_size"].as_u64()? == reads).then_some(())
    })?;
    relay.set_model(LinkModel {
        loss: args.loss,
        rate_bps: Some(args.rate_bps),
        delay: Duration::from_millis(args.rtt_ms / 2),
        ..LinkModel::default()
    });
    let st = relay.stats();
    let counters = || {
        [
            st.bytes_up.load(Ordering::Relaxed),
            st.bytes_down.load(Ordering::Relaxed),
            st.air_up.load(Ordering::Relaxed),
        ]
    };
    let before = counters();
    let start = Instant::now();
    relay.set_outage(false);
    eprintln!("link up: {link}; syncing…");
    let limit = Duration::from_secs(3600);
    edge.wait_synced(reads, limit)?;
    let entries_secs = start.elapsed().as_secs_f64();
    if args.images {
        wait_for(limit, "images uploaded", || {
            (edge.status()?["images_pending"].as_u64()? == 0).then_some(())
        })?;
    }
    let secs = start.elapsed().as_secs_f64();
    let after = counters();
    let [up, down, air_up] = [0, 1, 2].map(|i| after[i] - before[i]);
    edge.proc.stop()?;
    let log = edge.stored_entries()?;
    let entries_bytes: usize = log.iter().map(|e| e.encode().len()).sum();
    // The same entries as the edge frames them (compact, 256 a frame).
    let frame_bytes: usize = log
        .chunks(256)
        .filter_map(|c| Entries::from_log(c.to_vec(), None))
        .map(|f| Frame::Entries(f).encode().len())
        .sum();
    hub.proc.stop()?;
    let image_bytes = if args.images {
        reads as usize * args.image_bytes
    } else {
        0
    };
    // What the protocol had to move: the log (in its compact framing, the
    // smaller of the two encodings) and the images.
    let payload = frame_bytes.min(entries_bytes) + image_bytes;
    let bits = |b: f64| b * 8.0 / args.rate_bps as f64;
    let payload_secs = bits(payload as f64);
    let wire_secs = bits(air_up as f64);
    let ratio_payload = secs / payload_secs;
    let ratio_wire = secs / wire_secs;
    let bytes_per_read = air_up as f64 / reads as f64;
    let image_rate = (image_bytes > 0).then(|| image_bytes as f64 * 8.0 / secs);
    // Images follow their entries' acknowledgement: their rate once the
    // entries were through (the link carried only them from then on).
    let image_phase_rate = (image_bytes > 0 && secs > entries_secs)
        .then(|| image_bytes as f64 * 8.0 / (secs - entries_secs));
    if args.json {
        let v = serde_json::json!({
            "reads": reads,
            "images": args.images,
            "image_bytes": args.image_bytes,
            "rate_bps": args.rate_bps,
            "rtt_ms": args.rtt_ms,
            "loss": args.loss,
            "seconds": secs,
            "entries_seconds": entries_secs,
            "payload_bytes": payload,
            "payload_seconds": payload_secs,
            "air_bytes_up": air_up,
            "forwarded_bytes_up": up,
            "forwarded_bytes_down": down,
            "ratio_payload": ratio_payload,
            "ratio_wire": ratio_wire,
            "bytes_per_read": bytes_per_read,
            "image_link_share": image_rate.map(|r| r / args.rate_bps as f64),
            "image_link_share_after_entries": image_phase_rate.map(|r| r / args.rate_bps as f64),
        });
        println!("{v}");
        return Ok(());
    }
    let row = |k: &str, v: String| println!("{k:<46} {v:>14}");
    println!("catch-up: {reads} reads over {link}");
    row("measure", "value".into());
    row("seconds to sync (from link up)", format!("{secs:.1}"));
    if args.images {
        row(
            "seconds until the entries were acknowledged",
            format!("{entries_secs:.1}"),
        );
        row("image bytes (payload)", image_bytes.to_string());
    }
    row(
        "UDP bytes edge → hub on the air (incl. lost)",
        air_up.to_string(),
    );
    row("UDP bytes edge → hub delivered", up.to_string());
    row("UDP bytes hub → edge delivered", down.to_string());
    row(
        "bytes on the air per read (up)",
        format!("{bytes_per_read:.1}"),
    );
    row(
        "entry bytes per read (stored, canonical)",
        format!("{:.1}", entries_bytes as f64 / reads as f64),
    );
    row(
        "entry bytes per read (in frames, compact)",
        format!("{:.1}", frame_bytes as f64 / reads as f64),
    );
    row("payload bytes (entries + images)", payload.to_string());
    row(
        "seconds the payload needs on the link",
        format!("{payload_secs:.1}"),
    );
    row(
        "seconds the bytes on the air need",
        format!("{wire_secs:.1}"),
    );
    row(
        "ratio to payload time (goal ≤ 1.2)",
        format!("{ratio_payload:.2}"),
    );
    row("ratio to wire time", format!("{ratio_wire:.2}"));
    if let Some(r) = image_rate {
        row(
            "images' share of the link, whole run",
            format!("{:.2}", r / args.rate_bps as f64),
        );
    }
    if let Some(r) = image_phase_rate {
        row(
            "images' share once entries were acked (goal ≥ 0.8)",
            format!("{:.2}", r / args.rate_bps as f64),
        );
    }
    Ok(())
}
