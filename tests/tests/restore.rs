//! A hub restored from a backup gets back what it lost (issue 8.6): the
//! entries and the images, from the edge that still has them; until then
//! `hub audit verify` reports the reads whose images are missing, and
//! `edge status` shows that the hub holds less than it had acknowledged.
//! And its numbers go on past what the edges hold (issue 22.9): a new
//! policy and a new list made after the restore reach every edge.

use std::path::Path;
use std::time::Duration;

use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki, TRAINED};
use alpr_hub::store::ImageStore;

const LIMIT: Duration = Duration::from_secs(180);

const SOURCES: &str = alpr_e2e::NCIC_SOURCE;

fn audit_text(hub: &Hub) -> anyhow::Result<String> {
    let out = hub.run_as("auditor", &["audit", "verify"])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn images_held(hub: &Hub) -> Option<u64> {
    hub.nodes().ok()?["nodes"][0]["images"].as_u64()
}

#[test]
fn a_hub_restored_from_an_older_copy_gets_entries_and_images_back() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-r")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;

    // On a metered link the images wait: the hub holds 40 entries and no
    // image when the backup is taken.
    let metered = EdgeOptions {
        generate: 40,
        images: true,
        metered: true,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &metered)?;
    edge.wait_synced(40, LIMIT)?;
    edge.proc.stop()?;
    hub.proc.stop()?;
    let db = hub.data.join("hub.redb");
    let backup = dir.path().join("hub-backup.redb");
    std::fs::copy(&db, &backup)?;

    // The hub carries on: 100 entries, all their images.
    hub.restart()?;
    let unmetered = EdgeOptions {
        generate: 100,
        images: true,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &unmetered)?;
    edge.wait_synced(100, LIMIT)?;
    wait_for(LIMIT, "all images uploaded", || {
        (edge.status()?["images_pending"].as_u64() == Some(0)).then_some(())
    })?;
    assert_eq!(images_held(&hub), Some(200));
    edge.proc.stop()?;
    hub.proc.stop()?;

    // Restored from the backup: the audit notices the missing images.
    std::fs::copy(&backup, &db)?;
    hub.restart()?;
    let text = audit_text(&hub)?;
    assert!(
        text.contains("MISSING IMAGES: patrol-r: 40 reads whose images the hub does not hold"),
        "{text}"
    );

    // The edge comes back: the hub gets the lost entries and every image.
    edge.proc.start()?;
    let st = wait_for(LIMIT, "the edge to see the hub lost reads", || {
        let s = edge.status()?;
        s["hub_lost"].is_string().then_some(s)
    })?;
    assert!(
        st["hub_lost"]
            .as_str()
            .is_some_and(|l| l.contains("acknowledged 100") && l.contains("holds 40")),
        "{st}"
    );
    let st = edge.wait_synced(100, LIMIT)?;
    assert_eq!(st["receipt_current"], true, "{st}");
    wait_for(LIMIT, "the hub to hold every image again", || {
        (images_held(&hub)? == 200).then_some(())
    })?;
    let text = audit_text(&hub)?;
    assert!(!text.contains("MISSING IMAGES"), "{text}");
    edge.proc.stop()?;
    hub.proc.stop()?;

    let at_edge = edge.stored_entries()?;
    assert_eq!(hub.stored_entries("patrol-r")?, at_edge);
    let store = alpr_hub::store::redb::RedbStore::open(&db)?;
    for e in &at_edge {
        let r = e
            .read()
            .ok_or_else(|| anyhow::anyhow!("a read without content"))?;
        for h in [r.crop_hash, r.overview_hash] {
            assert!(store.has_image(&h)?, "image of entry {} missing", e.seq());
        }
    }
    Ok(())
}

/// The version of the policy the hub has in force.
fn hub_policy(hub: &Hub) -> anyhow::Result<u64> {
    let out = hub.run_as("auditor", &["policy", "show", "--json"])?;
    anyhow::ensure!(out.status.success(), "{}", alpr_e2e::output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    anyhow::Context::context(v["version"].as_u64(), "no policy version")
}

/// `hub policy set` of new edge retention days, as the administrator.
fn set_edge_retention(hub: &Hub, dir: &Path, days: u32) -> anyhow::Result<()> {
    let file = dir.join(format!("policy-{days}.toml"));
    std::fs::write(&file, format!("edge_retention_days = {days}\n"))?;
    let out = hub
        .as_user("admin")?
        .args(["policy", "set"])
        .arg(&file)
        .output()?;
    anyhow::ensure!(out.status.success(), "{}", alpr_e2e::output_text(&out));
    Ok(())
}

/// Every edge enforces policy `version` and holds generation `list` of ncic.
fn edges_hold(edges: &[&Edge], version: u64, list: u64) -> Option<()> {
    for e in edges {
        let s = e.status()?;
        let lists = s["hotlists"].as_array()?;
        let held = lists.iter().any(|l| l[0] == "ncic" && l[1] == list);
        if s["policy_version"].as_u64() != Some(version) || !held {
            return None;
        }
    }
    Some(())
}

#[test]
fn after_a_restore_a_new_policy_and_a_new_list_reach_every_edge() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let mut hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    let rows = alpr_shared::hotlist::sample::entries(300, 7);
    hub.import_ncic("op1", dir.path(), &rows)?;
    let opts = EdgeOptions {
        generate: 3,
        ..EdgeOptions::default()
    };
    let pole = Edge::start(&pki.node("pole-r")?, hub.addr, dir.path(), &opts)?;
    let car = Edge::start(&pki.node("car-r")?, hub.addr, dir.path(), &opts)?;
    let v0 = hub_policy(&hub)?;
    wait_for(LIMIT, "both edges on the first policy and list", || {
        edges_hold(&[&pole, &car], v0, 1)
    })?;

    // The backup is taken here.
    hub.proc.stop()?;
    let db = hub.data.join("hub.redb");
    let backup = dir.path().join("hub-backup.redb");
    std::fs::copy(&db, &backup)?;
    hub.restart()?;

    // Two policy versions and two generations later…
    set_edge_retention(&hub, dir.path(), 20)?;
    set_edge_retention(&hub, dir.path(), 21)?;
    hub.import_ncic("op1", dir.path(), &rows)?;
    hub.import_ncic("op1", dir.path(), &rows)?;
    wait_for(LIMIT, "both edges on the later policy and list", || {
        edges_hold(&[&pole, &car], v0 + 2, 3)
    })?;

    // …the hub is restored from the backup.
    hub.proc.stop()?;
    std::fs::copy(&backup, &db)?;
    hub.restart()?;

    // The edges show the hub what it had signed: the policy they enforce
    // is the hub's in force again, and it knows ncic went to 3.
    wait_for(LIMIT, "the hub to take back the edges' policy", || {
        (hub_policy(&hub).ok()? == v0 + 2).then_some(())
    })?;

    // A new policy and a new list reach every edge.
    set_edge_retention(&hub, dir.path(), 9)?;
    hub.import_ncic("op1", dir.path(), &rows)?;
    wait_for(LIMIT, "both edges on the new policy and list", || {
        edges_hold(&[&pole, &car], v0 + 3, 4)
    })?;
    assert_eq!(hub_policy(&hub)?, v0 + 3);
    Ok(())
}
