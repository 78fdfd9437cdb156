//! Legal holds end to end: real `hub serve` and `edge run` processes. An
//! operator places holds at the hub and they reach the edge; with the
//! edge's link cut, an officer places a hold on the edge while the hub
//! releases ANOTHER hold; once the edge reconnects both survive: hub and
//! edge list the same holds, the edge's active, the other released.

use std::path::Path;
use std::time::Duration;

use alpr_e2e::{
    free_udp_port, officer_toml, policy_toml, wait_for, Edge, EdgeOptions, Hub, Pki,
    OFFICER_PASSWORD, TRAINED,
};

use alpr_e2e::placed_id;

const LIMIT: Duration = Duration::from_secs(120);

/// (id, active) of each hold the hub lists, sorted by id.
fn hub_holds(hub: &Hub) -> Option<Vec<(String, bool)>> {
    let (ok, text) = hub
        .run_text("op1", &["hold", "list", "--all", "--json"])
        .ok()?;
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(summary(v.as_array()?))
}

fn edge_holds(edge: &Edge, session: &Path) -> Option<Vec<(String, bool)>> {
    let (ok, text) = edge
        .run_as_officer(session, &["hold", "list", "--all", "--json"])
        .ok()?;
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(summary(v["holds"].as_array()?))
}

fn summary(holds: &[serde_json::Value]) -> Vec<(String, bool)> {
    holds
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap_or_default().to_string(),
                h["released"].is_null(),
            )
        })
        .collect()
}

/// Point the edge's config at another hub address.
fn set_hub(edge: &Edge, addr: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&edge.config)?;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("hub = ") {
                format!("hub = \"{addr}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&edge.config, out.join("\n") + "\n")?;
    Ok(())
}

#[test]
fn a_hold_placed_offline_and_another_released_meanwhile_both_survive() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let node = pki.node("patrol-3")?;
    let mut hub = Hub::start_with(
        &pki,
        dir.path(),
        &[],
        &policy_toml("1h", &[officer_toml("jdoe", OFFICER_PASSWORD)?]),
    )?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;

    // Officers at the hub may not manage holds; an empty scope is refused.
    let (ok, text) = hub.run_text("ofc1", &["hold", "list"])?;
    assert!(!ok, "an officer listed holds: {text}");
    let (ok, text) = hub.run_text("op1", &["hold", "add", "--case", "24-1", "--reason", "r"])?;
    assert!(!ok, "a hold without scope was placed: {text}");

    let (ok, text) = hub.run_text(
        "op1",
        &[
            "hold", "add", "--case", "24-1", "--reason", "homicide", "--plate", "7abc123",
        ],
    )?;
    assert!(ok, "{text}");
    let other = placed_id(&text)?;

    let opts = EdgeOptions {
        generate: 5,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(5, LIMIT)?;
    wait_for(LIMIT, "the hub's hold on the edge", || {
        let s = edge.status()?;
        (s["active_holds"].as_u64() == Some(1) && !s["holds_refreshed_at"].is_null()).then_some(())
    })?;

    // Cut the link: the edge now looks for its hub where none listens.
    edge.proc.stop()?;
    set_hub(&edge, &format!("127.0.0.1:{}", free_udp_port()?))?;
    edge.proc.start()?;
    wait_for(LIMIT, "the edge to run offline", || edge.status())?;
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    let (ok, text) = edge.run_as_officer(
        &session,
        &[
            "hold", "add", "--case", "24-9", "--reason", "pursuit", "--plate", "8XYZ999",
        ],
    )?;
    assert!(ok, "{text}");
    let mine = placed_id(&text)?;
    // Meanwhile the hub releases the other hold.
    let (ok, text) = hub.run_text("op1", &["hold", "release", &other, "--reason", "closed"])?;
    assert!(ok, "{text}");

    // Reconnect.
    edge.proc.stop()?;
    set_hub(&edge, &hub.addr.to_string())?;
    edge.proc.start()?;
    wait_for(LIMIT, "the edge to run again", || edge.status())?;
    // Sessions on an edge end with its process.
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    let mut want = vec![(other.clone(), false), (mine.clone(), true)];
    want.sort();
    let both = wait_for(LIMIT, "hub and edge to list the same holds", || {
        let at_hub = hub_holds(&hub)?;
        let at_edge = edge_holds(&edge, &session)?;
        (at_hub == want && at_edge == want).then_some(at_hub)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: hub {:?}, edge {:?}\nedge log: {}",
            hub_holds(&hub),
            edge_holds(&edge, &session),
            edge.proc.log_tail(30)
        )
    })?;
    assert_eq!(both, want);
    let (ok, text) = hub.run_text("op1", &["hold", "show", &mine])?;
    assert!(
        ok && text.contains("patrol-3") && text.contains("jdoe"),
        "{text}"
    );
    // The auditor sees both: the one in force and the one released, with
    // who released it.
    let (ok, text) = hub.run_text("auditor", &["audit", "holds", "--json"])?;
    assert!(ok, "{text}");
    let audited: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    assert_eq!(summary(&audited), want, "{text}");
    assert!(
        audited
            .iter()
            .any(|h| h["id"] == other.as_str() && h["released"]["by"] == "op1"),
        "{text}"
    );
    edge.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}
