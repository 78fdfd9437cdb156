//! A hub restored from a backup gets back what it lost (issue 8.6): the
//! entries and the images, from the edge that still has them; until then
//! `hub audit verify` reports the reads whose images are missing, and
//! `edge status` shows that the hub holds less than it had acknowledged.

use std::time::Duration;

use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_hub::store::HubStorage;

const LIMIT: Duration = Duration::from_secs(180);

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
