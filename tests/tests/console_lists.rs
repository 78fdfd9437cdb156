//! The console's hotlists and holds pages end to end: a real `hub serve`,
//! people logging in through the login form over HTTPS (the session
//! cookie kept, the CSRF value taken from each page) and using the pages
//! as a browser would send them. What they do is checked where a user
//! would notice it: the page, the API's lists (`hub hotlist list`, `hub
//! hold list`) and the access log.

use alpr_e2e::{output_text, password_of, Hub, Pki, TRAINED};
use alpr_shared::hotlist::sample;
use alpr_shared::types::UnixMillis;

const SOURCES: &str = r#"
[hotlist]
max_file_bytes = 1500000

[[hotlist.sources]]
name = "ncic"
format = "ncic"
"#;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `hub ARGS --json` as `user`, parsed.
fn api_json(hub: &Hub, user: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let o = hub.run_as(user, args)?;
    anyhow::ensure!(o.status.success(), "hub {args:?}: {}", output_text(&o));
    Ok(serde_json::from_slice(&o.stdout)?)
}

/// The date `days` from now, as a date input sends it.
fn date_in(days: u64) -> String {
    UnixMillis(UnixMillis::now().0 + days * 86_400_000).to_string()[..10].to_owned()
}

#[test]
fn an_operator_keeps_local_entries_and_imports_a_list_in_the_console() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start_with(&pki, dir.path(), &[], SOURCES)?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    runtime()?.block_on(async {
        let mut b = hub.console_client()?;
        let login = b.login("op1", &password_of("op1")).await?;
        assert_eq!(login.status, 303, "{}", login.body);
        assert_eq!(login.header("location"), Some("/console/"));

        // The page, with only the sections an operator may use.
        let p = b.get("/console/hotlists").await?;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.has_id("page-hotlists"));
        assert!(p.has_id("nav-hotlists") && p.has_id("nav-holds"));
        assert!(
            !p.has_id("nav-users") && !p.has_id("nav-audits"),
            "{}",
            p.body
        );
        let sources = p.rows("source");
        assert_eq!(sources.len(), 1, "{}", p.body);
        assert!(
            sources[0].contains("nothing imported yet"),
            "{}",
            sources[0]
        );
        let csrf = b.csrf()?;

        // A partial plate is added, listed on the page and by the API.
        let expires = date_in(10);
        let p = b
            .post_form(
                "/console/hotlists/local",
                &[
                    ("csrf", &csrf),
                    ("plate", "7ab*12"),
                    ("category", "suspect"),
                    ("reason", "hit and run on Main St"),
                    ("expires", &expires),
                    ("state", ""),
                    ("case", ""),
                ],
            )
            .await?;
        assert_eq!(p.status, 200, "{}", p.body);
        let notice = p.text_of("notice").unwrap_or_default();
        assert!(notice.contains("Added 7AB*12"), "{}", p.body);
        let rows = p.rows("local-entry");
        assert_eq!(rows.len(), 1, "{}", p.body);
        assert!(rows[0].contains("7AB*12") && rows[0].contains("hit and run on Main St"));
        let listed = api_json(&hub, "op1", &["hotlist", "list", "--local", "--json"])?;
        assert_eq!(listed[0]["plate"], "7AB*12", "{listed}");
        let id = listed[0]["id"].as_str().unwrap_or_default().to_owned();
        assert!(
            rows[0].contains(&format!("data-id=\"{id}\"")),
            "{}",
            rows[0]
        );

        // A bad pattern and a past expiry are refused with the API's
        // words, and what was typed stays in the form.
        let p = b
            .post_form(
                "/console/hotlists/local",
                &[
                    ("csrf", &csrf),
                    ("plate", "7AB#1"),
                    ("category", "stolen-plate"),
                    ("reason", "typed in a hurry"),
                    ("expires", ""),
                ],
            )
            .await?;
        let error = p.text_of("error").unwrap_or_default();
        assert!(error.contains("a plate pattern has letters"), "{}", p.body);
        assert!(p.body.contains("value=\"7AB#1\""), "{}", p.body);
        assert!(p.body.contains("value=\"typed in a hurry\""));
        assert!(p.body.contains("<option value=\"stolen-plate\" selected>"));
        let p = b
            .post_form(
                "/console/hotlists/local",
                &[
                    ("csrf", &csrf),
                    ("plate", "8CD*34"),
                    ("category", "suspect"),
                    ("reason", "burglary"),
                    ("expires", "2020-01-01"),
                ],
            )
            .await?;
        let error = p.text_of("error").unwrap_or_default();
        assert!(error.contains("expiry is not in the future"), "{}", p.body);
        assert_eq!(p.rows("local-entry").len(), 1, "a refused entry was listed");

        // Edit: the form shows the entry; a changed reason is saved.
        let p = b.get(&format!("/console/hotlists/local/{id}")).await?;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.has_id("local-edit-form"));
        assert!(p.body.contains("value=\"7AB*12\""), "{}", p.body);
        assert!(
            p.body.contains(&format!("value=\"{expires}\"")),
            "{}",
            p.body
        );
        let p = b
            .post_form(
                &format!("/console/hotlists/local/{id}"),
                &[
                    ("csrf", &csrf),
                    ("plate", "7AB*12"),
                    ("category", "suspect"),
                    ("reason", "hit and run, red sedan"),
                    ("expires", &expires),
                    ("state", "CA"),
                    ("case", ""),
                ],
            )
            .await?;
        assert!(
            p.text_of("notice").is_some_and(|n| n.contains("Changed")),
            "{}",
            p.body
        );
        let listed = api_json(&hub, "op1", &["hotlist", "list", "--local", "--json"])?;
        assert_eq!(listed[0]["reason"], "hit and run, red sedan", "{listed}");
        assert_eq!(listed[0]["state"], "CA", "{listed}");

        // Remove: it leaves the active list, here and in the API.
        let p = b
            .post_form(
                &format!("/console/hotlists/local/{id}/remove"),
                &[("csrf", &csrf), ("reason", "vehicle found")],
            )
            .await?;
        assert!(
            p.text_of("notice")
                .is_some_and(|n| n.contains("Removed 7AB*12")),
            "{}",
            p.body
        );
        assert!(p.rows("local-entry").is_empty(), "{}", p.body);
        assert!(p.rows("past-entry")[0].contains("removed by op1"));
        let listed = api_json(&hub, "op1", &["hotlist", "list", "--local", "--json"])?;
        assert_eq!(listed, serde_json::json!([]), "{listed}");

        // An NCIC extract of 20,000 rows (over the console's usual body
        // limit) becomes generation 1; a bad row is reported by line.
        let rows = sample::entries(20_000, 5);
        let mut text = String::from_utf8(sample::ncic(&rows))?;
        text.insert_str(0, "V000000999CA019420020261101AB#12     CA2027\n");
        let p = b
            .post_multipart(
                "/console/hotlists/import",
                &[("csrf", &csrf), ("source", "nope"), ("format", "ncic")],
                ("file", "extract.txt", text.as_bytes()),
            )
            .await?;
        assert!(
            p.text_of("error")
                .is_some_and(|e| e.contains("no hotlist source")),
            "{}",
            p.body
        );
        let p = b
            .post_multipart(
                "/console/hotlists/import",
                &[("csrf", &csrf), ("source", "ncic"), ("format", "ncic")],
                ("file", "extract.txt", text.as_bytes()),
            )
            .await?;
        let notice = p.text_of("notice").unwrap_or_default();
        assert!(notice.contains("as generation 1"), "{}", p.body);
        assert!(notice.contains("1 bad row skipped"), "{notice}");
        assert!(
            p.text_of("import-bad")
                .is_some_and(|l| l.contains("line 1:")),
            "{}",
            p.body
        );
        let sources = p.rows("source");
        assert!(
            sources[0].contains("<td class=\"num generation\">1</td>"),
            "{}",
            sources[0]
        );
        // A file over `hotlist.max_file_bytes` is refused with the reason.
        let big = sample::ncic(&sample::entries(26_000, 6));
        assert!(big.len() > 1_500_000);
        let p = b
            .post_multipart(
                "/console/hotlists/import",
                &[("csrf", &csrf), ("source", "ncic"), ("format", "")],
                ("file", "big.txt", &big),
            )
            .await?;
        assert!(
            p.text_of("error")
                .is_some_and(|e| e.contains("at most 1500000 are accepted")),
            "{}",
            p.body
        );
        let generations = api_json(&hub, "op1", &["hotlist", "generations", "ncic", "--json"])?;
        assert_eq!(
            generations.as_array().map(Vec::len),
            Some(1),
            "{generations}"
        );
        assert_eq!(
            generations[0]["record"]["imported_by"], "op1",
            "{generations}"
        );

        // A form from another session is refused.
        let p = b
            .post_form(
                "/console/hotlists/local",
                &[("csrf", "0123"), ("plate", "9ZZ*99"), ("reason", "x")],
            )
            .await?;
        assert_eq!(p.status, 403, "{}", p.body);
        anyhow::Ok(())
    })?;

    // Each change is in the access log, as op1's.
    let log = api_json(&hub, "auditor", &["audit", "access", "--json"])?.to_string();
    for action in [
        "hotlist-add",
        "hotlist-edit",
        "hotlist-remove",
        "hotlist-import",
    ] {
        assert!(log.contains(action), "no {action} in the access log: {log}");
    }
    Ok(())
}

#[test]
fn holds_are_placed_and_released_in_the_console_and_an_officer_may_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create_in(dir.path())?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("op1", "operator", TRAINED)?;
    hub.login("op1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    runtime()?.block_on(async {
        let mut b = hub.console_client()?;
        assert_eq!(b.login("op1", &password_of("op1")).await?.status, 303);
        let p = b.get("/console/holds").await?;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.has_id("page-holds") && p.has_id("hold-form"));
        let csrf = b.csrf()?;

        // A hold without a scope is refused with the API's words; the
        // form keeps the case.
        let p = b
            .post_form(
                "/console/holds",
                &[
                    ("csrf", &csrf),
                    ("case", "2026-00123"),
                    ("reason", "homicide investigation"),
                ],
            )
            .await?;
        assert!(
            p.text_of("error")
                .is_some_and(|e| e.contains("at least one plate")),
            "{}",
            p.body
        );
        assert!(p.body.contains("value=\"2026-00123\""));

        // Placed: a plate and a time range.
        let p = b
            .post_form(
                "/console/holds",
                &[
                    ("csrf", &csrf),
                    ("case", "2026-00123"),
                    ("reason", "homicide investigation"),
                    ("plates", "7abc123"),
                    ("nodes", ""),
                    ("from", "2026-11-01T00:00"),
                    ("to", ""),
                    ("lat", ""),
                    ("lon", ""),
                    ("radius_m", ""),
                ],
            )
            .await?;
        assert!(
            p.text_of("notice")
                .is_some_and(|n| n.contains("Hold placed for case 2026-00123")),
            "{}",
            p.body
        );
        let holds = p.rows("hold");
        assert_eq!(holds.len(), 1, "{}", p.body);
        assert!(holds[0].contains("plates 7ABC123") && holds[0].contains("from 2026-11-01"));
        let listed = api_json(&hub, "op1", &["hold", "list", "--json"])?;
        assert_eq!(listed[0]["scope"]["plates"][0], "7ABC123", "{listed}");
        let id = listed[0]["id"].as_str().unwrap_or_default().to_owned();

        // Released only with a reason.
        let release = format!("/console/holds/{id}/release");
        let p = b
            .post_form(&release, &[("csrf", &csrf), ("reason", " ")])
            .await?;
        assert!(
            p.text_of("error")
                .is_some_and(|e| e.contains("needs a reason")),
            "{}",
            p.body
        );
        assert_eq!(p.rows("hold").len(), 1);
        let p = b
            .post_form(&release, &[("csrf", &csrf), ("reason", "case closed")])
            .await?;
        assert!(
            p.text_of("notice").is_some_and(|n| n.contains("released")),
            "{}",
            p.body
        );
        assert!(p.rows("hold").is_empty(), "{}", p.body);
        assert!(p.rows("released-hold")[0].contains("op1"));
        assert!(p.rows("released-hold")[0].contains("case closed"));
        let active = api_json(&hub, "op1", &["hold", "list", "--json"])?;
        assert_eq!(active, serde_json::json!([]), "{active}");

        // An officer may use neither page, nor post to them.
        let mut o = hub.console_client()?;
        assert_eq!(o.login("ofc1", &password_of("ofc1")).await?.status, 303);
        for path in ["/console/holds", "/console/hotlists"] {
            let p = o.get(path).await?;
            assert_eq!(p.status, 403, "{path}: {}", p.body);
        }
        let p = o
            .post_form(
                "/console/holds",
                &[
                    ("csrf", "any"),
                    ("case", "2026-00999"),
                    ("reason", "x"),
                    ("plates", "1ABC234"),
                ],
            )
            .await?;
        assert_eq!(p.status, 403);
        assert!(
            p.text_of("error")
                .is_some_and(|e| e.contains("may not manage holds")),
            "{}",
            p.body
        );
        anyhow::Ok(())
    })?;
    let all = api_json(&hub, "op1", &["hold", "list", "--all", "--json"])?;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let log = api_json(&hub, "auditor", &["audit", "access", "--json"])?.to_string();
    assert!(log.contains("hold-release"), "{log}");
    Ok(())
}
