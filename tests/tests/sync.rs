//! Sync end to end: real `hub serve` and `edge run` processes on loopback
//! with certificates made for the test. Reads flow and the hub's copy
//! verifies; kill -9 of either side at random points loses and duplicates
//! nothing; a bursty-loss link, an outage and an address change are
//! survived.

use std::time::Duration;

use alpr_e2e::relay::{LinkModel, Relay};
use alpr_e2e::{Edge, EdgeOptions, Hub, Pki};
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::verify_log;
use rand::{Rng, SeedableRng};

const LIMIT: Duration = Duration::from_secs(180);

/// The hub's copy equals the edge's log entry for entry and verifies from
/// the CA alone, from sequence 0, with no fault (no gap, no duplicate).
fn assert_same_and_authentic(
    pki: &Pki,
    node: &alpr_e2e::NodeFiles,
    hub: &Hub,
    edge: &Edge,
    n: usize,
) -> anyhow::Result<()> {
    let at_edge = edge.stored_entries()?;
    let at_hub = hub.stored_entries(&node.name)?;
    assert_eq!(at_edge.len(), n, "the edge's log has the wrong size");
    assert_eq!(at_hub.len(), n, "reads lost or duplicated at the hub");
    assert!(
        at_hub == at_edge,
        "the hub's copy differs from the edge's log"
    );
    let report = verify_log(
        &pki.device_cert(node)?,
        &at_hub,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "hub copy faults: {:?}", report.faults);
    assert_eq!(report.size, n as u64);
    Ok(())
}

#[test]
fn reads_flow_with_images_and_the_hub_copy_verifies() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-1")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 1500,
        images: true,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(1500, LIMIT)?;
    alpr_e2e::wait_for(LIMIT, "images uploaded", || {
        (edge.status()?["images_pending"].as_u64() == Some(0)).then_some(())
    })?;
    let nodes = hub.nodes()?;
    let row = &nodes["nodes"][0];
    assert_eq!(row["name"], "patrol-1");
    assert_eq!(row["acked"].as_u64(), Some(1500));
    assert_eq!(row["backlog"].as_u64(), Some(0));
    assert_eq!(row["images"].as_u64(), Some(3000));
    edge.proc.stop()?;
    hub.proc.stop()?;
    assert_same_and_authentic(&pki, &node, &hub, &edge, 1500)
}

#[test]
fn kill_9_of_edge_and_hub_at_random_points_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-2")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 2500,
        interval: Duration::from_millis(1),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    let seed: u64 = rand::random();
    eprintln!("kill -9 schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        if round % 2 == 0 {
            edge.proc.kill9();
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            edge.proc.start()?;
        } else {
            hub.kill9();
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            hub.restart()?;
        }
    }
    edge.wait_synced(2500, LIMIT)?;
    edge.proc.stop()?;
    hub.proc.stop()?;
    assert_same_and_authentic(&pki, &node, &hub, &edge, 2500)
}

#[test]
fn sync_completes_through_thirty_percent_bursty_loss() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-3")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    // Gilbert–Elliott: 30 % of packets lost, in bursts of 5 on average.
    let model = LinkModel {
        burst: Some((0.0857, 0.2)),
        delay: Duration::from_millis(10),
        ..LinkModel::default()
    };
    let relay = Relay::start(hub.addr, model, 3)?;
    let opts = EdgeOptions {
        generate: 800,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, relay.addr, dir.path(), &opts)?;
    edge.wait_synced(800, LIMIT)?;
    let st = relay.stats();
    let (sent, dropped) = (
        st.packets.load(std::sync::atomic::Ordering::Relaxed),
        st.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        dropped * 100 >= sent * 15,
        "the relay lost only {dropped} of {sent} packets"
    );
    edge.proc.stop()?;
    hub.proc.stop()?;
    assert_same_and_authentic(&pki, &node, &hub, &edge, 800)
}

#[test]
fn five_second_outage_and_address_change_are_survived() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-4")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let relay = Relay::start(hub.addr, LinkModel::default(), 4)?;
    let opts = EdgeOptions {
        generate: 3000,
        interval: Duration::from_millis(2),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, relay.addr, dir.path(), &opts)?;
    alpr_e2e::wait_for(LIMIT, "sync under way", || {
        (edge.status()?["acked"].as_u64()? > 100).then_some(())
    })?;
    relay.set_outage(true);
    std::thread::sleep(Duration::from_secs(5));
    let during = edge
        .status()
        .map(|s| s["backlog"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    relay.set_outage(false);
    // The vehicle moves to another network mid-sync.
    relay.rebind()?;
    let st = edge.wait_synced(3000, LIMIT)?;
    assert!(
        during > 0,
        "reads kept arriving during the outage and waited"
    );
    assert_eq!(
        st["connects"].as_u64(),
        Some(1),
        "the QUIC connection should survive a 5 s outage and an address change"
    );
    edge.proc.stop()?;
    hub.proc.stop()?;
    assert_same_and_authentic(&pki, &node, &hub, &edge, 3000)
}
