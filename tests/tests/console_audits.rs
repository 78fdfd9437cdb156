//! The console's audits, users, dashboard and transparency pages over
//! HTTPS against the real hub: an auditor finds a search made through the
//! API in the access audit and downloads it as CSV (and running the audit
//! is itself logged); the public transparency page needs no login and
//! shows counts, never a plate; an administrator adds a user and records a
//! training; an officer is refused the users page and offered no link.

use std::time::Duration;

use alpr_e2e::{password_of, Edge, EdgeOptions, Hub, Pki, AGENCY, TRAINED};
use alpr_hub::console::client::Answer;

const LIMIT: Duration = Duration::from_secs(120);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The text of the element with `id`.
fn text_of(a: &Answer, id: &str) -> String {
    let Some(text) = a.text_of(id) else {
        panic!("no #{id} on the page: {}", a.body)
    };
    text
}

#[test]
fn an_auditor_finds_a_search_in_the_access_audit_and_its_csv_and_the_public_page_shows_counts_only(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let node = pki.node("pole-7")?;
    let edge = Edge::start(
        &node,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 3,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(3, LIMIT)?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;
    let out = hub.run_as(
        "ofc1",
        &["search", "GEN00002", "--purpose", "stolen-vehicle"],
    )?;
    assert!(out.status.success(), "{}", alpr_e2e::output_text(&out));

    runtime().block_on(async {
        let mut b = hub.console("auditor").await?;
        let page = b.get("/console/audits").await?;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("id=\"page-audits\""));
        for id in ["training-csv", "retention-csv", "holds-csv", "exports-csv"] {
            assert!(page.body.contains(&format!("id=\"{id}\"")), "no #{id}");
        }
        let csrf = page.csrf().expect("a CSRF field");

        // Filter by the plate: the officer's search is listed.
        let filter = [
            ("csrf", csrf.as_str()),
            ("plate", "gen00002"),
            ("purpose", ""),
        ];
        let listed = b.post_form("/console/audits", &filter).await?;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let rows: Vec<&str> = listed.body.split("<tr class=\"access\">").skip(1).collect();
        assert_eq!(rows.len(), 1, "one search named the plate: {}", listed.body);
        assert!(
            rows[0].contains("ofc1")
                && rows[0].contains("search")
                && rows[0].contains("stolen-vehicle")
        );

        // The same audit as CSV: a download with the header and the row.
        let csv = b.post_form("/console/audits/access.csv", &filter).await?;
        assert_eq!(csv.status, 200, "{}", csv.body);
        assert!(csv
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/csv")));
        let disposition = csv.header("content-disposition").unwrap_or_default();
        assert!(
            disposition.starts_with("attachment; filename=\"access-audit-")
                && disposition.ends_with(".csv\""),
            "{disposition}"
        );
        let mut lines = csv.body.lines();
        assert_eq!(
            lines.next(),
            Some("time,node,seq,user,agency,action,purpose,case,query,results,outcome,source")
        );
        let data: Vec<&str> = lines.collect();
        assert_eq!(data.len(), 1, "{}", csv.body);
        assert!(
            data[0].contains(",ofc1,") && data[0].contains(",search,stolen-vehicle,"),
            "{}",
            data[0]
        );
        assert!(data[0].contains(AGENCY));

        // Each other audit is a file too, with its own header.
        for (name, first_column) in [
            ("training", "user,"),
            ("retention", "record,"),
            ("holds", "id,"),
            ("exports", "time,"),
        ] {
            let file = b
                .post_form(
                    &format!("/console/audits/{name}.csv"),
                    &[("csrf", csrf.as_str())],
                )
                .await?;
            assert_eq!(file.status, 200, "{name}: {}", file.body);
            let disposition = file.header("content-disposition").unwrap_or_default();
            assert!(
                disposition.starts_with(&format!("attachment; filename=\"{name}-audit-")),
                "{disposition}"
            );
            assert!(file.body.starts_with(first_column), "{name}: {}", file.body);
        }
        let unknown = b
            .post_form("/console/audits/payroll.csv", &[("csrf", csrf.as_str())])
            .await?;
        assert_eq!(unknown.status, 404, "{}", unknown.body);

        // A form without this session's CSRF value is refused.
        let forged = b
            .post_form(
                "/console/audits",
                &[("csrf", "0000"), ("plate", "GEN00002")],
            )
            .await?;
        assert_eq!(forged.status, 403);

        // The public page: no login, counts, the policy, and no plate.
        let mut public = hub.console_client()?;
        let t = public.get("/transparency").await?;
        assert_eq!(t.status, 200, "{}", t.body);
        assert_eq!(text_of(&t, "cameras"), "1");
        assert_eq!(text_of(&t, "reads-30d"), "3");
        assert_eq!(
            text_of(&t, "searches-30d"),
            "1",
            "the officer's one answered search"
        );
        assert!(t.body.contains("id=\"policy\"") && t.body.contains("Stolen vehicle"));
        assert!(t.body.contains("365 days"), "the hub's retention period");
        assert!(!t.body.contains("GEN0000"), "a plate on the public page");
        assert!(!t.body.contains("ofc1"), "a user on the public page");
        let p = public.get("/transparency/policy").await?;
        assert_eq!(p.status, 200);
        assert!(p.body.contains("Authorised uses"));
        anyhow::Ok(())
    })?;

    // Running the audit is itself in the access log, with its filter.
    let out = hub.run_as("auditor", &["audit", "access", "--json"])?;
    assert!(out.status.success(), "{}", alpr_e2e::output_text(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let logged = audit["rows"].as_array().cloned().unwrap_or_default();
    assert!(
        logged.iter().any(|r| r["user"] == "auditor"
            && r["action"] == "audit-query"
            && r["query"]
                .as_str()
                .is_some_and(|q| q.contains("plate=gen00002"))),
        "the console's audit is not in the access log: {audit}"
    );
    Ok(())
}

#[test]
fn an_administrator_adds_a_user_and_records_training_and_an_officer_may_not() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    runtime().block_on(async {
        let mut admin = hub.console("admin").await?;
        let dash = admin.get("/console/").await?;
        assert_eq!(dash.status, 200, "{}", dash.body);
        for id in [
            "page-dashboard",
            "nodes",
            "reads-per-hour",
            "retention-due",
            "nav-users",
        ] {
            assert!(
                dash.body.contains(&format!("id=\"{id}\"")),
                "no #{id}: {}",
                dash.body
            );
        }
        let users = admin.get("/console/users").await?;
        assert_eq!(users.status, 200, "{}", users.body);
        let csrf = users.csrf().expect("a CSRF field");

        let clerk = password_of("clerk1");
        let mut add = vec![
            ("csrf", csrf.as_str()),
            ("username", "clerk1"),
            ("agency", AGENCY),
            ("title", "Records clerk"),
            ("role", "officer"),
            ("password", "short"),
            ("training_completed", "2026-01-01"),
            ("training_expires", "2099-01-01"),
        ];
        let refused = admin.post_form("/console/users/add", &add).await?;
        assert_eq!(refused.status, 200, "re-rendered with the reason");
        assert!(refused.body.contains("id=\"error\""), "{}", refused.body);
        assert!(!refused.body.contains("<td>clerk1</td>"));

        add[5].1 = clerk.as_str();
        let added = admin.post_form("/console/users/add", &add).await?;
        assert!(added.body.contains("id=\"notice\""), "{}", added.body);
        assert!(added.body.contains("<td>clerk1</td>"), "{}", added.body);

        let trained = admin
            .post_form(
                "/console/users/train",
                &[
                    ("csrf", csrf.as_str()),
                    ("username", "clerk1"),
                    ("completed", "2026-02-01"),
                    ("expires", "2027-02-01"),
                ],
            )
            .await?;
        assert!(
            trained.body.contains("Training recorded for clerk1"),
            "{}",
            trained.body
        );
        assert!(trained.body.contains("2026-02-01 → 2027-02-01"));

        // The new user can log in to the console.
        hub.console("clerk1").await?;

        // An officer: no users page, and no link to it.
        let mut officer = hub.console("ofc1").await?;
        let denied = officer.get("/console/users").await?;
        assert_eq!(denied.status, 403, "{}", denied.body);
        assert!(denied.body.contains("id=\"error\""));
        let dash = officer.get("/console/").await?;
        assert_eq!(dash.status, 200);
        assert!(!dash.body.contains("/console/users"), "{}", dash.body);
        assert!(
            !dash.body.contains("id=\"nodes\""),
            "officers do not see the nodes"
        );
        assert_eq!(text_of(&dash, "alerts-waiting"), "0");
        let forged = officer
            .post_form(
                "/console/users/disable",
                &[("csrf", &csrf), ("username", "admin")],
            )
            .await?;
        assert_eq!(forged.status, 403);

        // Disabled: the account can no longer log in.
        let disabled = admin
            .post_form(
                "/console/users/disable",
                &[("csrf", csrf.as_str()), ("username", "clerk1")],
            )
            .await?;
        assert!(
            disabled.body.contains("clerk1 is disabled"),
            "{}",
            disabled.body
        );
        let mut b = hub.console_client()?;
        let again = b.login("clerk1", &clerk).await?;
        assert_eq!(again.status, 403, "{}", again.body);
        anyhow::Ok(())
    })?;
    Ok(())
}
