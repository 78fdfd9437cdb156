//! The console's alerts over HTTPS, as a browser would use them (the
//! session cookie, the forms' CSRF field, the live stream of server-sent
//! events), against a real `hub serve` and real
//! `edge run`s reading a real photo from `/work/shared/data/plates`.
//!
//! - `the_live_list_shows_a_new_alert_and_a_dispatcher_disposes_it`: the
//!   live list (opened before the alert exists) delivers the alert's row
//!   once the node raises it and the hub ingests it; a dispatcher at the
//!   hub is refused a stage out of order (409, the rule on the page), then
//!   disposes the alert in three stages through the page's form; `hub
//!   alerts` shows the stages as the hub's, and the access log holds each.
//! - `a_past_match_found_at_the_hub_is_disposed_at_the_hub`: a read stored
//!   before its plate was listed becomes `hub#1`; the console lists it and
//!   opens it at its own address, a stage out of order is refused by `hub
//!   alert dispose`, and the page's form closes it; an auditor may not open
//!   the alerts; the hub stops promptly with a live list open.

use std::time::{Duration, Instant};

use alpr_e2e::output_text as out;
use alpr_e2e::{photo_edge, plate_read, wait_for, Hub, Pki, TRAINED};
use alpr_shared::hotlist::{sample, Category};

use alpr_e2e::NCIC_SOURCES as SOURCES;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn value_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[test]
fn the_live_list_shows_a_new_alert_and_a_dispatcher_disposes_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("disp1", "operator", TRAINED)?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;

    // Learn the plate the photo reads as, on a first node.
    let scout_dir = dir.path().join("scout");
    std::fs::create_dir_all(&scout_dir)?;
    let scout = photo_edge(&pki, &hub, &scout_dir, "scout-1", Some("5s"))?.0;
    let plate = plate_read(&scout, Duration::from_secs(240))?;
    drop(scout);
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration && e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;

    // The dispatcher opens the alerts page: nothing yet, and the live list.
    let rt = runtime()?;
    let mut console = rt.block_on(hub.console("disp1"))?;
    let answer = rt.block_on(console.get("/console/alerts"))?;
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"page-alerts\""), "{page}");
    assert!(page.contains("data-live=\"/console/alerts/live\""));
    assert!(!page.contains("class=\"alert "), "no alert yet: {page}");
    let mut live = rt.block_on(console.events("/console/alerts/live"))?;
    let first = rt.block_on(live.next_alerts(Duration::from_secs(30)))?;
    assert!(first.contains("No alerts."), "{first}");

    // A car reads the listed plate: the node raises the alert, the hub
    // ingests it, and the open page receives its row.
    let car_dir = dir.path().join("car");
    std::fs::create_dir_all(&car_dir)?;
    let car = photo_edge(&pki, &hub, &car_dir, "car-2", Some("5s"))?.0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let row = rt.block_on(async {
        loop {
            let rows = live
                .next_alerts(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if rows.contains("/console/alerts/car-2/") {
                return anyhow::Ok(rows);
            }
        }
    })?;
    assert!(row.contains("class=\"alert open"), "{row}");
    assert!(
        row.contains(&format!("<td class=\"alert-plate plate\">{plate}</td>")),
        "{row}"
    );
    // The photo's plate is the listed one; the recogniser reads no state.
    assert!(
        row.contains("<td class=\"match-kind\">plate exact, state not read (check it)</td>"),
        "{row}"
    );
    assert!(!row.contains("ALTERNATIVE READING"), "{row}");
    assert!(
        row.contains("<img class=\"photo\" src=\"data:image/jpeg;base64,"),
        "the crop is inlined once the hub holds it: {row}"
    );
    let link = value_after(&row, "href=\"/console/alerts/car-2/")
        .map(|seq| format!("/console/alerts/car-2/{seq}"))
        .ok_or_else(|| anyhow::anyhow!("no link in {row}"))?;
    drop(car);

    // The alert page: the reminder, the read, no stage yet; the form
    // offers the read check only.
    let answer = rt.block_on(console.get(&link))?;
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"page-alert\""));
    assert!(page.contains("state system before enforcement"), "{page}");
    assert!(page.contains("class=\"photo\""));
    assert!(page.contains("value=\"read:correct\""));
    assert!(!page.contains("value=\"action:stop\""), "not offered yet");
    assert!(!page.contains("class=\"disposition\""));

    // Out of order: refused with the rule, and nothing recorded.
    let csrf = console.csrf()?;
    let answer = rt.block_on(console.post_form(
        &link,
        &[("csrf", &csrf), ("stage", "action:stop"), ("note", "")],
    ))?;
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("id=\"error\""), "{page}");
    assert!(page.contains("the action needs the status checked first"));
    assert!(!page.contains("class=\"disposition\""));

    // A form from elsewhere (no CSRF value of this session) is refused.
    let forged =
        rt.block_on(console.post_form(&link, &[("csrf", "x"), ("stage", "read:correct")]))?;
    assert_eq!(forged.status, 403);

    // Three stages through the form.
    let mut page = page;
    for (stage, note, done) in [
        ("read:correct", "plate and state match the photo", 1),
        ("status:active", "CLETS: still stolen", 2),
        ("action:no-stop", "unit not near", 3),
    ] {
        let csrf = console.csrf()?;
        let answer = rt.block_on(
            console.post_form(&link, &[("csrf", &csrf), ("stage", stage), ("note", note)]),
        )?;
        let (status, next) = (answer.status, answer.body);
        assert_eq!(status, 200, "{next}");
        assert!(next.contains("id=\"notice\""), "{next}");
        assert_eq!(
            next.matches("class=\"disposition\"").count(),
            done,
            "{next}"
        );
        assert!(next.contains(note));
        page = next;
    }
    assert!(page.contains("Nothing more is expected"), "{page}");
    assert!(!page.contains("id=\"dispose-form\""));

    // `hub alerts` shows the stages as the hub's, the alert closed.
    let o = hub.run_as("ofc1", &["alerts", "--json"])?;
    assert!(o.status.success(), "{}", out(&o));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)?;
    let a = list
        .iter()
        .find(|a| a["node"] == "car-2")
        .ok_or_else(|| anyhow::anyhow!("no alert of car-2: {list:?}"))?;
    assert_eq!(a["open"], false);
    let stages: Vec<(&str, &str)> = a["dispositions"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|s| {
                    (
                        s["by"].as_str().unwrap_or(""),
                        s["stage"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        stages,
        [
            ("hub", "read: correct"),
            ("hub", "status: active"),
            ("hub", "action: no-stop")
        ]
    );
    // A fourth stage is refused by the API too (`hub alert dispose`).
    let id = a["id"].as_str().unwrap_or_default();
    hub.login("disp1")?;
    let o = hub.run_as("disp1", &["alert", "dispose", id, "--stage", "action:stop"])?;
    assert!(!o.status.success());
    assert!(
        out(&o).contains("the action was already recorded"),
        "{}",
        out(&o)
    );

    // The access log holds each stage, by whom, and the refusals.
    let o = hub.run_as("auditor", &["audit", "access", "--json"])?;
    assert!(o.status.success(), "{}", out(&o));
    let log = String::from_utf8_lossy(&o.stdout);
    let stage_records = log.matches("alert-disposition").count();
    assert!(stage_records >= 5, "3 stages and 2 refusals: {log}");
    assert!(
        log.contains(&format!("plate={plate} stage action: no-stop")),
        "{log}"
    );
    Ok(())
}

#[test]
fn a_past_match_found_at_the_hub_is_disposed_at_the_hub() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("disp1", "operator", TRAINED)?;
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration);
    hub.import_ncic("op1", dir.path(), &rows)?;
    let edge = photo_edge(&pki, &hub, dir.path(), "pole-1", Some("5s"))?.0;
    let plate = plate_read(&edge, Duration::from_secs(240))?;
    wait_for(Duration::from_secs(60), "the read reaches the hub", || {
        let s = edge.status()?;
        let size = s["log_size"].as_u64()?;
        (size > 0 && s["acked"].as_u64() == Some(size)).then_some(())
    })?;
    rows.retain(|e| e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;

    let rt = runtime()?;
    let mut console = rt.block_on(hub.console("disp1"))?;
    let list = wait_for(Duration::from_secs(60), "the past match listed", || {
        rt.block_on(console.get("/console/alerts"))
            .ok()
            .map(|a| a.body)
            .filter(|p| p.contains("href=\"/console/hub-alerts/1\""))
    })?;
    assert!(list.contains("past match"), "{list}");
    let answer = rt.block_on(console.get("/console/hub-alerts/1"))?;
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("the hub (past match)"), "{page}");
    assert!(page.contains(&plate));
    assert!(page.contains("value=\"read:misread\""));

    let o = hub.run_as(
        "op1",
        &["alert", "dispose", "hub#1", "--stage", "status:active"],
    )?;
    assert!(!o.status.success());
    assert!(
        out(&o).contains("the status check needs the read disposed as correct first"),
        "{}",
        out(&o)
    );

    let csrf = console.csrf()?;
    let answer = rt.block_on(console.post_form(
        "/console/hub-alerts/1",
        &[
            ("csrf", &csrf),
            ("stage", "read:misread"),
            ("note", "a B read as 8"),
        ],
    ))?;
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"notice\""), "{page}");
    assert_eq!(page.matches("class=\"disposition\"").count(), 1);
    assert!(page.contains("Nothing more is expected"), "{page}");

    let o = hub.run_as("op1", &["alerts", "--json"])?;
    assert!(o.status.success(), "{}", out(&o));
    let alerts: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)?;
    let a = alerts
        .iter()
        .find(|a| a["id"] == "hub#1")
        .ok_or_else(|| anyhow::anyhow!("no hub#1: {alerts:?}"))?;
    assert_eq!(a["open"], false);
    assert_eq!(a["dispositions"][0]["by"], "hub");
    assert_eq!(a["dispositions"][0]["user"], "disp1");

    let mut auditor = rt.block_on(hub.console("auditor"))?;
    let denied = rt.block_on(auditor.get("/console/alerts"))?;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let denied = rt.block_on(auditor.get("/console/hub-alerts/1"))?;
    assert_eq!(denied.status, 403);
    let denied = rt.block_on(auditor.get("/console/alerts/live"))?;
    assert_eq!(denied.status, 403, "nor its live list");

    // An open live list does not hold the hub up when it stops.
    let mut live = rt.block_on(console.events("/console/alerts/live"))?;
    let rows = rt.block_on(live.next_alerts(Duration::from_secs(30)))?;
    assert!(rows.contains("/console/hub-alerts/1"), "{rows}");
    let mut hub = hub;
    hub.proc.stop()?;
    Ok(())
}
