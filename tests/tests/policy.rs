//! Policy end to end: real `hub serve` and `edge run` processes. The hub
//! pushes its signed policy and `edge status` shows the version; a newer
//! version (the hub restarted with a changed `[policy]`) replaces it; an
//! older one (the hub restored from a backup) is not applied; an officer
//! removed from the policy cannot log in on the edge once it has synced;
//! an edge cut off from the hub for longer than the policy allows refuses
//! logins; an edge search writes an access entry that reaches the hub in
//! the node's log and verifies.

use std::time::Duration;

use alpr_e2e::{
    officer_toml, policy_toml, wait_for, Edge, EdgeOptions, Hub, Pki, OFFICER_PASSWORD,
};
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::{verify_log, AccessAction, EntryKind};

const LIMIT: Duration = Duration::from_secs(120);

/// Replace the `[policy]` part (the end) of the hub's config.
fn set_policy(hub: &Hub, toml: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&hub.config)?;
    let head = text
        .split("[policy]")
        .next()
        .unwrap_or_default()
        .to_string();
    std::fs::write(&hub.config, format!("{head}{toml}"))?;
    Ok(())
}

fn policy_version(edge: &Edge) -> Option<u64> {
    edge.status()?["policy_version"].as_u64()
}

fn hub_sees(hub: &Hub, node: &str, version: u64) -> Option<()> {
    let nodes = hub.nodes().ok()?;
    nodes["nodes"]
        .as_array()?
        .iter()
        .any(|n| n["name"] == node && n["policy_version"].as_u64() == Some(version))
        .then_some(())
}

#[test]
fn policy_versions_reach_the_edge_and_a_removed_officer_cannot_log_in() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let node = pki.node("patrol-1")?;
    let v1 = policy_toml(
        "1h",
        &[
            officer_toml("jdoe", OFFICER_PASSWORD)?,
            officer_toml("asmith", OFFICER_PASSWORD)?,
        ],
    );
    let mut hub = Hub::start_with(&pki, dir.path(), &[], &v1)?;
    let opts = EdgeOptions {
        generate: 5,
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    wait_for(LIMIT, "the edge to enforce policy v1", || {
        (policy_version(&edge) == Some(1)).then_some(())
    })?;
    wait_for(LIMIT, "the hub to show v1 for the node", || {
        hub_sees(&hub, "patrol-1", 1)
    })?;
    let (ok, text) = edge.run_as_officer(&session, &["policy", "--json"])?;
    assert!(ok, "{text}");
    assert!(text.contains("jdoe"), "{text}");
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "jdoe logs in under v1: {text}");

    // A backup of the hub at v1, for later.
    hub.proc.stop()?;
    let backup = dir.path().join("hub-data-v1");
    std::fs::create_dir_all(&backup)?;
    std::fs::copy(hub.data.join("hub.redb"), backup.join("hub.redb"))?;
    let config_v1 = std::fs::read_to_string(&hub.config)?;

    // v2: jdoe is removed.
    set_policy(
        &hub,
        &policy_toml("1h", &[officer_toml("asmith", OFFICER_PASSWORD)?]),
    )?;
    hub.restart()?;
    wait_for(LIMIT, "the edge to enforce policy v2", || {
        (policy_version(&edge) == Some(2)).then_some(())
    })?;
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(!ok, "a removed officer logged in: {text}");
    assert!(text.contains("not an officer in policy v2"), "{text}");
    let (ok, text) = edge.run_as_officer(
        &session,
        &["search", "GEN0000?", "--purpose", "stolen-vehicle"],
    )?;
    assert!(
        !ok,
        "the removed officer's old session still searches: {text}"
    );
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "asmith"])?;
    assert!(ok, "{text}");

    // The hub restored from the v1 backup offers v1: not applied.
    hub.proc.stop()?;
    std::fs::copy(backup.join("hub.redb"), hub.data.join("hub.redb"))?;
    std::fs::write(&hub.config, config_v1)?;
    hub.restart()?;
    wait_for(
        LIMIT,
        "the restored hub to hear the node enforces v2",
        || hub_sees(&hub, "patrol-1", 2),
    )?;
    assert_eq!(
        policy_version(&edge),
        Some(2),
        "an older policy was applied"
    );
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(!ok, "v1 came back into force: {text}");
    Ok(())
}

#[test]
fn an_edge_that_cannot_refresh_its_policy_refuses_logins() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let node = pki.node("patrol-2")?;
    let toml = policy_toml("3s", &[officer_toml("jdoe", OFFICER_PASSWORD)?]);
    let mut hub = Hub::start_with(&pki, dir.path(), &[], &toml)?;
    let opts = EdgeOptions {
        generate: 3,
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    wait_for(LIMIT, "the edge to enforce policy v1", || {
        (policy_version(&edge) == Some(1)).then_some(())
    })?;
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    hub.kill9();
    let refusal = wait_for(LIMIT, "logins to be refused on a stale policy", || {
        let (ok, text) = edge
            .run_as_officer(&session, &["login", "--user", "jdoe"])
            .ok()?;
        (!ok && text.contains("has not reached the hub since")).then_some(text)
    })?;
    assert!(
        refusal.contains("logins are refused until it does"),
        "{refusal}"
    );
    let status = edge.status().expect("status");
    assert_eq!(status["policy_stale"], true);
    // Back in touch: logins work again.
    hub.restart()?;
    wait_for(LIMIT, "logins to work again", || {
        let (ok, _) = edge
            .run_as_officer(&session, &["login", "--user", "jdoe"])
            .ok()?;
        ok.then_some(())
    })?;
    Ok(())
}

#[test]
fn an_edge_search_is_logged_and_its_access_entry_reaches_the_hub() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let node = pki.node("patrol-3")?;
    let toml = policy_toml("1h", &[officer_toml("jdoe", OFFICER_PASSWORD)?]);
    let mut hub = Hub::start_with(&pki, dir.path(), &[], &toml)?;
    let opts = EdgeOptions {
        generate: 5,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(5, LIMIT)?;
    wait_for(LIMIT, "the edge to enforce policy v1", || {
        (policy_version(&edge) == Some(1)).then_some(())
    })?;
    let (ok, text) = edge.run_as_officer(
        &session,
        &["search", "GEN00001", "--purpose", "stolen-vehicle"],
    )?;
    assert!(!ok, "a search without a login: {text}");
    let (ok, text) = edge.run_as_officer(&session, &["login", "--user", "jdoe"])?;
    assert!(ok, "{text}");
    let (ok, text) = edge.run_as_officer(&session, &["search", "GEN00001"])?;
    assert!(!ok && text.contains("no purpose"), "{text}");
    let (ok, text) = edge.run_as_officer(
        &session,
        &[
            "search",
            "GEN0000?",
            "--purpose",
            "stolen-vehicle",
            "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text)?;
    let hits = answer["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 5, "{text}");
    assert!(hits.iter().all(|h| h["signature_verified"] == true));
    // Reads, the login, the refused and the allowed search: all synced.
    let n = 5 + 3;
    edge.wait_synced(n, LIMIT)?;
    edge.proc.stop()?;
    hub.proc.stop()?;
    let at_hub = hub.stored_entries("patrol-3")?;
    let report = verify_log(
        &pki.device_cert(&node)?,
        &at_hub,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "{:?}", report.faults);
    let searches: Vec<_> = at_hub
        .iter()
        .filter_map(|e| match &e.header.kind {
            EntryKind::Access(r) if r.action == AccessAction::Search => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(searches.len(), 2, "the refused and the allowed search");
    let allowed = searches.iter().find(|r| r.allowed()).expect("allowed");
    assert_eq!(allowed.user, "jdoe");
    assert_eq!(allowed.agency, "CA0190000");
    assert_eq!(allowed.purpose.as_deref(), Some("stolen-vehicle"));
    assert!(allowed.query.contains("GEN0000?"), "{}", allowed.query);
    assert_eq!(allowed.results, 5);
    Ok(())
}

#[test]
fn a_policy_change_reaches_a_connected_edge_without_a_reconnect() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-4")?;
    let stolen = pki.node("patrol-5")?;
    let toml = policy_toml("1h", &[officer_toml("jdoe", OFFICER_PASSWORD)?]);
    let hub = Hub::start_with(&pki, dir.path(), &[], &toml)?;
    let opts = EdgeOptions {
        generate: 3,
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    wait_for(LIMIT, "the edge to enforce policy v1", || {
        (policy_version(&edge) == Some(1)).then_some(())
    })?;
    let connects = edge.status().expect("status")["connects"].as_u64();
    // Revoking another car's certificate changes the policy (its revoked
    // nodes): the hub signs v2 and pushes it on the live connection.
    let out = hub.run_as(
        "admin",
        &["revoke", &stolen.serial, "--reason", "car stolen"],
    )?;
    assert!(
        out.status.success(),
        "hub revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(LIMIT, "the edge to enforce policy v2", || {
        (policy_version(&edge) == Some(2)).then_some(())
    })?;
    wait_for(LIMIT, "the hub to show v2 for the node", || {
        hub_sees(&hub, "patrol-4", 2)
    })?;
    assert_eq!(
        edge.status().expect("status")["connects"].as_u64(),
        connects,
        "the policy came on the same connection"
    );
    let session = dir.path().join("session.json");
    let (ok, text) = edge.run_as_officer(&session, &["policy", "--json"])?;
    assert!(ok, "{text}");
    let policy: serde_json::Value = serde_json::from_str(&text)?;
    let serials = policy["revoked_serials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        serials
            .iter()
            .any(|s| s.as_str() == Some(stolen.serial.as_str())),
        "{text}"
    );
    Ok(())
}
