//! The newcomer's story (what `just demo` shows), with assertions at each
//! step: real photos through real models into signed reads, synced over
//! QUIC, the patrol car offline for a while, nothing lost or duplicated,
//! every log verified at the hub from the CA certificate alone.

use std::time::Duration;

use alpr_e2e::story::{run, StoryOptions};

#[test]
fn photos_become_signed_reads_at_the_hub_even_through_an_outage() {
    let out = tempfile::tempdir().expect("tmp");
    let photos = 24;
    let outcome = run(&StoryOptions {
        photos: alpr_e2e::shared_dir().join("data/plates/us"),
        models: alpr_e2e::shared_dir().join("models"),
        out: out.path().to_path_buf(),
        limit: photos,
        vehicle_interval: Duration::from_millis(300),
        verbose: false,
        serve: false,
    })
    .expect("the story runs to its end");

    assert_eq!(outcome.nodes.len(), 2);
    // pole-2's live RTSP camera read the video's passes and the hub has them.
    assert!(outcome.camera_ok, "{}", outcome.camera);
    let total_photos: usize = outcome.nodes.iter().map(|n| n.photos).sum();
    assert_eq!(total_photos, photos, "every photo went to one camera");
    for n in &outcome.nodes {
        // Every photo replayed was looked at, and most hold a readable plate.
        assert_eq!(n.frames as usize, n.photos, "{}: frames done", n.name);
        assert!(
            n.reads.len() * 10 >= n.photos * 7,
            "{}: only {} reads from {} photos",
            n.name,
            n.reads.len(),
            n.photos
        );
        // Each read the node logged is one entry of its log, all at the hub.
        assert_eq!(n.log_reads, n.reads.len(), "{}: reads in its log", n.name);
        assert_eq!(n.acked, n.log_size, "{}: acknowledged by the hub", n.name);
    }
    let car = outcome
        .nodes
        .iter()
        .find(|n| n.name == "car-7")
        .expect("car");
    assert!(car.offline_reads > 0, "the car read plates while cut off");
    assert!(
        outcome.hub_nodes.contains("car-7") && outcome.hub_nodes.contains("pole-1"),
        "{}",
        outcome.hub_nodes
    );

    // Lawful access: the officer is listed with a training record; a
    // search for a purpose that needs a case number is refused without
    // one; with it, the plate is found, and the reads' signatures verify.
    assert!(
        outcome.users.contains(alpr_e2e::story::OFFICER) && outcome.users.contains("officer"),
        "{}",
        outcome.users
    );
    assert!(
        !outcome.refused_search_ok && outcome.refused_search.contains("case number"),
        "{}",
        outcome.refused_search
    );
    assert!(outcome.search_ok, "hub search failed:\n{}", outcome.search);
    assert!(
        outcome.search.contains(&outcome.searched_plate) && outcome.search.contains("pole-1"),
        "{}",
        outcome.search
    );
    assert!(!outcome.search.contains("BAD"), "{}", outcome.search);
    // The auditor sees that search with the four statutory fields: when
    // (a row's time), what (the plate), who and for which agency, and why.
    let row = outcome
        .access_audit
        .lines()
        .find(|l| l.contains(alpr_e2e::story::OFFICER) && l.contains("26-004711"))
        .unwrap_or_else(|| panic!("no access row of the search:\n{}", outcome.access_audit));
    for field in [
        outcome.searched_plate.as_str(),
        alpr_e2e::AGENCY,
        "robbery",
        "search",
    ] {
        assert!(row.contains(field), "{field} missing from {row}");
    }

    // Evidence: the supervisor's hold of the case, a retention run that
    // purges nothing of it, no export to a federal agency, and an export
    // to the county DA that verifies offline, with a report a clerk opens.
    assert!(outcome.hold_ok, "hub hold add failed:\n{}", outcome.hold);
    assert!(
        outcome.retention.contains("0 reads purged"),
        "{}",
        outcome.retention
    );
    assert!(
        !outcome.federal_export_ok && outcome.federal_export.contains("1798.90.55"),
        "{}",
        outcome.federal_export
    );
    assert!(outcome.export_ok, "hub export failed:\n{}", outcome.export);
    assert!(
        outcome.evidence_ok && outcome.evidence_verify.contains("AUTHENTIC"),
        "hub verify of the evidence failed:\n{}",
        outcome.evidence_verify
    );
    assert!(
        outcome.report_html.contains(&outcome.searched_plate)
            && outcome.report_html.contains("data:image/jpeg;base64,"),
        "the HTML report lacks the read or its photos"
    );

    // Hotlists: the extract imported, a partial plate listed; a listed car
    // passed car-7, whose officer saw the alert with its entry, how it
    // matched and how old the list is, verified it in three stages, and
    // the hub shows the alert with them.
    assert!(outcome.import_ok, "hub hotlist import:\n{}", outcome.import);
    assert!(
        outcome.import.contains("generation 1"),
        "{}",
        outcome.import
    );
    assert!(outcome.local_add_ok, "hub hotlist add failed");
    assert!(
        outcome
            .listed
            .iter()
            .any(|p| outcome.alert_show.contains(p.as_str())),
        "the alert shows none of the listed plates {:?}:\n{}",
        outcome.listed,
        outcome.alert_show
    );
    for shown in ["ca-svs", "state system", "stolen-vehicle"] {
        assert!(
            outcome.alert_show.contains(shown),
            "`edge alert show` lacks {shown:?}:\n{}",
            outcome.alert_show
        );
    }
    assert!(outcome.dispositions_ok, "a disposition stage was refused");
    assert!(
        outcome.hub_alerts.contains("car-7"),
        "{}",
        outcome.hub_alerts
    );

    // Nothing lost, nothing duplicated: the hub's copy is each log exactly.
    for (name, same) in &outcome.hub_matches_edge {
        assert!(same, "{name}: the hub's copy differs from the node's log");
    }
    assert!(
        outcome.audit_ok,
        "hub audit verify failed:\n{}",
        outcome.audit
    );
    assert!(outcome.audit.contains("AUTHENTIC"), "{}", outcome.audit);
    // The exported evidence verifies offline from the CA certificate alone.
    assert!(
        outcome.offline_ok,
        "hub verify of the export failed:\n{}",
        outcome.offline
    );
    // The three node logs (the camera pole's too), and the hub's own
    // access log.
    assert_eq!(
        outcome.offline.matches(": AUTHENTIC").count(),
        4,
        "{}",
        outcome.offline
    );
    assert!(
        outcome.offline.contains("hub: AUTHENTIC") && outcome.offline.contains(" accesses"),
        "{}",
        outcome.offline
    );
}
