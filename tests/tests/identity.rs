//! The edge checks what the hub tells it (issue 8.2): a node whose store
//! was wiped, or a second device with the same certificate, is shown as an
//! identity conflict on `edge status` and `hub nodes` — never as "backlog
//! 0" — and uploads stop, so the hub's copy stays what it was.

use std::time::Duration;

use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};

const LIMIT: Duration = Duration::from_secs(120);

fn opts(generate: u64) -> EdgeOptions {
    EdgeOptions {
        generate,
        ..EdgeOptions::default()
    }
}

/// `hub nodes --json`'s row for `name`.
fn node_row(hub: &Hub, name: &str) -> Option<serde_json::Value> {
    let nodes = hub.nodes().ok()?;
    nodes["nodes"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
}

#[test]
fn a_wiped_edge_store_is_an_identity_conflict_and_uploads_stop() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-wiped")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts(40))?;
    edge.wait_synced(40, LIMIT)?;
    edge.proc.stop()?;
    let original = edge.stored_entries()?;

    // The store is lost; the node comes back with the same certificate
    // and starts a new log.
    std::fs::remove_file(edge.data.join("edge.redb"))?;
    edge.proc.start()?;
    let st = wait_for(LIMIT, "the edge to report an identity conflict", || {
        let s = edge.status()?;
        s["identity_conflict"].is_string().then_some(s)
    })?;
    assert!(
        st["backlog"].is_null(),
        "an edge in conflict must not show a backlog: {st}"
    );
    assert_eq!(st["acked"].as_u64(), Some(0), "{st}");
    assert!(
        st["link"]
            .as_str()
            .is_some_and(|l| l.contains("identity conflict")),
        "{st}"
    );

    let row = wait_for(LIMIT, "hub nodes to show the conflict", || {
        node_row(&hub, "pole-wiped").filter(|r| r["identity_conflict"].is_object())
    })?;
    assert!(row["backlog"].is_null(), "never 'backlog 0': {row}");
    assert!(row["identity_conflicts"].as_u64() >= Some(1), "{row}");
    assert_eq!(row["acked"].as_u64(), Some(40));

    // Uploads stopped: the new log went nowhere, nothing was refused as a
    // fork, and the hub's copy is still the first log.
    let nodes = hub.nodes()?;
    let codes: Vec<&str> = nodes["recent_refusals"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !codes.iter().any(|c| *c == "fork" || *c == "broken-chain"),
        "the edge sent its new log anyway: {codes:?}"
    );
    edge.proc.stop()?;
    hub.proc.stop()?;
    assert_eq!(hub.stored_entries("pole-wiped")?, original);
    Ok(())
}

#[test]
fn two_edges_with_one_identity_are_reported() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-twin")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let mut first = Edge::start(&node, hub.addr, dir.path(), &opts(30))?;
    first.wait_synced(30, LIMIT)?;

    // A second device with a copy of the same certificate and key.
    let other = dir.path().join("second-device");
    std::fs::create_dir_all(&other)?;
    let mut second = Edge::start(&node, hub.addr, &other, &opts(50))?;
    let st = wait_for(LIMIT, "the second device to report a conflict", || {
        let s = second.status()?;
        s["identity_conflict"].is_string().then_some(s)
    })?;
    assert!(st["backlog"].is_null(), "{st}");
    let row = wait_for(LIMIT, "hub nodes to show the conflict", || {
        node_row(&hub, "patrol-twin").filter(|r| r["identity_conflict"].is_object())
    })?;
    assert!(row["backlog"].is_null(), "never 'backlog 0': {row}");

    // The first device's reads are what the hub holds, untouched.
    let st1 = first
        .status()
        .ok_or_else(|| anyhow::anyhow!("first edge down"))?;
    assert!(st1["identity_conflict"].is_null(), "{st1}");
    second.proc.stop()?;
    first.proc.stop()?;
    hub.proc.stop()?;
    assert_eq!(hub.stored_entries("patrol-twin")?, first.stored_entries()?);
    Ok(())
}
