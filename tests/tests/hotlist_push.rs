//! Bulk lists pushed to edges end to end: a real `hub serve`, real `edge
//! run` nodes over QUIC, the real `hub hotlist import` as an operator. A
//! connected edge holds a new generation within seconds (whole, then as a
//! delta); an edge offline during two imports catches up on reconnect and
//! holds the current generation before any of its backlog reaches the hub;
//! a damaged list file is left out at start and the hub sends it whole.

use alpr_e2e::output_text as out;
use std::time::Duration;

use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki, TRAINED};
use alpr_shared::hotlist::{sample, Category};

const SOURCES: &str = alpr_e2e::NCIC_SOURCE;

/// Import NCIC rows as the next generation of `ncic`; its number.
fn import(
    hub: &Hub,
    dir: &std::path::Path,
    rows: &[alpr_shared::hotlist::HotEntry],
) -> anyhow::Result<u64> {
    let file = dir.join("extract.txt");
    std::fs::write(&file, sample::ncic(rows))?;
    let o = hub.run_as(
        "op1",
        &[
            "hotlist",
            "import",
            &file.to_string_lossy(),
            "--source",
            "ncic",
            "--json",
        ],
    )?;
    anyhow::ensure!(o.status.success(), "import failed: {}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    v["record"]["info"]["number"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no generation number in {v}"))
}

/// The generation of `ncic` the edge says it holds.
fn edge_list(s: &serde_json::Value) -> Option<u64> {
    s["hotlists"]
        .as_array()?
        .iter()
        .find(|l| l[0] == "ncic")
        .and_then(|l| l[1].as_u64())
}

/// The generation of `ncic` the hub recorded for `node`.
fn hub_list(hub: &Hub, node: &str) -> Option<u64> {
    let nodes = hub.nodes().ok()?;
    let n = nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)?
        .clone();
    n["hotlists"]
        .as_array()?
        .iter()
        .find(|l| l[0] == "ncic")
        .and_then(|l| l[1].as_u64())
}

#[test]
fn lists_reach_connected_edges_and_an_offline_edge_catches_up_before_its_backlog(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    let node = pki.node("pole-1")?;
    let opts = |generate| EdgeOptions {
        generate,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts(50))?;
    edge.wait_synced(50, Duration::from_secs(60))?;

    // Generation 1 reaches the connected edge (whole: it had none).
    let mut rows = sample::entries(3_000, 5);
    rows.retain(|e| e.category != Category::Immigration);
    assert_eq!(import(&hub, dir.path(), &rows)?, 1);
    wait_for(Duration::from_secs(20), "the edge holds ncic #1", || {
        (edge.status().and_then(|s| edge_list(&s)) == Some(1)).then_some(())
    })?;
    let recorded = wait_for(Duration::from_secs(10), "the hub records ncic #1", || {
        (hub_list(&hub, "pole-1") == Some(1)).then_some(())
    });
    if recorded.is_err() {
        let log = std::fs::read_to_string(dir.path().join("hub.log"))?;
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        anyhow::bail!("not recorded: {:?}\n{}", hub.nodes()?, tail.join("\n"));
    }
    assert!(dir.path().join("edge-pole-1/hotlists/ncic.gen").exists());
    // Generation 2, a small change, arrives as a delta.
    rows.truncate(rows.len() - 40);
    assert_eq!(import(&hub, dir.path(), &rows)?, 2);
    wait_for(Duration::from_secs(20), "the edge holds ncic #2", || {
        (edge.status().and_then(|s| edge_list(&s)) == Some(2)).then_some(())
    })?;
    let o = hub.run_as("op1", &["nodes"])?;
    assert!(
        out(&o).contains("ncic#2"),
        "hub nodes shows the list: {}",
        out(&o)
    );

    // Offline (its hub unreachable) for two imports, while it reads 250 plates.
    edge.proc.stop()?;
    rows.truncate(rows.len() - 40);
    assert_eq!(import(&hub, dir.path(), &rows)?, 3);
    rows.truncate(rows.len() - 40);
    assert_eq!(import(&hub, dir.path(), &rows)?, 4);
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], alpr_e2e::free_udp_port()?));
    let mut offline = Edge::start(&node, nowhere, dir.path(), &opts(300))?;
    wait_for(Duration::from_secs(60), "300 reads made offline", || {
        offline
            .status()
            .filter(|s| s["log_size"] == 300)
            .map(|_| ())
    })?;
    offline.proc.stop()?;

    // Back online: no read of the backlog is acknowledged before the edge
    // holds generation 4. The edge handles the hub's receipts and its
    // lists on one task, in order, and logs each (receipts at debug): the
    // log after the restart gives the exact order, not a sample of it.
    let log_path = dir.path().join("edge-pole-1.log");
    let before = std::fs::metadata(&log_path).map_or(0, |m| m.len()) as usize;
    alpr_e2e::set_process_log("info,alpr_edge::sync=debug");
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts(300))?;
    wait_for(Duration::from_secs(60), "the backlog acknowledged", || {
        (edge.status()?["acked"].as_u64() == Some(300)).then_some(())
    })?;
    let log = std::fs::read(&log_path)?;
    let log = String::from_utf8_lossy(log.get(before..).unwrap_or_default());
    let lines: Vec<&str> = log.lines().collect();
    let in_force = lines
        .iter()
        .position(|l| l.contains("bulk list from the hub in force") && l.contains("generation=4"));
    let first_backlog_ack = lines.iter().position(|l| {
        l.contains("hub acknowledged")
            && l.split("acked=")
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|acked| acked > 50)
    });
    match (in_force, first_backlog_ack) {
        (Some(list), Some(ack)) => assert!(
            list < ack,
            "a read of the backlog was acknowledged before ncic #4 was in force:\n{}",
            lines[list.min(ack)..=list.max(ack)].join("\n")
        ),
        _ => anyhow::bail!(
            "the edge's log does not show both ncic #4 in force and the backlog's receipts:\n{log}"
        ),
    }
    wait_for(Duration::from_secs(10), "the hub records ncic #4", || {
        (hub_list(&hub, "pole-1") == Some(4)).then_some(())
    })?;
    let mut edge = edge;
    edge.proc.stop()?;

    // A damaged list file: left out at start, and the hub sends it whole.
    let file = dir.path().join("edge-pole-1/hotlists/ncic.gen");
    let mut bytes = std::fs::read(&file)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, &bytes)?;
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts(300))?;
    wait_for(Duration::from_secs(30), "the damaged list replaced", || {
        (edge.status().and_then(|s| edge_list(&s)) == Some(4)).then_some(())
    })?;
    assert!(
        std::fs::read(&file)? != bytes,
        "the damaged file was replaced"
    );
    let log = std::fs::read_to_string(dir.path().join("edge-pole-1.log"))?;
    assert!(
        log.contains("bulk list not loaded"),
        "the damage was logged"
    );
    Ok(())
}
