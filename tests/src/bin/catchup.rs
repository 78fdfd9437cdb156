//! Catch-up benchmark: a patrol shift's reads queued offline, then synced
//! through the project's relay emulating 1 Mbit/s, 100 ms RTT and 2 % loss.
//! Prints a table: time taken against the time the bytes need at that
//! bandwidth, and bytes on the wire per read (images excluded).
//!
//! `cargo build --workspace --bins && target/debug/catchup-bench [READS]`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alpr_e2e::relay::{LinkModel, Relay};
use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_shared::wire::{Entries, Frame};

fn main() -> anyhow::Result<()> {
    let reads: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let rate_bps = 1_000_000;
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-shift")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let relay = Relay::start(hub.addr, LinkModel::default(), 20)?;
    relay.set_outage(true);
    let opts = EdgeOptions {
        generate: reads,
        backoff_max: Duration::from_millis(300),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, relay.addr, dir.path(), &opts)?;
    eprintln!("queueing {reads} reads offline…");
    wait_for(Duration::from_secs(600), "reads queued", || {
        (edge.status()?["log_size"].as_u64()? == reads).then_some(())
    })?;
    relay.set_model(LinkModel {
        loss: 0.02,
        rate_bps: Some(rate_bps),
        delay: Duration::from_millis(50),
        ..LinkModel::default()
    });
    let (up0, down0) = (
        relay.stats().bytes_up.load(Ordering::Relaxed),
        relay.stats().bytes_down.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    relay.set_outage(false);
    eprintln!("link up: 1 Mbit/s, 100 ms RTT, 2 % loss; syncing…");
    edge.wait_synced(reads, Duration::from_secs(1800))?;
    let secs = start.elapsed().as_secs_f64();
    let up = relay.stats().bytes_up.load(Ordering::Relaxed) - up0;
    let down = relay.stats().bytes_down.load(Ordering::Relaxed) - down0;
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
    let ideal = up as f64 * 8.0 / rate_bps as f64;
    println!("catch-up: {reads} reads over 1 Mbit/s, 100 ms RTT, 2 % loss");
    println!("{:<40} {:>14}", "measure", "value");
    println!("{:<40} {:>14.1}", "seconds to sync (from link up)", secs);
    println!("{:<40} {:>14}", "UDP bytes edge → hub", up);
    println!("{:<40} {:>14}", "UDP bytes hub → edge", down);
    println!(
        "{:<40} {:>14.1}",
        "bytes on the wire per read (up)",
        up as f64 / reads as f64
    );
    println!(
        "{:<40} {:>14.1}",
        "entry bytes per read (stored, canonical)",
        entries_bytes as f64 / reads as f64
    );
    println!(
        "{:<40} {:>14.1}",
        "entry bytes per read (in frames, compact)",
        frame_bytes as f64 / reads as f64
    );
    println!(
        "{:<40} {:>14.1}",
        "seconds the up bytes need at 1 Mbit/s", ideal
    );
    println!("{:<40} {:>14.2}", "ratio (goal ≤ 1.2)", secs / ideal);
    Ok(())
}
