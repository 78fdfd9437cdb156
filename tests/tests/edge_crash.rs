//! An edge killed (-9) while it recognises and stores real photos keeps
//! every read it reported: after a restart the log holds each one at the
//! place it was reported, verifies from the CA, and the replay goes on where
//! it stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use alpr_e2e::story::{frames_done, parse_read};
use alpr_e2e::{free_udp_port, wait_for, Edge, EdgeOptions, Pki};
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::verify_log;
use alpr_shared::types::DeviceKind;

const LIMIT: Duration = Duration::from_secs(180);

/// Reads the edge reported durable so far: entry → plate.
fn reported(log: &str) -> BTreeMap<u64, String> {
    log.lines()
        .filter_map(parse_read)
        .map(|r| (r.entry, r.plate))
        .collect()
}

#[test]
fn a_killed_edge_keeps_every_read_it_reported() -> anyhow::Result<()> {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node_of_kind("pole-9", DeviceKind::Pole)?;
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    let mut names: Vec<_> = std::fs::read_dir(shared.join("data/plates/us"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    let total = 24;
    for p in names.iter().take(total) {
        std::fs::copy(p, photos.join(p.file_name().expect("name")))?;
    }
    // No hub: the node works offline and must still keep what it reads.
    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            "\n[capture]\npaths = [{:?}]\nmodels_dir = {:?}\ninterval = \"100ms\"\nsite_id = \"test-site\"\n",
            photos,
            shared.join("models").canonicalize()?
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;

    let mut before_kills = BTreeMap::new();
    for at in [4usize, 11] {
        wait_for(LIMIT, "reads before the kill", || {
            (reported(&edge.proc.log_text()).len() >= at).then_some(())
        })?;
        edge.proc.kill9();
        before_kills = reported(&edge.proc.log_text());
        edge.proc.start()?;
    }
    wait_for(LIMIT, "the replay to finish", || {
        Some(frames_done(&edge.proc.log_text())? == total as u64)
    })
    .and_then(|all| {
        anyhow::ensure!(all, "the replay did not resume where it stopped");
        Ok(())
    })?;
    edge.proc.stop()?;

    let entries = edge.stored_entries()?;
    let report = verify_log(
        &pki.device_cert(&node)?,
        &entries,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(
        report.authentic(),
        "faults after kill -9: {:?}",
        report.faults
    );
    let all = reported(&edge.proc.log_text());
    assert!(before_kills.len() >= 11, "{before_kills:?}");
    for (seq, plate) in &all {
        let e = entries
            .get(*seq as usize)
            .expect("a reported read is in the log");
        assert_eq!(
            e.read().map(|r| r.plate.as_str()),
            Some(plate.as_str()),
            "entry {seq}"
        );
    }
    // A kill between a commit and its log line leaves a read stored but
    // unreported; never the other way round.
    assert!(entries.len() >= all.len());
    assert!(
        all.len() >= total / 2,
        "only {} reads from {total} photos",
        all.len()
    );
    Ok(())
}
