//! Alerts end to end: a real `hub serve`, a real `edge run` replaying a
//! real photo from `/work/shared/data/plates`, `hub hotlist import` as an
//! operator, `hub alerts` as an officer.
//!
//! - `a_new_list_row_raises_a_past_match_at_the_hub`: a read stored before
//!   its plate was listed is found when a new generation lists it; the
//!   system's access is in the hub's access log.
//! - `an_edge_alert_is_disposed_in_three_stages_and_seen_at_the_hub`: the
//!   edge matches its read against the pushed list, the officer disposes
//!   the alert on the edge, the hub shows it with its stages.
//! - `a_past_match_says_whether_the_state_read_is_the_listed_one`: reads
//!   that carry a state (as the recogniser gives it) are matched at the
//!   hub against a list in California: the listed state is `exact`, another
//!   state `state differs` (named, and shown by `hub alerts`), no state
//!   `state not read`.
//! - `an_alternative_reading_that_matches_is_shown_beside_the_plate_read`:
//!   the list holds one of the recogniser's alternatives, not the plate it
//!   read; the edge and the hub show the plate read, the alternative that
//!   matched beside it, and ask for the crop to be compared first.

use alpr_e2e::output_text as out;
use std::time::Duration;

use alpr_e2e::{
    photo_edge, plate_read, recognised, shared_dir, wait_for, Edge, EdgeOptions, Hub, Pki,
};
use alpr_e2e::{CAR_PHOTO, TRAINED};
use alpr_shared::hotlist::{sample, Category};

use alpr_e2e::NCIC_SOURCES as SOURCES;

fn alerts(hub: &Hub, user: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let o = hub.run_as(user, &["alerts", "--json"])?;
    anyhow::ensure!(o.status.success(), "hub alerts failed: {}", out(&o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// A hub with the NCIC source, an operator `op1` and an officer `ofc1`,
/// both logged in.
fn hub_with_users(dir: &std::path::Path) -> anyhow::Result<(Pki, Hub)> {
    let pki = Pki::create_in(dir)?;
    let hub = Hub::start_with(&pki, dir, &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;
    Ok((pki, hub))
}

#[test]
fn a_new_list_row_raises_a_past_match_at_the_hub() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (pki, hub) = hub_with_users(dir.path())?;
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration);
    // Generation 1: the baseline, without the photo's plate.
    hub.import_ncic("op1", dir.path(), &rows)?;
    let (edge, node) = photo_edge(&pki, &hub, dir.path(), "car-1", None)?;
    let plate = plate_read(&edge, Duration::from_secs(120))?;
    rows.retain(|e| e.plate != plate);
    assert!(alerts(&hub, "ofc1")?.is_empty(), "nothing listed yet");

    // Generation 2 lists it: the read stored before is a past match.
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;
    let found = wait_for(Duration::from_secs(30), "a past match at the hub", || {
        alerts(&hub, "ofc1")
            .ok()
            .and_then(|a| a.into_iter().find(|x| x["source"] == "hub"))
    })?;
    assert_eq!(found["matched_text"], plate.as_str());
    assert_eq!(found["plate_read"], plate.as_str());
    assert!(found["alternative"].is_null(), "{found}");
    // The read's plate is the listed one; the recogniser reads no state.
    assert_eq!(found["kind"]["kind"], "state-unread");
    assert_eq!(
        found["match_kind"],
        "plate exact, state not read (check it)"
    );
    assert_eq!(found["past_match"], true);
    assert_eq!(found["node"], node.name.as_str());
    assert_eq!(found["entry"]["category"], "stolen-vehicle");

    let id = found["id"].as_str().expect("id").to_string();
    let o = hub.run_as("ofc1", &["alert", "show", &id])?;
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("state system") && out(&o).contains(&plate),
        "{}",
        out(&o)
    );

    // The system's search is in the hub's access log, with its purpose.
    let o = hub.run_as("auditor", &["audit", "access", "--json"])?;
    assert!(o.status.success(), "{}", out(&o));
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(
        log.contains("hotlist-back-match") && log.contains(&format!("plate={plate}")),
        "the back-match access is logged: {log}"
    );
    Ok(())
}

/// Car `car-2` replaying the photo until it logs an alert, and the alerts
/// `ofc1` lists there once logged in (`edge alerts --json`).
fn car_alerts(
    pki: &Pki,
    hub: &Hub,
    dir: &std::path::Path,
) -> anyhow::Result<(Edge, Vec<serde_json::Value>)> {
    let (edge, _) = photo_edge(pki, hub, dir, "car-2", Some("5s"))?;
    wait_for(Duration::from_secs(120), "the ALERT line", || {
        edge.proc.log_text().contains("ALERT").then_some(())
    })?;
    let o = edge_cmd(&edge, &["login", "--user", "ofc1"])?;
    anyhow::ensure!(o.status.success(), "{}", out(&o));
    let o = edge_cmd(&edge, &["alerts", "--json"])?;
    anyhow::ensure!(o.status.success(), "{}", out(&o));
    let list = serde_json::from_slice(&o.stdout)?;
    Ok((edge, list))
}

/// `edge …` as the officer logged in on the node.
fn edge_cmd(edge: &Edge, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut c = std::process::Command::new(alpr_e2e::bin("edge")?);
    c.args(args).arg("--config").arg(&edge.config);
    c.env("ALPR_PASSWORD", alpr_e2e::password_of("ofc1"));
    Ok(c.output()?)
}

#[test]

fn an_edge_alert_is_disposed_in_three_stages_and_seen_at_the_hub() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (pki, hub) = hub_with_users(dir.path())?;
    // Learn the plate this photo reads as, on a first node.
    let scout_dir = dir.path().join("scout");
    std::fs::create_dir_all(&scout_dir)?;
    let (scout, _) = photo_edge(&pki, &hub, &scout_dir, "car-1", None)?;
    let plate = plate_read(&scout, Duration::from_secs(120))?;
    drop(scout);
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration && e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;

    let (edge, list) = car_alerts(&pki, &hub, dir.path())?;
    let a = &list[0];
    assert_eq!(a["matched_text"], plate.as_str());
    assert_eq!(a["plate_read"], plate.as_str());
    assert!(a["alternative"].is_null(), "{a}");
    assert_eq!(a["match_kind"], "plate exact, state not read (check it)");
    assert!(a["list_age_ms"].as_u64().is_some());
    let id = a["id"].as_u64().expect("id").to_string();
    let saved = dir.path().join("alert-photos");
    let o = edge_cmd(
        &edge,
        &["alert", "show", &id, "--save", &saved.to_string_lossy()],
    )?;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("state system"));
    assert!(saved.join(format!("alert-{id}-crop.jpg")).exists());
    for stage in [
        ["--read", "correct"],
        ["--status", "active"],
        ["--action", "no-stop"],
    ] {
        let o = edge_cmd(&edge, &["alert", "dispose", &id, stage[0], stage[1]])?;
        assert!(o.status.success(), "{}", out(&o));
    }
    let seen = wait_for(Duration::from_secs(60), "the hub sees the stages", || {
        alerts(&hub, "ofc1").ok().and_then(|a| {
            a.into_iter().find(|x| {
                x["source"] == "node" && x["dispositions"].as_array().is_some_and(|d| d.len() == 3)
            })
        })
    })?;
    assert_eq!(seen["open"], false);
    assert_eq!(seen["dispositions"][2]["stage"], "action: no-stop");
    Ok(())
}

/// The list holds the recogniser's first alternative reading of the photo,
/// not the plate it reads (the `YG9*` case: a stop of the wrong car starts
/// with the alternative shown as the plate read).
#[test]
fn an_alternative_reading_that_matches_is_shown_beside_the_plate_read() -> anyhow::Result<()> {
    let reading = recognised(&shared_dir().join(CAR_PHOTO))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the photo reads no plate"))?;
    let alternative = reading
        .alternatives
        .iter()
        .find(|a| {
            !alpr_shared::search::fold_plate(a).eq(&alpr_shared::search::fold_plate(&reading.text))
        })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no alternative apart from OCR-equivalents: {reading:?}"))?;
    let rank = 1 + reading
        .alternatives
        .iter()
        .position(|a| *a == alternative)
        .unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let (pki, hub) = hub_with_users(dir.path())?;
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration && e.plate != reading.text);
    rows.push(sample::planted(
        &alternative,
        "CA",
        Category::StolenVehicle,
        5,
    ));
    hub.import_ncic("op1", dir.path(), &rows)?;

    let (edge, list) = car_alerts(&pki, &hub, dir.path())?;
    let a = &list[0];
    assert_eq!(
        a["plate_read"],
        reading.text.as_str(),
        "the plate as read: {a}"
    );
    assert_eq!(a["matched_text"], alternative.as_str());
    assert_eq!(a["listed_plate"], alternative.as_str());
    assert_eq!(a["alternative"]["text"], alternative.as_str());
    assert_eq!(a["alternative"]["rank"], rank);
    assert!(
        a["match_kind"]
            .as_str()
            .is_some_and(|k| k.starts_with(&format!("alternative reading #{rank} ("))
                && k.ends_with("plate exact, state not read (check it)")),
        "{a}"
    );
    let notice = format!(
        "ALTERNATIVE READING {alternative} matched, not the plate as read: compare the crop"
    );
    let o = edge_cmd(&edge, &["alerts"])?;
    assert!(o.status.success(), "{}", out(&o));
    let line = out(&o);
    assert!(line.contains(&notice), "{line}");
    assert_eq!(
        line.split_whitespace().nth(2),
        Some(reading.text.as_str()),
        "{line}"
    );
    let id = a["id"].as_u64().expect("id").to_string();
    let o = edge_cmd(&edge, &["alert", "show", &id])?;
    assert!(o.status.success(), "{}", out(&o));
    let shown = out(&o);
    assert!(
        shown.contains(&format!("  read     {} ", reading.text)) && shown.contains(&notice),
        "{shown}"
    );

    // The hub shows it so too, once synced.
    let seen = wait_for(Duration::from_secs(60), "the alert at the hub", || {
        alerts(&hub, "ofc1")
            .ok()
            .and_then(|a| a.into_iter().find(|x| x["source"] == "node"))
    })?;
    assert_eq!(seen["plate_read"], reading.text.as_str());
    assert_eq!(seen["alternative"]["text"], alternative.as_str());
    assert_eq!(seen["kind"]["kind"], "alternative");
    assert_eq!(seen["kind"]["how"]["kind"], "state-unread");
    let o = hub.run_as("ofc1", &["alerts"])?;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains(&notice), "{}", out(&o));
    Ok(())
}

#[test]
fn a_past_match_says_whether_the_state_read_is_the_listed_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (pki, hub) = hub_with_users(dir.path())?;
    // Three reads as an edge's recogniser signs them: one read in Arizona,
    // one in California, one whose state it could not tell.
    let lines = [
        r#"{"plate":"7STA001","state":"AZ","confidence":0.95}"#,
        r#"{"plate":"7STB002","state":"CA","confidence":0.95}"#,
        r#"{"plate":"7STC003","confidence":0.95}"#,
    ];
    let file = dir.path().join("reads.jsonl");
    std::fs::write(&file, lines.join("\n"))?;
    // Generation 1, the baseline, lists none of them.
    let mut rows = sample::entries(50, 3);
    rows.retain(|e| e.category != Category::Immigration);
    hub.import_ncic("op1", dir.path(), &rows)?;
    let node = pki.node("car-9")?;
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!("file = {file:?}\n"),
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    wait_for(Duration::from_secs(60), "the hub to hold the reads", || {
        let s = edge.status()?;
        (s["acked"].as_u64()? >= 3).then_some(())
    })?;
    // Generation 2 names all three plates, in California.
    for (seed, plate) in (5..).zip(["7STA001", "7STB002", "7STC003"]) {
        rows.push(sample::planted(plate, "CA", Category::StolenVehicle, seed));
    }
    hub.import_ncic("op1", dir.path(), &rows)?;
    let found = wait_for(Duration::from_secs(30), "three past matches", || {
        let a = alerts(&hub, "ofc1").ok()?;
        (a.len() >= 3).then_some(a)
    })?;
    let of = |plate: &str| {
        found
            .iter()
            .find(|a| a["plate_read"] == plate)
            .cloned()
            .unwrap_or_default()
    };
    let differs = of("7STA001");
    assert_eq!(differs["kind"]["kind"], "state-differs", "{differs}");
    assert!(
        differs["match_kind"]
            .as_str()
            .is_some_and(|k| k.contains("STATE DIFFERS") && k.contains("AZ")),
        "{differs}"
    );
    assert_eq!(differs["entry"]["state"], "CA", "{differs}");
    assert_eq!(of("7STB002")["kind"]["kind"], "exact");
    assert_eq!(
        of("7STC003")["kind"]["kind"],
        "state-unread",
        "no state read is never state differs"
    );
    // The officer's list in text says it too.
    let o = hub.run_as("ofc1", &["alerts"])?;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("STATE DIFFERS (read AZ)"), "{}", out(&o));
    Ok(())
}
