//! A local hotlist entry's life on a working camera, end to end with real
//! processes: a pole replays a real photo of one car passing again and
//! again; an operator lists its plate at the hub (a suspect vehicle), the
//! entry reaches the node, the next passes alert, the passes stored before
//! the entry became past matches; then the car is recovered, the entry is
//! removed at the hub, and the passes after that raise nothing.

use alpr_e2e::output_text as out;
use std::time::Duration;

use alpr_e2e::story::{parse_read, LoggedRead};
use alpr_e2e::TRAINED;
use alpr_e2e::{password_of, wait_for, Edge, EdgeOptions, Hub, Pki};

/// The reads the node logged as stored, in order (the lines name no
/// plate: every pass is of the same photo).
fn reads(edge: &Edge) -> Vec<LoggedRead> {
    edge.proc
        .log_text()
        .lines()
        .filter_map(parse_read)
        .collect()
}

fn edge_cmd(edge: &Edge, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut c = std::process::Command::new(alpr_e2e::bin("edge")?);
    c.args(args).arg("--config").arg(&edge.config);
    c.env("ALPR_PASSWORD", password_of("ofc1"));
    Ok(c.output()?)
}

/// Every alert the node holds (the officer is logged in on it).
fn edge_alerts(edge: &Edge) -> anyhow::Result<Vec<serde_json::Value>> {
    let o = edge_cmd(edge, &["alerts", "--all", "--json"])?;
    anyhow::ensure!(o.status.success(), "edge alerts: {}", out(&o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

fn live(alerts: &[serde_json::Value]) -> usize {
    alerts.iter().filter(|a| a["past_match"] == false).count()
}

#[test]
fn an_entry_alerts_on_each_pass_finds_earlier_ones_and_stops_once_removed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;

    // One car passing the pole every 1.5 s: the same real photo, 60 times.
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    let src =
        alpr_e2e::shared_dir().join("data/plates/us/0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg");
    for i in 0..60 {
        std::fs::copy(&src, photos.join(format!("pass-{i:02}.jpg")))?;
    }
    let models = alpr_e2e::shared_dir().join("models");
    let node = pki.node("pole-3")?;
    let mut edge = Edge::start(
        &node,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 0,
            images: true,
            extra_toml: format!(
                "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\nsite_id = \"5th-and-main\"\ninterval = \"1500ms\"\n"
            ),
            ..EdgeOptions::default()
        },
    )?;
    wait_for(Duration::from_secs(120), "the first pass", || {
        reads(&edge).into_iter().next()
    })?;
    let plate = alpr_e2e::photo_plate()?;
    wait_for(
        Duration::from_secs(60),
        "two passes before the entry",
        || (reads(&edge).len() >= 2).then_some(()),
    )?;
    wait_for(
        Duration::from_secs(60),
        "the officer known on the node",
        || {
            edge_cmd(&edge, &["login", "--user", "ofc1"])
                .ok()
                .filter(|o| o.status.success())
        },
    )?;
    assert!(edge_alerts(&edge)?.is_empty(), "nothing is listed yet");

    // The operator lists the plate: later passes alert, earlier ones are
    // past matches.
    let o = hub.run_as(
        "op1",
        &[
            "hotlist",
            "add",
            &plate,
            "--reason",
            "robbery suspect vehicle",
            "--case",
            "26-004711",
            "--json",
        ],
    )?;
    assert!(o.status.success(), "hotlist add: {}", out(&o));
    let entry: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let id = entry["id"].as_str().expect("entry id").to_string();
    let alerts = wait_for(
        Duration::from_secs(60),
        "a live alert and a past match",
        || {
            let a = edge_alerts(&edge).ok()?;
            (live(&a) >= 1 && a.iter().any(|x| x["past_match"] == true)).then_some(a)
        },
    )?;
    let a = alerts
        .iter()
        .find(|a| a["past_match"] == false)
        .expect("a live alert");
    assert_eq!(a["matched_text"], plate.as_str());
    assert_eq!(a["plate_read"], plate.as_str());
    assert_eq!(a["listed_plate"], plate.as_str());
    // The officer's entry is the plate as read; no state is read.
    assert_eq!(a["match_kind"], "plate exact, state not read (check it)");
    assert!(
        a["list"].as_str().is_some_and(|l| l.contains(&id)),
        "the alert names the local entry: {a}"
    );

    // The car is recovered: the removal reaches the node and the passes
    // after it raise nothing.
    let o = hub.run_as(
        "op1",
        &["hotlist", "remove", &id, "--reason", "vehicle recovered"],
    )?;
    assert!(o.status.success(), "hotlist remove: {}", out(&o));
    wait_for(Duration::from_secs(60), "the removal on the node", || {
        let s = edge.status()?;
        (s["active_local_entries"].as_u64()? == 0).then_some(())
    })?;
    // One pass of margin for a frame already being matched.
    let n = reads(&edge).len();
    wait_for(Duration::from_secs(60), "a pass after the removal", || {
        (reads(&edge).len() > n).then_some(())
    })?;
    let before = live(&edge_alerts(&edge)?);
    let n = reads(&edge).len();
    wait_for(Duration::from_secs(60), "three more passes", || {
        (reads(&edge).len() >= n + 3).then_some(())
    })?;
    let after: Vec<u64> = reads(&edge)[n..].iter().map(|r| r.entry).collect();
    assert_eq!(
        live(&edge_alerts(&edge)?),
        before,
        "a removed entry raised an alert"
    );
    // The passes that raised nothing were reads of the same car.
    edge.proc.stop()?;
    let log = edge.stored_entries()?;
    for seq in after {
        let read = log.iter().find(|e| e.seq() == seq).and_then(|e| e.read());
        assert_eq!(
            read.map(|r| r.plate.as_str()),
            Some(plate.as_str()),
            "the same car passed again (entry {seq})"
        );
    }
    Ok(())
}
