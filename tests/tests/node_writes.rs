//! What nodes may change in the shared documents, end to end: real
//! `hub serve` and `edge run` processes. A pole's copy of the holds with a
//! hold released in it, and a car's copy of the local entries with another
//! officer's entry removed (signed by an officer, with their own key), are
//! sent to the hub as a tampered node would: both are refused and each
//! refusal is in the hub's access log once, however often the node sends
//! it again; the hold stays in force and the entry stays listed. An
//! officer's own signed entry from the same car still reaches the hub.

use std::path::Path;
use std::time::Duration;

use alpr_e2e::{
    officer_toml, policy_toml, wait_for, Edge, EdgeOptions, Hub, NodeFiles, Pki, OFFICER_PASSWORD,
    TRAINED,
};
use alpr_shared::control::holds::Release;
use alpr_shared::control::holds_doc::HoldsDoc;
use alpr_shared::control::officer::{OfficerKey, OfficerSigner};
use alpr_shared::crypto::SecretKey;
use alpr_shared::hotlist::local::LocalEntriesDoc;
use alpr_shared::hotlist::Removal;
use alpr_shared::types::{DeviceId, DeviceKind, UnixMillis};

use alpr_e2e::{id_of, placed_id};

const LIMIT: Duration = Duration::from_secs(120);

/// The hub's access records, as the auditor reads them.
fn access(hub: &Hub) -> anyhow::Result<Vec<serde_json::Value>> {
    let (ok, text) = hub.run_text("auditor", &["audit", "access", "--json"])?;
    anyhow::ensure!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

/// The refused records whose text mentions `what`.
fn refusals(records: &[serde_json::Value], what: &str) -> Vec<serde_json::Value> {
    records
        .iter()
        .filter(|r| {
            r["query"].as_str().is_some_and(|q| q.contains(what))
                && r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("refused"))
        })
        .cloned()
        .collect()
}

/// Change an edge's own documents while it is stopped, as a tampered node
/// would, then leave its store as it found it.
fn tamper(
    edge: &Edge,
    node: &NodeFiles,
    holds: impl FnOnce(&mut HoldsDoc),
    entries: impl FnOnce(&mut LocalEntriesDoc),
) -> anyhow::Result<()> {
    use alpr_edge::store::{HoldsChange, LocalEntriesChange, StoreHandle};
    let key = SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&node.key)?)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (store, join) = StoreHandle::open(
        &edge.data.join("edge.redb"),
        key,
        DeviceId::new(&node.name)?,
    )?;
    rt.block_on(async {
        if let Some(bytes) = store.holds_doc()? {
            let mut doc = HoldsDoc::load(&bytes)?;
            holds(&mut doc);
            store
                .change_holds(HoldsChange::Merge {
                    doc: doc.save(),
                    from_hub: false,
                })
                .await?;
        }
        if let Some(bytes) = store.local_entries_doc()? {
            let mut doc = LocalEntriesDoc::load(&bytes)?;
            entries(&mut doc);
            store
                .change_local_entries(LocalEntriesChange::Merge { doc: doc.save() })
                .await?;
        }
        anyhow::Ok(())
    })?;
    drop(store);
    join.join()
        .map_err(|_| anyhow::anyhow!("the store's writer panicked"))?;
    Ok(())
}

/// The signing key an officer's `[[policy.officers]]` entry names,
/// unlocked with their password, signing on `node`.
fn signer_of(officer: &str, toml: &str, node: &str) -> anyhow::Result<OfficerSigner> {
    let text = toml
        .lines()
        .find_map(|l| l.strip_prefix("signing_key = "))
        .ok_or_else(|| anyhow::anyhow!("no signing key in {toml}"))?;
    let key: OfficerKey = text.trim_matches('"').parse()?;
    Ok(OfficerSigner::new(
        officer,
        node,
        key.unlock(OFFICER_PASSWORD)?,
    ))
}

fn log_in(edge: &Edge, session: &Path, user: &str) -> anyhow::Result<()> {
    let (ok, text) = edge.run_as_officer(session, &["login", "--user", user])?;
    anyhow::ensure!(ok, "{text}");
    Ok(())
}

#[test]
fn a_poles_release_and_a_cars_removal_of_anothers_entry_are_refused_and_logged_once(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let session = dir.path().join("session.json");
    let pole_node = pki.node_of_kind("pole-1", DeviceKind::Pole)?;
    let car_node = pki.node("patrol-5")?;
    let jdoe = officer_toml("jdoe", OFFICER_PASSWORD)?;
    let mut hub = Hub::start_with(
        &pki,
        dir.path(),
        &[],
        &policy_toml("1h", std::slice::from_ref(&jdoe)),
    )?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    let (ok, text) = hub.run_text(
        "op1",
        &[
            "hold", "add", "--case", "24-1", "--reason", "homicide", "--plate", "7abc123",
        ],
    )?;
    assert!(ok, "{text}");
    let held = placed_id(&text)?;
    // An operator's entry, which no officer may remove from a car.
    let (ok, text) = hub.run_text(
        "op1",
        &[
            "hotlist",
            "add",
            "7ab-c*",
            "--reason",
            "amber alert",
            "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let amber = id_of(&text)?;

    let opts = EdgeOptions {
        generate: 3,
        ..EdgeOptions::default()
    };
    let mut pole = Edge::start(&pole_node, hub.addr, dir.path(), &opts)?;
    let mut car = Edge::start(&car_node, hub.addr, dir.path(), &opts)?;
    for edge in [&pole, &car] {
        wait_for(LIMIT, "the hub's hold and entry on the edge", || {
            let s = edge.status()?;
            (s["active_holds"].as_u64() == Some(1)).then_some(())
        })?;
    }
    log_in(&car, &session, "jdoe")?;
    wait_for(LIMIT, "the operator's entry on the car", || {
        let (ok, text) = car
            .run_as_officer(&session, &["hotlist", "list", "--json"])
            .ok()?;
        (ok && text.contains(&amber)).then_some(())
    })?;

    // Tampered: the pole releases the hold, the car's officer removes the
    // operator's entry (signed with jdoe's own key).
    pole.proc.stop()?;
    car.proc.stop()?;
    let now = UnixMillis::now();
    tamper(
        &pole,
        &pole_node,
        |doc| {
            let _ = doc.release(
                &held,
                Release {
                    by: "jdoe".into(),
                    at: now,
                    reason: "no longer needed".into(),
                },
            );
        },
        |_| {},
    )?;
    let signer = std::sync::Arc::new(signer_of("jdoe", &jdoe, &car_node.name)?);
    tamper(
        &car,
        &car_node,
        |_| {},
        |doc| {
            doc.sign_as(signer.clone());
            let _ = doc.remove(
                &amber,
                Removal {
                    by: "jdoe".into(),
                    at: now,
                    reason: "found".into(),
                },
            );
        },
    )?;
    pole.proc.start()?;
    car.proc.start()?;
    let release_refused = format!("hold {held} released");
    let removal_refused = format!("entry {amber} removed");
    wait_for(LIMIT, "both refusals in the hub's access log", || {
        let log = access(&hub).ok()?;
        (!refusals(&log, &release_refused).is_empty()
            && !refusals(&log, &removal_refused).is_empty())
        .then_some(())
    })?;

    // The officer's own entry from that car still counts; it travels with
    // the same tampered document, which the hub has then taken again.
    log_in(&car, &session, "jdoe")?;
    let (ok, text) = car.run_as_officer(
        &session,
        &[
            "hotlist",
            "add",
            "8xy*",
            "--reason",
            "hit and run",
            "--json",
        ],
    )?;
    assert!(ok, "{text}");
    let mine = id_of(&text)?;
    wait_for(LIMIT, "the officer's entry at the hub", || {
        let (ok, text) = hub
            .run_text("op1", &["hotlist", "list", "--local", "--json"])
            .ok()?;
        (ok && text.contains(&mine)).then_some(())
    })?;
    // The edges again send what the hub refused (after each change and
    // each connection): it is recorded once.
    // The hub sends its holds after every hello: a new refresh time on the
    // pole says it connected again (and sent its documents again).
    let before = wait_for(LIMIT, "the pole's status", || {
        pole.status().map(|s| s["holds_refreshed_at"].clone())
    })?;
    pole.proc.stop()?;
    pole.proc.start()?;
    wait_for(LIMIT, "the pole to sync again", || {
        let s = pole.status()?;
        (s["holds_refreshed_at"] != before).then_some(())
    })?;
    let log = access(&hub)?;
    let release = refusals(&log, &release_refused);
    assert_eq!(release.len(), 1, "{release:#?}");
    let release = release[0].to_string();
    assert!(
        release.contains("pole-1") && release.contains("poles change no"),
        "{release}"
    );
    let removal = refusals(&log, &removal_refused);
    assert_eq!(removal.len(), 1, "{removal:#?}");
    let removal = removal[0].to_string();
    assert!(
        removal.contains("patrol-5")
            && removal.contains("jdoe")
            && removal.contains("only the entries they added"),
        "{removal}"
    );
    assert!(
        log.iter().any(|r| {
            r["query"]
                .as_str()
                .is_some_and(|q| q.contains(&format!("entry {mine} added")))
                && r["outcome"] == "allowed"
        }),
        "the officer's own entry is in the log, allowed"
    );

    // The hold is still in force, the entry still listed, at the hub.
    let (ok, text) = hub.run_text("op1", &["hold", "list", "--json"])?;
    assert!(ok && text.contains(&held), "{text}");
    let (ok, text) = hub.run_text("op1", &["hotlist", "list", "--local", "--json"])?;
    assert!(ok && text.contains(&amber), "{text}");
    pole.proc.stop()?;
    car.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}
