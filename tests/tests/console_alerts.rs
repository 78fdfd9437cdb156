//! The console's alerts over HTTPS, as a browser would use them (curl with
//! a cookie jar: the session cookie, the forms' CSRF field, the live
//! stream of server-sent events), against a real `hub serve` and real
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

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpr_e2e::output_text as out;
use alpr_e2e::{password_of, wait_for, Edge, EdgeOptions, Hub, Pki, TRAINED};
use alpr_shared::hotlist::{sample, Category};

const SOURCES: &str = r#"
[hotlist]
max_change = 0.9

[[hotlist.sources]]
name = "ncic"
format = "ncic"
strategy = "ocr-equivalent"
"#;

/// A person in a browser: the console's cookies in a jar.
struct Console {
    base: String,
    ca: PathBuf,
    jar: PathBuf,
}

impl Console {
    fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&self.ca)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar);
        c
    }

    /// The status and the body of an answer.
    fn answer(mut c: Command) -> anyhow::Result<(u16, String)> {
        let o = c.args(["-w", "\n%{http_code}"]).output()?;
        anyhow::ensure!(o.status.success(), "curl: {}", out(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Ok((code.trim().parse()?, body.to_owned()))
    }

    fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut c = self.curl();
        c.arg(format!("{}{path}", self.base));
        Self::answer(c)
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
        let mut c = self.curl();
        for (k, v) in form {
            c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        c.arg(format!("{}{path}", self.base));
        Self::answer(c)
    }

    /// Log in through the login page's form.
    fn login(hub: &Hub, dir: &Path, user: &str) -> anyhow::Result<Console> {
        let c = Console {
            base: hub.api.clone(),
            ca: hub.ca.clone(),
            jar: dir.join(format!("{user}.cookies")),
        };
        let (_, page) = c.get("/console/login")?;
        let csrf = csrf_of(&page)?;
        let password = password_of(user);
        let (status, body) = c.post(
            "/console/login",
            &[("username", user), ("password", &password), ("csrf", &csrf)],
        )?;
        anyhow::ensure!(
            status == 303,
            "login: {status} {body}; cookies: {}",
            std::fs::read_to_string(&c.jar).unwrap_or_default()
        );
        Ok(c)
    }

    /// Open a stream of server-sent events; its lines as they arrive.
    fn events(&self, path: &str) -> anyhow::Result<Events> {
        let mut child = self
            .curl()
            .args(["-N", "--max-time", "600"])
            .arg(format!("{}{path}", self.base))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Ok(Events { child, lines })
    }
}

/// A stream of server-sent events being read.
struct Events {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Events {
    /// The data of every `alerts` event so far, in order.
    fn alerts(&self) -> Vec<String> {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        let mut out = Vec::new();
        let mut current: Option<String> = None;
        for l in lines {
            if l == "event: alerts" {
                current = Some(String::new());
            } else if let Some(d) = l.strip_prefix("data:") {
                if let Some(c) = current.as_mut() {
                    c.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            } else if l.is_empty() {
                out.extend(current.take());
            }
        }
        out
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CSRF field of a page's (first) form.
fn csrf_of(page: &str) -> anyhow::Result<String> {
    value_after(page, "name=\"csrf\" value=\"")
        .ok_or_else(|| anyhow::anyhow!("no CSRF field in {page}"))
}

fn value_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A node replaying one real photo from `photos`.
fn edge_on(pki: &Pki, hub: &Hub, dir: &Path, name: &str, photos: &Path) -> anyhow::Result<Edge> {
    let models = alpr_e2e::shared_dir().join("models");
    let node = pki.node(name)?;
    let opts = EdgeOptions {
        generate: 0,
        images: true,
        extra_toml: format!(
            "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\nsite_id = \"main-st\"\ninterval = \"5s\"\n"
        ),
        ..EdgeOptions::default()
    };
    Edge::start(&node, hub.addr, dir, &opts)
}

/// The plate the node read (its "plate read" log line).
fn plate_read(edge: &Edge) -> anyhow::Result<String> {
    let read = wait_for(Duration::from_secs(240), "the photo read", || {
        edge.proc
            .log_text()
            .lines()
            .filter(|l| l.contains("plate read"))
            .find_map(|l| {
                let rest = l.split("plate=").nth(1)?;
                let p: String = rest
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                (!p.is_empty()).then_some(p)
            })
    });
    read.map_err(|e| anyhow::anyhow!("{e}; the node's log:\n{}", edge.proc.log_tail(30)))
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
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    std::fs::copy(
        alpr_e2e::shared_dir().join("data/plates/us/0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg"),
        photos.join("car.jpg"),
    )?;
    let scout_dir = dir.path().join("scout");
    std::fs::create_dir_all(&scout_dir)?;
    let scout = edge_on(&pki, &hub, &scout_dir, "scout-1", &photos)?;
    let plate = plate_read(&scout)?;
    drop(scout);
    let mut rows = sample::entries(200, 12);
    rows.retain(|e| e.category != Category::Immigration && e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;

    // The dispatcher opens the alerts page: nothing yet, and the live list.
    let console = Console::login(&hub, dir.path(), "disp1")?;
    let (status, page) = console.get("/console/alerts")?;
    assert_eq!(
        status,
        200,
        "{page}; cookies: {}",
        std::fs::read_to_string(&console.jar).unwrap_or_default()
    );
    assert!(page.contains("id=\"page-alerts\""), "{page}");
    assert!(page.contains("data-live=\"/console/alerts/live\""));
    assert!(!page.contains("class=\"alert "), "no alert yet: {page}");
    let live = console.events("/console/alerts/live")?;
    let first = wait_for(
        Duration::from_secs(30),
        "the live list's first rows",
        || live.alerts().into_iter().next(),
    )?;
    assert!(first.contains("No alerts."), "{first}");

    // A car reads the listed plate: the node raises the alert, the hub
    // ingests it, and the open page receives its row.
    let car_dir = dir.path().join("car");
    std::fs::create_dir_all(&car_dir)?;
    let car = edge_on(&pki, &hub, &car_dir, "car-2", &photos)?;
    let row = wait_for(Duration::from_secs(180), "the alert's live row", || {
        live.alerts()
            .into_iter()
            .find(|r| r.contains("/console/alerts/car-2/"))
    })?;
    assert!(row.contains("class=\"alert open"), "{row}");
    assert!(
        row.contains(&format!("<td class=\"alert-plate plate\">{plate}</td>")),
        "{row}"
    );
    assert!(row.contains("class=\"match-kind\""), "{row}");
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
    let (status, page) = console.get(&link)?;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"page-alert\""));
    assert!(page.contains("state system before enforcement"), "{page}");
    assert!(page.contains("class=\"photo\""));
    assert!(page.contains("value=\"read:correct\""));
    assert!(!page.contains("value=\"action:stop\""), "not offered yet");
    assert!(!page.contains("class=\"disposition\""));

    // Out of order: refused with the rule, and nothing recorded.
    let csrf = csrf_of(&page)?;
    let (status, page) = console.post(
        &link,
        &[("csrf", &csrf), ("stage", "action:stop"), ("note", "")],
    )?;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("id=\"error\""), "{page}");
    assert!(page.contains("the action needs the status checked first"));
    assert!(!page.contains("class=\"disposition\""));

    // A form from elsewhere (no CSRF value of this session) is refused.
    let (status, _) = console.post(&link, &[("csrf", "x"), ("stage", "read:correct")])?;
    assert_eq!(status, 403);

    // Three stages through the form.
    let mut page = page;
    for (stage, note, done) in [
        ("read:correct", "plate and state match the photo", 1),
        ("status:active", "CLETS: still stolen", 2),
        ("action:no-stop", "unit not near", 3),
    ] {
        let csrf = csrf_of(&page)?;
        let (status, next) =
            console.post(&link, &[("csrf", &csrf), ("stage", stage), ("note", note)])?;
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
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    std::fs::copy(
        alpr_e2e::shared_dir().join("data/plates/us/0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg"),
        photos.join("car.jpg"),
    )?;
    let edge = edge_on(&pki, &hub, dir.path(), "pole-1", &photos)?;
    let plate = plate_read(&edge)?;
    wait_for(Duration::from_secs(60), "the read reaches the hub", || {
        let s = edge.status()?;
        let size = s["log_size"].as_u64()?;
        (size > 0 && s["acked"].as_u64() == Some(size)).then_some(())
    })?;
    rows.retain(|e| e.plate != plate);
    rows.push(sample::planted(&plate, "CA", Category::StolenVehicle, 5));
    hub.import_ncic("op1", dir.path(), &rows)?;

    let console = Console::login(&hub, dir.path(), "disp1")?;
    let list = wait_for(Duration::from_secs(60), "the past match listed", || {
        console
            .get("/console/alerts")
            .ok()
            .map(|(_, p)| p)
            .filter(|p| p.contains("href=\"/console/hub-alerts/1\""))
    })?;
    assert!(list.contains("past match"), "{list}");
    let (status, page) = console.get("/console/hub-alerts/1")?;
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

    let csrf = csrf_of(&page)?;
    let (status, page) = console.post(
        "/console/hub-alerts/1",
        &[
            ("csrf", &csrf),
            ("stage", "read:misread"),
            ("note", "a B read as 8"),
        ],
    )?;
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

    let auditor = Console::login(&hub, dir.path(), "auditor")?;
    let (status, page) = auditor.get("/console/alerts")?;
    assert_eq!(status, 403, "{page}");
    let (status, _) = auditor.get("/console/hub-alerts/1")?;
    assert_eq!(status, 403);
    let (status, _) = auditor.get("/console/alerts/live")?;
    assert_eq!(status, 403, "nor its live list");

    // An open live list does not hold the hub up when it stops.
    let live = console.events("/console/alerts/live")?;
    let rows = wait_for(Duration::from_secs(30), "the live rows", || {
        live.alerts().into_iter().next()
    })?;
    assert!(rows.contains("/console/hub-alerts/1"), "{rows}");
    let mut hub = hub;
    hub.proc.stop()?;
    Ok(())
}
