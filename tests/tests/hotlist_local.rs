//! Local hotlist entries end to end: real `hub serve` and `edge run`
//! processes. An operator adds a partial plate at the hub and it reaches
//! the edge; an officer adds one on the edge and it reaches the hub; with
//! the edge's link cut, the officer adds another and edits the first of
//! theirs while the hub removes that very entry ("vehicle recovered");
//! once the edge reconnects, hub and edge list the same entries: the one
//! added offline is there and the removal won over the concurrent edit.

use std::path::Path;
use std::time::Duration;

use alpr_e2e::{
    free_udp_port, officer_toml, policy_toml, wait_for, Edge, EdgeOptions, Hub, Pki,
    OFFICER_PASSWORD, TRAINED,
};

use alpr_e2e::id_of;

const LIMIT: Duration = Duration::from_secs(120);

/// (id, plate, colour, removed) of each entry, sorted by id.
type Row = (String, String, String, bool);

fn rows(v: &serde_json::Value) -> Option<Vec<Row>> {
    Some(
        v.as_array()?
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or_default().to_string(),
                    e["plate"].as_str().unwrap_or_default().to_string(),
                    e["colour"].as_str().unwrap_or_default().to_string(),
                    !e["removed"].is_null(),
                )
            })
            .collect(),
    )
}

fn hub_entries(hub: &Hub) -> Option<Vec<Row>> {
    let (ok, text) = hub
        .run_text("op1", &["hotlist", "list", "--local", "--all", "--json"])
        .ok()?;
    ok.then_some(())?;
    rows(&serde_json::from_str(&text).ok()?)
}

fn edge_entries(edge: &Edge, session: &Path) -> Option<Vec<Row>> {
    let (ok, text) = edge
        .run_as_officer(session, &["hotlist", "list", "--all", "--json"])
        .ok()?;
    ok.then_some(())?;
    rows(&serde_json::from_str(&text).ok()?)
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
fn entries_travel_both_ways_and_a_hub_removal_beats_an_offline_edit() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let node = pki.node("patrol-4")?;
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

    // An operator adds a partial plate; a bad pattern is refused.
    let (ok, text) = hub.run_text("op1", &["hotlist", "add", "7*", "--reason", "shooting"])?;
    assert!(!ok, "a one-character pattern was added: {text}");
    let (ok, text) = hub.run_text(
        "op1",
        &[
            "hotlist",
            "add",
            "7ab-c*",
            "--reason",
            "shooting on 5th",
            "--case",
            "24-77",
            "--expires",
            "500d",
            "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let from_hub = id_of(&text)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let created = v["created_at"].as_u64().unwrap_or_default();
    let expires = v["expires_at"].as_u64().unwrap_or_default();
    assert!(
        expires <= created + 100 * 86_400_000,
        "policy caps the expiry at 100 days: {text}"
    );
    // An officer at the hub may add, but not remove another's entry.
    let (ok, text) = hub.run_text(
        "ofc1",
        &["hotlist", "remove", &from_hub, "--reason", "mine now"],
    )?;
    assert!(!ok, "an officer removed an operator's entry: {text}");
    // An officer adds one, and may remove it.
    let (ok, text) = hub.run_text(
        "ofc1",
        &[
            "hotlist",
            "add",
            "9ZZ?",
            "--reason",
            "hit and run",
            "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let officers = id_of(&text)?;
    let (ok, text) = hub.run_text(
        "ofc1",
        &[
            "hotlist",
            "remove",
            &officers,
            "--reason",
            "entered by mistake",
        ],
    )?;
    assert!(ok, "{text}");

    let opts = EdgeOptions {
        generate: 3,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(3, LIMIT)?;
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    wait_for(LIMIT, "the hub's entry on the edge", || {
        let at_edge = edge_entries(&edge, &session)?;
        (at_edge.len() == 2 && at_edge.iter().any(|r| r.0 == from_hub && r.1 == "7ABC*"))
            .then_some(())
    })?;

    // The officer adds one on the edge: it reaches the hub.
    let (ok, text) = edge.run_as_officer(
        &session,
        &["hotlist", "add", "5XY?12", "--reason", "pursuit", "--json"],
    )?;
    assert!(ok, "{text}");
    let edited = id_of(&text)?;
    wait_for(LIMIT, "the edge's entry at the hub", || {
        hub_entries(&hub)?
            .iter()
            .any(|r| r.0 == edited)
            .then_some(())
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
            "hotlist", "add", "8KL*", "--reason", "robbery", "--colour", "white", "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let offline = id_of(&text)?;
    let (ok, text) =
        edge.run_as_officer(&session, &["hotlist", "edit", &edited, "--colour", "red"])?;
    assert!(ok, "{text}");
    // Meanwhile the hub removes that entry: the vehicle was recovered.
    let (ok, text) = hub.run_text(
        "op1",
        &[
            "hotlist",
            "remove",
            &edited,
            "--reason",
            "vehicle recovered",
        ],
    )?;
    assert!(ok, "{text}");

    // Reconnect.
    edge.proc.stop()?;
    set_hub(&edge, &hub.addr.to_string())?;
    edge.proc.start()?;
    wait_for(LIMIT, "the edge to run again", || edge.status())?;
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    let mut want: Vec<Row> = vec![
        (from_hub.clone(), "7ABC*".into(), String::new(), false),
        (edited.clone(), "5XY?12".into(), "red".into(), true),
        (offline.clone(), "8KL*".into(), "white".into(), false),
        (officers.clone(), "9ZZ?".into(), String::new(), true),
    ];
    want.sort();
    let both = wait_for(LIMIT, "hub and edge to list the same entries", || {
        let at_hub = hub_entries(&hub)?;
        let at_edge = edge_entries(&edge, &session)?;
        (at_hub == want && at_edge == want).then_some(at_hub)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: hub {:?}, edge {:?}\nedge log: {}",
            hub_entries(&hub),
            edge_entries(&edge, &session),
            edge.proc.log_tail(30)
        )
    })?;
    assert_eq!(both, want);
    // Only active entries alert: the removed one is not listed as active.
    let (ok, text) = edge.run_as_officer(&session, &["hotlist", "list", "--json"])?;
    assert!(ok, "{text}");
    let active = rows(&serde_json::from_str(&text)?).unwrap_or_default();
    assert_eq!(active.len(), 2, "{text}");
    assert!(active.iter().all(|r| r.0 != edited), "{text}");
    wait_for(LIMIT, "edge status to count the active entries", || {
        (edge.status()?["active_local_entries"].as_u64() == Some(2)).then_some(())
    })?;
    // Each change is in the hub's access log.
    let (ok, text) = hub.run_text("auditor", &["audit", "access", "--json"])?;
    assert!(ok, "{text}");
    for action in ["hotlist-add", "hotlist-remove"] {
        assert!(
            text.contains(action),
            "no {action} in the access log: {text}"
        );
    }
    edge.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}
