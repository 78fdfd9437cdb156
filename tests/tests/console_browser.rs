//! The web console in a real browser: headless Chromium (through
//! chromedriver) on a real `hub serve`, with users made by `hub user add`
//! and reads made by a real `edge run` replaying a real photo from
//! `/work/shared/data/plates`. Each test checks what the person at the
//! browser sees, and what the hub then holds (its access log, a bundle
//! that verifies offline). Every test leaves a screenshot of its last page
//! in `target/browser-screenshots/`.
//!
//! The pages are written against the element contract of the console
//! (`#page-search`, `table#results tr.hit`, `#signature`…).

use std::path::Path;
use std::time::Duration;

use alpr_e2e::browser::{console_toml, Browser, PAGE_WAIT};
use alpr_e2e::{bin, output_text, password_of, photo_edge, plate_read, Hub, Pki, LAPSED, TRAINED};

/// Reads from a real photo take the models' time on a busy machine.
const EDGE_WAIT: Duration = Duration::from_secs(180);

/// A hub whose HTTPS port has a certificate a browser can use.
fn console_hub(pki: &Pki, dir: &Path) -> anyhow::Result<Hub> {
    Hub::start_with(pki, dir, &[], &console_toml(pki)?)
}

/// A console hub with a supervisor `sup1` (every section of an
/// investigator) and the auditor `Hub::start` makes.
fn hub_with_supervisor(pki: &Pki, dir: &Path) -> anyhow::Result<Hub> {
    let hub = console_hub(pki, dir)?;
    hub.add_user("sup1", "supervisor", TRAINED)?;
    hub.login("sup1")?;
    Ok(hub)
}

/// `hub audit access --json` as the auditor: its rows.
fn access_rows(hub: &Hub) -> anyhow::Result<Vec<serde_json::Value>> {
    let o = hub.run_as("auditor", &["audit", "access", "--json"])?;
    anyhow::ensure!(o.status.success(), "hub audit access: {}", output_text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

/// Log in as `user` and land on the dashboard.
async fn log_in(b: &Browser, user: &str) -> anyhow::Result<()> {
    b.login(user, &password_of(user)).await?;
    b.wait_for("#page-dashboard", PAGE_WAIT).await?;
    Ok(())
}

/// Fill the search form for `plate` (exact) with `purpose` and send it.
async fn search(b: &Browser, plate: &str, purpose: &str) -> anyhow::Result<()> {
    b.goto("/console/search").await?;
    b.wait_for("form#search-form", PAGE_WAIT).await?;
    b.select("purpose", purpose).await?;
    b.fill("plate", plate).await?;
    b.select("mode", "exact").await?;
    b.click("search").await?;
    b.wait_until(PAGE_WAIT, "the search's answer", || async {
        (b.find("#error").await.is_some() || b.find("table#results").await.is_some()).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_user_logs_in_and_a_wrong_password_is_refused() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = console_hub(&pki, dir.path())?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    let b = Browser::start("login_ok_and_wrong_password", &hub).await?;

    b.login("ofc1", "not-the-password").await?;
    assert_eq!(b.path().await?, "/console/login");
    let error = b.text("#error").await?;
    assert!(error.contains("wrong username or password"), "{error}");
    assert!(
        b.client()?
            .get_named_cookie("__Host-alpr_session")
            .await
            .is_err(),
        "a refused login left a session cookie"
    );

    b.login("ofc1", &password_of("ofc1")).await?;
    assert_eq!(
        b.path().await?,
        "/console/",
        "a login lands on the dashboard"
    );
    // Read on the login page: WebDriver shows no cookies while the browser
    // shows an error page of its own (a route a build lacks).
    b.goto("/console/login").await?;
    let cookie = b.client()?.get_named_cookie("__Host-alpr_session").await?;
    assert!(!cookie.value().is_empty());
    assert_eq!(
        cookie.http_only(),
        Some(true),
        "scripts cannot read the session"
    );
    assert_eq!(cookie.secure(), Some(true));
    // Both logins are in the hub's access log, the refusal with its reason.
    let rows = access_rows(&hub)?;
    let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["user"] == "ofc1").collect();
    assert!(
        mine.iter().any(|r| r["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("wrong username or password"))),
        "{mine:?}"
    );
    assert!(mine.iter().any(|r| r["outcome"] == "allowed"), "{mine:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_current_training_is_refused_with_the_reason() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = console_hub(&pki, dir.path())?;
    hub.add_user("ofc2", "officer", LAPSED)?;
    let b = Browser::start("login_refused_without_training", &hub).await?;

    b.login("ofc2", &password_of("ofc2")).await?;
    assert_eq!(b.path().await?, "/console/login");
    let error = b.text("#error").await?;
    assert!(error.contains("no current training"), "{error}");
    assert!(
        error.contains("2025-01-01"),
        "the lapse date is named: {error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_offers_the_roles_sections_and_logout_ends_the_session() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = hub_with_supervisor(&pki, dir.path())?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    let b = Browser::start("dashboard_and_logout", &hub).await?;

    log_in(&b, "ofc1").await?;
    for id in ["nav-dashboard", "nav-search", "nav-alerts", "logout"] {
        b.by_id(id).await?;
    }
    for id in ["nav-users", "nav-audits", "nav-export", "nav-hotlists"] {
        assert!(
            b.find(&format!("#{id}")).await.is_none(),
            "an officer is offered #{id}"
        );
    }
    // The session as the browser holds it, before logging out.
    let kept = b
        .client()?
        .get_named_cookie(alpr_hub::console::SESSION_COOKIE)
        .await?;
    b.click("logout").await?;
    b.wait_for("#notice", PAGE_WAIT).await?;
    assert!(b.text("#notice").await?.contains("logged out"));
    b.goto("/console/").await?;
    b.wait_for("#page-login", PAGE_WAIT).await?;
    // Logout ends the session at the hub, not only the browser's cookie:
    // the old token, presented again, gets the login page.
    let token = kept.value().to_owned();
    b.client()?.add_cookie(kept).await?;
    let held = b
        .client()?
        .get_named_cookie(alpr_hub::console::SESSION_COOKIE)
        .await?;
    assert_eq!(
        held.value(),
        token,
        "the browser did not take the old cookie back"
    );
    b.goto("/console/").await?;
    b.wait_for("#page-login", PAGE_WAIT).await?;

    log_in(&b, "sup1").await?;
    b.by_id("nodes").await?;
    b.by_id("alerts-waiting").await?;
    for id in [
        "nav-search",
        "nav-hotlists",
        "nav-alerts",
        "nav-holds",
        "nav-audits",
        "nav-export",
    ] {
        b.by_id(id).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_needs_a_purpose_and_the_auditor_sees_the_one_made() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = hub_with_supervisor(&pki, dir.path())?;
    let (edge, node) = photo_edge(&pki, &hub, dir.path(), "pole-1", Some("10ms"))?;
    let plate = plate_read(&edge, EDGE_WAIT)?;
    let b = Browser::start("search_purpose_and_audit", &hub).await?;
    log_in(&b, "sup1").await?;

    // No purpose chosen: the browser's own check stops the form where the
    // page asks for a purpose; past it (as a hand-made request would be),
    // the hub refuses. No rows either way.
    b.goto("/console/search").await?;
    b.wait_for("form#search-form", PAGE_WAIT).await?;
    b.select("purpose", "").await?;
    b.fill("plate", &plate).await?;
    b.click("search").await?;
    let held_back = b
        .eval("return document.querySelector('#purpose').matches(':invalid');")
        .await?
        == serde_json::Value::Bool(true);
    if held_back {
        assert_eq!(b.path().await?, "/console/search");
        assert!(b.find_all("tr.hit").await?.is_empty());
        b.eval("document.getElementById('search-form').noValidate = true; return null;")
            .await?;
        b.click("search").await?;
    }
    b.wait_for("#error", PAGE_WAIT).await?;
    let error = b.text("#error").await?;
    assert!(error.contains("purpose"), "{error}");
    assert!(
        b.find_all("tr.hit").await?.is_empty(),
        "a refusal showed reads"
    );
    assert!(
        !b.client()?.current_url().await?.as_str().contains(&plate),
        "the plate went into a URL"
    );

    // With a purpose: the photo's read, from its node.
    search(&b, &plate, "stolen-vehicle").await?;
    let hits = b.find_all("table#results tr.hit").await?;
    assert_eq!(hits.len(), 1, "{:?}", b.text("table#results").await);
    let row = hits[0].text().await?;
    assert!(row.contains(&plate) && row.contains(&node.name), "{row}");
    b.by_id("results-map").await?;
    assert!(
        !b.client()?.current_url().await?.as_str().contains(&plate),
        "the plate went into a URL"
    );

    // Both are in the hub's access log, by the supervisor, the refusal
    // with its reason.
    let rows = access_rows(&hub)?;
    let searches: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["user"] == "sup1" && r["action"] == "search")
        .collect();
    assert!(
        searches.iter().any(|r| r["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("refused") && o.contains("purpose"))),
        "{searches:?}"
    );
    assert!(
        searches.iter().any(|r| r["outcome"] == "allowed"
            && r["purpose"] == "stolen-vehicle"
            && r["results"] == 1
            && r["query"].as_str().is_some_and(|q| q.contains(&plate))),
        "{searches:?}"
    );

    // The auditor finds it in the access audit, by user.
    b.client()?.delete_all_cookies().await?;
    log_in(&b, "auditor").await?;
    b.goto("/console/audits").await?;
    b.wait_for("form#access-form", PAGE_WAIT).await?;
    b.fill("access-user", "sup1").await?;
    b.click("access-filter").await?;
    b.wait_for("table#access tr.access", PAGE_WAIT).await?;
    let mut seen = Vec::new();
    for r in b.find_all("table#access tr.access").await? {
        seen.push(r.text().await?);
    }
    assert!(
        seen.iter()
            .any(|r| r.contains("sup1") && r.contains(&plate) && r.contains("stolen-vehicle")),
        "{seen:#?}"
    );
    for id in [
        "training",
        "retention",
        "holds-audit",
        "exports",
        "access-csv",
    ] {
        b.by_id(id).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_read_shows_its_photo_and_a_valid_signature() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = hub_with_supervisor(&pki, dir.path())?;
    let (edge, node) = photo_edge(&pki, &hub, dir.path(), "pole-2", Some("10ms"))?;
    let plate = plate_read(&edge, EDGE_WAIT)?;
    let b = Browser::start("read_photo_and_signature", &hub).await?;
    log_in(&b, "sup1").await?;

    search(&b, &plate, "stolen-vehicle").await?;
    b.wait_for("tr.hit button.open-read", PAGE_WAIT)
        .await?
        .click()
        .await?;
    b.wait_for("#page-read", PAGE_WAIT).await?;
    assert!(
        !b.client()?.current_url().await?.as_str().contains(&plate),
        "the plate went into a URL"
    );
    // The photos are drawn (decoded: a real width), from the page itself.
    let photos = b
        .wait_until(PAGE_WAIT, "the photos to load", || async {
            let v = b
                .eval(
                    "const imgs = [...document.querySelectorAll('img.photo')]; \
                     if (!imgs.length || !imgs.every(i => i.complete)) return null; \
                     return imgs.map(i => [i.naturalWidth, i.src.slice(0, 23)]);",
                )
                .await
                .ok()?;
            v.as_array().cloned()
        })
        .await?;
    assert!(!photos.is_empty());
    for p in &photos {
        assert!(
            p[0].as_u64().is_some_and(|w| w > 0),
            "a photo that does not draw: {photos:?}"
        );
        assert_eq!(p[1], "data:image/jpeg;base64,", "{photos:?}");
    }
    let signature = b.by_id("signature").await?;
    let class = signature.attr("class").await?.unwrap_or_default();
    let text = signature.text().await?;
    assert!(
        class.split_whitespace().any(|c| c == "ok"),
        "{class}: {text}"
    );
    assert!(text.starts_with("Valid"), "{text}");
    assert!(b.text("#read-plate").await?.contains(&plate));
    assert!(b.text("#read-node").await?.contains(&node.name));
    for id in [
        "read-time",
        "read-clock",
        "read-location",
        "read-location-source",
        "read-confidence",
    ] {
        assert!(
            !b.text(&format!("#{id}")).await?.trim().is_empty(),
            "#{id} is empty"
        );
    }
    // Opening it is in the access log, with its purpose.
    let rows = access_rows(&hub)?;
    assert!(
        rows.iter().any(|r| r["user"] == "sup1"
            && r["action"] != "search"
            && r["purpose"] == "stolen-vehicle"
            && r["query"].as_str().is_some_and(|q| q.contains(&node.name))),
        "no access record of the opened read: {rows:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_entry_raises_a_live_alert_that_is_disposed_in_three_stages() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = hub_with_supervisor(&pki, dir.path())?;
    // Learn the plate this photo reads as, on a first node.
    let scout_dir = dir.path().join("scout");
    std::fs::create_dir_all(&scout_dir)?;
    let (scout, _) = photo_edge(&pki, &hub, &scout_dir, "scout-1", Some("10ms"))?;
    let plate = plate_read(&scout, EDGE_WAIT)?;
    drop(scout);

    let b = Browser::start("local_entry_live_alert_dispose", &hub).await?;
    log_in(&b, "sup1").await?;
    b.goto("/console/hotlists").await?;
    b.wait_for("form#local-add-form", PAGE_WAIT).await?;
    b.fill("local-plate", &plate).await?;
    b.select("local-category", "stolen-vehicle").await?;
    b.fill("local-reason", "taken from the depot last night")
        .await?;
    b.fill("local-expires", "2099-12-31").await?;
    b.click("local-add").await?;
    b.wait_for("table#local-entries tr.local-entry", PAGE_WAIT)
        .await?;
    let mut entries = Vec::new();
    for r in b.find_all("tr.local-entry").await? {
        entries.push(r.text().await?);
    }
    assert!(entries.iter().any(|e| e.contains(&plate)), "{entries:?}");
    assert!(b.find("tr.local-entry button.local-remove").await.is_some());

    // The alerts page is open before the car reads the plate; the row
    // arrives without a reload.
    b.goto("/console/alerts").await?;
    let table = b.wait_for("table#alerts", PAGE_WAIT).await?;
    assert_eq!(
        table.attr("data-live").await?.as_deref(),
        Some("/console/alerts/live")
    );
    b.eval("window.alprNotReloaded = true; return null;")
        .await?;
    let (_car, node) = photo_edge(&pki, &hub, dir.path(), "car-2", Some("5s"))?;
    // (The hub's own past match of the scout's read may be listed already:
    // the row wanted is car-2's.)
    let car_link = format!("/console/alerts/{}/", node.name);
    let row = b
        .wait_until(EDGE_WAIT, "car-2's alert row, live", || async {
            for r in b.find_all("table#alerts tr.alert").await.ok()? {
                let link = r
                    .find(fantoccini::Locator::Css("a.alert-open"))
                    .await
                    .ok()?;
                let href = link.attr("href").await.ok()??;
                if href.starts_with(&car_link) {
                    return Some(r);
                }
            }
            None
        })
        .await?;
    assert_eq!(
        b.eval("return window.alprNotReloaded === true;").await?,
        serde_json::Value::Bool(true),
        "the page was reloaded to show the alert"
    );
    b.by_id("live-status").await?;
    for css in [".alert-plate", ".match-kind", ".list-age"] {
        let el = row.find(fantoccini::Locator::Css(css)).await?;
        assert!(!el.text().await?.trim().is_empty(), "{css} is empty");
    }
    // The local entry is the plate as read; the recogniser reads no state.
    assert_eq!(
        row.find(fantoccini::Locator::Css(".match-kind"))
            .await?
            .text()
            .await?
            .trim(),
        "plate exact, state not read (check it)"
    );
    assert!(row
        .find(fantoccini::Locator::Css(".alert-plate"))
        .await?
        .text()
        .await?
        .contains(&plate));
    let href = row
        .find(fantoccini::Locator::Css("a.alert-open"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    assert!(
        href.starts_with(&format!("/console/alerts/{}/", node.name)) && !href.contains(&plate),
        "{href}"
    );

    // Dispose it in three stages at the hub.
    b.goto(&href).await?;
    b.wait_for("#page-alert", PAGE_WAIT).await?;
    for (n, stage) in ["read:correct", "status:active", "action:no-stop"]
        .into_iter()
        .enumerate()
    {
        b.wait_for("form#dispose-form", PAGE_WAIT).await?;
        b.select("stage", stage).await?;
        b.fill("note", "checked with the state system by radio")
            .await?;
        b.click("dispose").await?;
        b.wait_until(PAGE_WAIT, &format!("stage {stage} shown"), || async {
            (b.find_all("ol#dispositions li.disposition")
                .await
                .ok()?
                .len()
                == n + 1)
                .then_some(())
        })
        .await?;
        assert!(
            b.find("#error").await.is_none(),
            "{:?}",
            b.text("#error").await
        );
    }
    let last = b.text("ol#dispositions").await?;
    assert!(last.contains("no-stop"), "{last}");
    // The hub's own view (what `hub alerts` shows) has the three stages.
    let o = hub.run_as("sup1", &["alerts", "--json"])?;
    assert!(o.status.success(), "{}", output_text(&o));
    let alerts: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)?;
    assert!(
        alerts.iter().any(|a| a["matched_text"] == plate.as_str()
            && a["dispositions"].as_array().is_some_and(|d| d.len() == 3)
            && a["open"] == false),
        "{alerts:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_case_is_exported_and_the_bundle_verifies_offline() -> anyhow::Result<()> {
    const CASE: &str = "26-0100";
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = hub_with_supervisor(&pki, dir.path())?;
    let agencies = dir.path().join("agencies.toml");
    std::fs::write(
        &agencies,
        "[[agencies]]\nori = \"CA0020000\"\nname = \"County District Attorney\"\nkind = \"in-state-public\"\n",
    )?;
    let o = hub
        .as_user("admin")?
        .args(["policy", "set"])
        .arg(&agencies)
        .output()?;
    assert!(o.status.success(), "{}", output_text(&o));
    let (edge, _) = photo_edge(&pki, &hub, dir.path(), "pole-3", Some("10ms"))?;
    let plate = plate_read(&edge, EDGE_WAIT)?;
    let b = Browser::start("hold_and_export", &hub).await?;
    log_in(&b, "sup1").await?;

    // The hold, on the photo's plate.
    b.goto("/console/holds").await?;
    b.wait_for("form#hold-form", PAGE_WAIT).await?;
    b.fill("hold-case", CASE).await?;
    b.fill("hold-reason", "robbery at 5th and Main").await?;
    b.wait_for("#hold-form input[name*=plate]", PAGE_WAIT)
        .await?
        .send_keys(&plate)
        .await?;
    b.click("place-hold").await?;
    b.wait_for("table#holds tr.hold", PAGE_WAIT).await?;
    let held = b.text("table#holds tr.hold").await?;
    assert!(held.contains(CASE), "{held}");
    assert!(b.find("tr.hold button.release-hold").await.is_some());

    // The export: refused while the node's checkpoint or photos are still
    // on their way (the form again with the reason), then a download.
    b.goto("/console/export").await?;
    let bundle = b
        .wait_until(EDGE_WAIT, "the exported bundle", || async {
            b.wait_for("form#export-form", PAGE_WAIT).await.ok()?;
            b.fill("export-case", CASE).await.ok()?;
            b.select("export-recipient", "CA0020000").await.ok()?;
            b.select("export-purpose", "robbery").await.ok()?;
            b.click("export").await.ok()?;
            match b.download(".alprbundle", Duration::from_secs(5)).await {
                Ok(p) => Some(p),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
            }
        })
        .await?;
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        name.starts_with(CASE),
        "the file is named for the case: {name}"
    );

    // Offline, from the CA certificate alone.
    let o = std::process::Command::new(bin("hub")?)
        .arg("verify")
        .arg("--ca")
        .arg(pki.ca_cert())
        .arg(&bundle)
        .output()?;
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("evidence AUTHENTIC"),
        "{}",
        output_text(&o)
    );
    assert!(
        output_text(&o).contains("1 reads (1 verified)")
            || output_text(&o).contains("1 read (1 verified)"),
        "{}",
        output_text(&o)
    );
    // In the export log, with its recipient.
    let o = hub.run_as("auditor", &["audit", "exports", "--json"])?;
    assert!(o.status.success(), "{}", output_text(&o));
    let log: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)?;
    assert!(
        log.iter().any(|r| r["recipient"] == "CA0020000"
            && r["case"] == CASE
            && r["outcome"] == "allowed"),
        "{log:?}"
    );
    Ok(())
}
