//! Several hub processes on one PostgreSQL database, nodes listing them
//! all (`hubs` in `edge.toml`): a node whose first hub is down uploads to
//! the next; a node is held by one hub at a time; what one hub is told
//! (a hotlist import, a legal hold) reaches nodes connected to the other;
//! and a `kill -9` of one hub, or a restart of the database, under load
//! from 20 nodes loses and duplicates nothing: every node's log ends on
//! the hubs' database exactly once, and every chain verifies.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use alpr_e2e::{free_udp_port, wait_for, Edge, EdgeOptions, Hub, Pki, TRAINED};
use alpr_hub::store::postgres::cluster::TempCluster;
use alpr_hub::store::postgres::{PgConfig, PgStore};
use alpr_hub::store::ChainStore;
use alpr_shared::log::SignedEntry;
use alpr_shared::types::DeviceId;

const LIMIT: Duration = Duration::from_secs(300);

const SOURCES: &str = alpr_e2e::NCIC_SOURCE;

/// `[store]` of a hub on `url`; last in `hub.toml`.
fn store_toml(url: &str) -> String {
    format!("\n[store]\nbackend = \"postgres\"\nurl = {url:?}\npool_size = 4\n")
}

/// A database for two hubs, and the two hubs on it (same CA, same hub
/// certificate): `a` bootstrapped the users, `b` joined.
struct TwoHubs {
    cluster: TempCluster,
    url: String,
    a: Hub,
    b: Hub,
}

impl TwoHubs {
    fn start(pki: &Pki, dir: &Path, extra_toml: &str) -> anyhow::Result<TwoHubs> {
        let cluster = TempCluster::start()?;
        let url = cluster.create_database("hubs")?;
        let toml = format!("{extra_toml}{}", store_toml(&url));
        let a_dir = dir.join("hub-a");
        let b_dir = dir.join("hub-b");
        std::fs::create_dir_all(&a_dir)?;
        std::fs::create_dir_all(&b_dir)?;
        let a = Hub::start_with(pki, &a_dir, &[], &toml)?;
        let b = Hub::join_with(pki, &b_dir, &toml)?;
        Ok(TwoHubs { cluster, url, a, b })
    }

    /// The database, opened as a hub process would.
    fn store(&self) -> anyhow::Result<PgStore> {
        PgStore::open(&PgConfig {
            url: self.url.clone(),
            pool_size: 2,
            tls_ca: None,
        })
    }
}

/// `edge status` says the node's log holds `n` reads, all acknowledged.
fn synced(edge: &Edge, n: u64) -> Option<serde_json::Value> {
    let s = edge.status()?;
    (s["log_size"].as_u64() == Some(n) && s["acked"].as_u64() == Some(n)).then_some(s)
}

#[test]
fn a_node_whose_first_hub_is_down_uploads_to_the_next_and_says_which() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let down = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
    let node = pki.node("pole-1")?;
    let opts = EdgeOptions {
        generate: 40,
        ..EdgeOptions::default()
    };
    let edge = Edge::start_hubs(&node, &[down, hub.addr], dir.path(), &opts)?;
    let s = edge.wait_synced(40, LIMIT)?;
    assert_eq!(s["hub"], hub.addr.to_string(), "connected to the second");
    assert_eq!(
        s["hubs"],
        serde_json::json!([down.to_string(), hub.addr.to_string()])
    );
    assert!(
        edge.proc.log_text().contains("trying the next hub"),
        "{}",
        edge.proc.log_tail(20)
    );
    Ok(())
}

#[test]
fn a_node_is_held_by_one_hub_and_what_either_hub_is_told_reaches_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hubs = TwoHubs::start(&pki, dir.path(), SOURCES)?;
    // An account made on a logs in on b (accounts are shared).
    hubs.a.add_user("op1", "operator", TRAINED)?;
    hubs.a.login("op1")?;
    wait_for(Duration::from_secs(10), "op1 logs in on b", || {
        hubs.b.login("op1").ok()
    })?;
    let node = pki.node("pole-1")?;
    let opts = EdgeOptions {
        generate: 30,
        ..EdgeOptions::default()
    };
    // The node connects to b (first in its list).
    let edge = Edge::start_hubs(&node, &[hubs.b.addr, hubs.a.addr], dir.path(), &opts)?;
    let s = edge.wait_synced(30, LIMIT)?;
    assert_eq!(s["hub"], hubs.b.addr.to_string());

    // Another connection of the node on a is sent away: b holds it.
    let rt = tokio::runtime::Runtime::new()?;
    let reason = rt.block_on(async {
        let raw = alpr_e2e::raw::RawNode::connect(hubs.a.addr, &node).await?;
        let closed = tokio::time::timeout(Duration::from_secs(10), raw.conn.closed()).await?;
        anyhow::Ok(closed)
    })?;
    match reason {
        quinn::ConnectionError::ApplicationClosed(ac) => {
            assert_eq!(
                ac.error_code.into_inner(),
                u64::from(alpr_shared::wire::quic::CLOSE_HELD_ELSEWHERE)
            );
            assert_eq!(&ac.reason[..], b"node is connected to another hub");
        }
        other => panic!("not sent away: {other}"),
    }

    // A generation imported on a reaches the node on b.
    let rows = alpr_shared::hotlist::sample::entries(500, 3);
    hubs.a.import_ncic("op1", dir.path(), &rows)?;
    wait_for(Duration::from_secs(30), "the node holds ncic #1", || {
        let s = edge.status()?;
        let held = s["hotlists"]
            .as_array()?
            .iter()
            .any(|l| l[0] == "ncic" && l[1] == 1);
        held.then_some(())
    })?;

    // A hold placed on a reaches it too.
    let (ok, text) = hubs.a.run_text(
        "op1",
        &[
            "hold", "add", "--case", "24-1", "--reason", "homicide", "--plate", "7ABC123",
        ],
    )?;
    assert!(ok, "{text}");
    wait_for(Duration::from_secs(30), "the node holds the hold", || {
        (edge.status()?["active_holds"].as_u64()? == 1).then_some(())
    })?;
    // And b, which the node is connected to, lists it to people.
    let (ok, text) = hubs.b.run_text("op1", &["hold", "list"])?;
    assert!(ok && text.contains("24-1"), "{text}");
    Ok(())
}

#[test]
fn failed_logins_on_two_hubs_add_up_to_one_lock_on_both() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hubs = TwoHubs::start(&pki, dir.path(), "login_lockout = \"10m\"\n")?;
    hubs.a.add_user("ofc", "officer", TRAINED)?;
    wait_for(Duration::from_secs(10), "ofc logs in on b", || {
        hubs.b.login("ofc").ok()
    })?;
    // Five guesses of one name, spread over the two hubs: the limit is
    // five in all, not five per hub.
    for hub in [&hubs.a, &hubs.b, &hubs.a, &hubs.b, &hubs.a] {
        alpr_e2e::wrong_logins(hub, "ofc", 1)?;
    }
    for hub in [&hubs.a, &hubs.b] {
        let err = hub
            .login("ofc")
            .expect_err("a hub let the right password through the lock")
            .to_string();
        assert!(err.contains("locked until") && err.contains("429"), "{err}");
    }
    Ok(())
}

/// 20 nodes, each listing both hubs (half with `a` first), reading
/// `reads` plates each a few milliseconds apart.
fn twenty_nodes(
    pki: &Pki,
    dir: &Path,
    hubs: &TwoHubs,
    reads: u64,
) -> anyhow::Result<Vec<(String, Edge)>> {
    let mut edges = Vec::new();
    for i in 0..20 {
        let name = format!("node-{i:02}");
        let node = pki.node(&name)?;
        let order = if i % 2 == 0 {
            [hubs.a.addr, hubs.b.addr]
        } else {
            [hubs.b.addr, hubs.a.addr]
        };
        let opts = EdgeOptions {
            generate: reads,
            interval: Duration::from_millis(15),
            ..EdgeOptions::default()
        };
        edges.push((name, Edge::start_hubs(&node, &order, dir, &opts)?));
    }
    Ok(edges)
}

/// Every node's whole log is acknowledged; then, with the nodes stopped,
/// the database holds each node's log exactly: the same entries, once
/// each, in order. The hub `auditor` asks checks every chain.
fn nothing_lost_or_twice(
    hubs: &TwoHubs,
    auditor_hub: &Hub,
    edges: &mut [(String, Edge)],
    reads: u64,
) -> anyhow::Result<()> {
    for (name, edge) in edges.iter() {
        wait_for(
            LIMIT,
            &format!("{name}: {reads} reads acknowledged"),
            || synced(edge, reads),
        )
        .map_err(|e| anyhow::anyhow!("{e}\n{}", edge.proc.log_tail(30)))?;
    }
    let out = auditor_hub.run_as("auditor", &["audit", "verify", "--json"])?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", alpr_e2e::output_text(&out)))?;
    assert!(out.status.success(), "{report}");
    assert_eq!(report["authentic"], true, "{report}");
    // The same from the store itself, as an operator checks a database.
    let config = auditor_hub.config.display().to_string();
    let out = auditor_hub.run_as(
        "auditor",
        &["store", "check", "--config", &config, "--json"],
    )?;
    let check: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", alpr_e2e::output_text(&out)))?;
    assert!(out.status.success(), "hub store check: {check}");
    let chains = check["chains"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        chains.len(),
        edges.len() + 1,
        "every node and the access log: {check}"
    );
    let store = hubs.store()?;
    for (name, edge) in edges.iter_mut() {
        edge.proc.stop()?;
        let own = edge.stored_entries()?;
        assert_eq!(own.len() as u64, reads, "{name}'s own log");
        let held: Vec<SignedEntry> = store
            .entries(&DeviceId::new(name.as_str())?, 0, usize::MAX)?
            .iter()
            .map(|b| SignedEntry::decode(b))
            .collect::<Result<_, _>>()?;
        assert_eq!(held.len(), own.len(), "{name}: entries on the hubs");
        for (i, (h, o)) in held.iter().zip(&own).enumerate() {
            assert_eq!(h.seq(), i as u64, "{name}: in order, once each");
            assert_eq!(
                h.encode(),
                o.encode(),
                "{name}: entry {i} as the node signed it"
            );
        }
        let record = store
            .node(&DeviceId::new(name.as_str())?)?
            .ok_or_else(|| anyhow::anyhow!("{name} unknown to the hubs"))?;
        assert_eq!(record.next_seq, reads, "{name}: the hubs' progress");
    }
    Ok(())
}

/// Wait until the nodes have uploaded some of their reads, and check
/// they have more to upload (so a fault comes mid-ingest).
fn mid_ingest(edges: &[(String, Edge)], reads: u64) -> anyhow::Result<()> {
    let total = reads * edges.len() as u64;
    let acked = wait_for(LIMIT, "uploads under way", || {
        let acked: u64 = edges
            .iter()
            .filter_map(|(_, e)| e.status()?["acked"].as_u64())
            .sum();
        (acked >= total / 10).then_some(acked)
    })?;
    anyhow::ensure!(
        acked < total / 2,
        "uploads were nearly done ({acked} of {total}) before the fault"
    );
    Ok(())
}

#[test]
fn a_hub_killed_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let mut hubs = TwoHubs::start(&pki, dir.path(), "")?;
    let reads = 600;
    let mut edges = twenty_nodes(&pki, dir.path(), &hubs, reads)?;
    mid_ingest(&edges, reads)?;
    let started = Instant::now();
    hubs.a.kill9();
    // Every node ends on b, with its whole log.
    for (name, edge) in &edges {
        wait_for(LIMIT, &format!("{name} on hub b"), || {
            (edge.status()?["hub"] == hubs.b.addr.to_string()).then_some(())
        })?;
    }
    eprintln!("every node moved to hub b in {:?}", started.elapsed());
    nothing_lost_or_twice(&hubs, &hubs.b, &mut edges, reads)?;
    Ok(())
}

#[test]
fn a_database_restart_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hubs = TwoHubs::start(&pki, dir.path(), "")?;
    let reads = 600;
    let mut edges = twenty_nodes(&pki, dir.path(), &hubs, reads)?;
    mid_ingest(&edges, reads)?;
    hubs.cluster.stop_immediate()?;
    std::thread::sleep(Duration::from_secs(2));
    hubs.cluster.restart()?;
    let a = &hubs.a;
    nothing_lost_or_twice(&hubs, a, &mut edges, reads)?;
    Ok(())
}
