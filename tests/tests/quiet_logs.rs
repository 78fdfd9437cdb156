//! No log line names a plate, a place or a person (DESIGN, "Errors, logs,
//! shutdown"): under systemd the logs are journald's, kept beyond
//! retention, purges and the access log.
//!
//! `no_log_line_names_a_plate_a_place_or_a_person`: one full flow with
//! every process at `RUST_LOG=trace` (a real `hub serve`; a car replaying a
//! real photo at a configured position, alerting on a listed plate; a pole
//! replaying reads of its own at a named site; officers, operators and a
//! supervisor logging in, one of them with a wrong password first;
//! searches by plate and by place at the hub and on the car; holds at both;
//! a local entry; alerts listed, shown and disposed at both), then every
//! line the hub and the edges logged, and every log line of the commands,
//! is searched for the plates it used, the places and the usernames.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use alpr_e2e::{bin, officer_toml, output_text, policy_toml, recognised, set_process_log};
use alpr_e2e::{shared_dir, wait_for, Edge, EdgeOptions, Hub, Pki, CAR_PHOTO, MIN_CONFIDENCE};
use alpr_e2e::{NCIC_SOURCES as SOURCES, OFFICER_PASSWORD, TRAINED};
use alpr_shared::hotlist::{sample, Category};
use alpr_shared::types::DeviceKind;

const LIMIT: Duration = Duration::from_secs(180);
/// The car's configured position, and the pole's site.
const LAT: &str = "38.5816";
const LON: &str = "-121.4944";
const SITE: &str = "quill-and-5th";
/// The pole's reads, and the partial plate an operator lists.
const POLE_PLATES: [&str; 3] = ["QLT4417", "QLT4418", "QLT4419"];
const PARTIAL: &str = "QLT44*";
/// The people: at the hub, and the officer the policy lets log in on edges.
const OPERATOR: &str = "op-marlow";
const OFFICER: &str = "ofc-quill";
const SUPERVISOR: &str = "sgt-ferris";
const CAR_OFFICER: &str = "ofc-vance";

/// A command's output, its stderr kept for the search.
fn ran(o: Output, stderr: &mut Vec<String>, what: &str) -> anyhow::Result<String> {
    stderr.push(String::from_utf8_lossy(&o.stderr).into_owned());
    anyhow::ensure!(o.status.success(), "{what}: {}", output_text(&o));
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn hub_cmd(
    hub: &Hub,
    user: &str,
    args: &[&str],
    stderr: &mut Vec<String>,
) -> anyhow::Result<String> {
    let o = hub.run_as(user, args)?;
    ran(o, stderr, &format!("hub {}", args.join(" ")))
}

fn edge_cmd(
    edge: &Edge,
    session: &Path,
    args: &[&str],
    stderr: &mut Vec<String>,
) -> anyhow::Result<String> {
    let o = Command::new(bin("edge")?)
        .args(args)
        .arg("--config")
        .arg(&edge.config)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "trace")
        .env("ALPR_SESSION", session)
        .env("ALPR_PASSWORD", OFFICER_PASSWORD)
        .output()?;
    ran(o, stderr, &format!("edge {}", args.join(" ")))
}

/// A tracing line (`<time>  LEVEL target: …`), not a command's message for
/// its user.
fn is_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words
        .next()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T'))
        && words
            .next()
            .is_some_and(|l| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&l))
}

#[test]
fn no_log_line_names_a_plate_a_place_or_a_person() -> anyhow::Result<()> {
    set_process_log("trace");
    let photo = shared_dir().join(CAR_PHOTO);
    let reading = recognised(&photo)?
        .into_iter()
        .find(|r| r.confidence >= MIN_CONFIDENCE)
        .ok_or_else(|| anyhow::anyhow!("the photo reads no plate"))?;
    let plate = reading.text.clone();
    let mut stderr: Vec<String> = Vec::new();

    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(
        &pki,
        dir.path(),
        &[],
        &format!(
            "{SOURCES}\n{}",
            policy_toml("1h", &[officer_toml(CAR_OFFICER, OFFICER_PASSWORD)?])
        ),
    )?;
    hub.add_user(OPERATOR, "operator", TRAINED)?;
    hub.add_user(OFFICER, "officer", TRAINED)?;
    hub.add_user(SUPERVISOR, "supervisor", TRAINED)?;
    // A wrong password first: a refused login names nobody in the log.
    assert!(hub.login_with(OFFICER, "not the password").is_err());
    for u in [OPERATOR, OFFICER, SUPERVISOR] {
        hub.login(u)?;
    }
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration && e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic(OPERATOR, dir.path(), &rows)?;
    hub_cmd(
        &hub,
        OPERATOR,
        &[
            "hotlist",
            "add",
            PARTIAL,
            "--reason",
            "hit and run, part of the plate seen",
            "--case",
            "26-004711",
            "--expires",
            "14d",
        ],
        &mut stderr,
    )?;

    // The car: the real photo at a configured position.
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    std::fs::copy(&photo, photos.join("car.jpg"))?;
    let models = shared_dir().join("models");
    let car = Edge::start(
        &pki.node("car-2")?,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 0,
            images: true,
            extra_toml: format!(
                "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\ninterval = \"5s\"\n\
                 gpsd = \"off\"\ngps = {{ lat = {LAT}, lon = {LON}, accuracy_m = 4.0 }}\n"
            ),
            ..EdgeOptions::default()
        },
    )?;
    // The pole: reads of its own at a named site.
    let lines: Vec<String> = POLE_PLATES
        .iter()
        .map(|p| format!("{{\"plate\":\"{p}\",\"site_id\":\"{SITE}\"}}"))
        .collect();
    let replay = dir.path().join("pole.jsonl");
    std::fs::write(&replay, lines.join("\n"))?;
    let pole = Edge::start(
        &pki.node_of_kind("pole-5", DeviceKind::Pole)?,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 0,
            extra_toml: format!("file = {replay:?}\nsite_id = \"{SITE}\"\n"),
            ..EdgeOptions::default()
        },
    )?;
    wait_for(LIMIT, "the car's alert", || {
        car.proc.log_text().contains("ALERT").then_some(())
    })?;
    // Each node's log at the hub: its reads, and its alerts (the pole's
    // reads are past matches of the partial plate).
    for (edge, least) in [(&car, 2), (&pole, 2 * POLE_PLATES.len() as u64)] {
        wait_for(LIMIT, "a node's log at the hub", || {
            let s = edge.status()?;
            let size = s["log_size"].as_u64()?;
            (size >= least && s["acked"].as_u64() == Some(size)).then_some(())
        })?;
    }

    // The officer in the car: alerts, a search, a hold.
    let session = dir.path().join("car-session.json");
    edge_cmd(
        &car,
        &session,
        &["login", "--user", CAR_OFFICER],
        &mut stderr,
    )?;
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&edge_cmd(
        &car,
        &session,
        &["alerts", "--json"],
        &mut stderr,
    )?)?;
    let id = alerts
        .first()
        .and_then(|a| a["id"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("no alert on the car"))?
        .to_string();
    edge_cmd(&car, &session, &["alert", "show", &id], &mut stderr)?;
    edge_cmd(
        &car,
        &session,
        &["alert", "dispose", &id, "--read", "correct"],
        &mut stderr,
    )?;
    let near = format!("{LAT},{LON}");
    let part = format!("{}*", &plate[..3]);
    for search in [
        vec!["search", plate.as_str(), "--purpose", "stolen-vehicle"],
        vec![
            "search",
            &part,
            "--near",
            &near,
            "--radius",
            "200",
            "--purpose",
            "stolen-vehicle",
        ],
    ] {
        edge_cmd(&car, &session, &search, &mut stderr)?;
    }
    edge_cmd(
        &car,
        &session,
        &[
            "hold", "add", "--case", "26-5", "--reason", "pursuit", "--plate", &plate,
        ],
        &mut stderr,
    )?;

    // At the hub: searches by plate and by place, a hold, the alerts, the
    // access audit.
    for args in [
        vec!["search", plate.as_str(), "--purpose", "stolen-vehicle"],
        vec!["search", POLE_PLATES[0], "--purpose", "stolen-vehicle"],
        vec![
            "search",
            "--near",
            &near,
            "--radius",
            "200",
            "--purpose",
            "stolen-vehicle",
        ],
    ] {
        hub_cmd(&hub, OFFICER, &args, &mut stderr)?;
    }
    hub_cmd(
        &hub,
        SUPERVISOR,
        &[
            "hold",
            "add",
            "--case",
            "26-6",
            "--reason",
            "robbery",
            "--plate",
            &plate,
            "--plate",
            POLE_PLATES[1],
        ],
        &mut stderr,
    )?;
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&hub_cmd(&hub, OFFICER, &["alerts", "--json"], &mut stderr)?)?;
    let hub_id = listed
        .iter()
        .find(|a| a["source"] == "node")
        .and_then(|a| a["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no node alert at the hub"))?
        .to_owned();
    hub_cmd(&hub, OFFICER, &["alert", "show", &hub_id], &mut stderr)?;
    hub_cmd(
        &hub,
        "auditor",
        &["audit", "access", "--plate", &plate],
        &mut stderr,
    )?;

    // Everyone stops in order (the last lines are written), then every log
    // is searched.
    let (mut hub, mut car, mut pole) = (hub, car, pole);
    car.proc.stop()?;
    pole.proc.stop()?;
    hub.proc.stop()?;
    let mut forbidden: Vec<String> = vec![plate.clone(), PARTIAL.trim_end_matches('*').into()];
    forbidden.extend(reading.alternatives.iter().take(3).cloned());
    forbidden.extend(POLE_PLATES.iter().map(|p| p.to_string()));
    forbidden.extend([SITE, LAT, LON, "385816000", "1214944000"].map(String::from));
    forbidden.extend([OPERATOR, OFFICER, SUPERVISOR, CAR_OFFICER].map(String::from));
    let mut logs: Vec<(String, String)> = [&hub.proc, &car.proc, &pole.proc]
        .into_iter()
        .map(|p| (p.log.display().to_string(), p.log_text()))
        .collect();
    let lines: usize = logs.iter().map(|(_, t)| t.lines().count()).sum();
    assert!(
        logs.iter()
            .all(|(_, t)| t.lines().any(|l| l.contains("TRACE"))),
        "the processes did not log at trace"
    );
    for (n, err) in stderr.iter().enumerate() {
        let traced: Vec<&str> = err.lines().filter(|l| is_log_line(l)).collect();
        logs.push((format!("command {n}"), traced.join("\n")));
    }
    let mut found = Vec::new();
    for (name, text) in &logs {
        for line in text.lines() {
            for f in &forbidden {
                if line.contains(f.as_str()) {
                    found.push(format!("{name}: {f:?} in {line}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} of {lines} log lines name a plate, a place or a person:\n{}",
        found.len(),
        found[..found.len().min(20)].join("\n")
    );
    Ok(())
}
