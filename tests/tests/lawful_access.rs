//! Lawful access through the real API and real processes: a search needs a
//! purpose from the policy (and a case number where the policy asks for
//! one), and every search — refused or answered — leaves an access entry
//! with the four statutory fields; wildcard and OCR-tolerant searches find
//! partial plates; roles decide who may search and who may change the
//! policy; an invalid policy change is refused and changes nothing; an
//! officer added at the hub can log in on an edge once it has synced, and
//! cannot once the hub has disabled them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alpr_e2e::{bin, password_of, wait_for, Edge, EdgeOptions, Hub, Pki, AGENCY, TRAINED};

const LIMIT: Duration = Duration::from_secs(120);

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn plates(results: &serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = results["hits"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|h| h["plate"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

/// A hub holding six reads of `pole-9` (`GEN00000`…), and officer `ofc1`
/// logged in.
fn six_reads_and_an_officer(pki: &Pki, dir: &Path) -> anyhow::Result<(Hub, Edge)> {
    let hub = Hub::start(pki, dir, &[])?;
    let edge = Edge::start(
        &pki.node("pole-9")?,
        hub.addr,
        dir,
        &EdgeOptions {
            generate: 6,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(6, LIMIT)?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;
    Ok((hub, edge))
}

#[test]
fn a_search_needs_a_purpose_and_every_search_leaves_the_four_statutory_fields() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let (hub, _edge) = six_reads_and_an_officer(&pki, dir.path())?;

    // No purpose, one not in the policy, no case number where one is due:
    // refused, each with its reason.
    for (args, why) in [
        (
            vec!["search", "GEN00003", "--purpose", ""],
            "purpose is required",
        ),
        (
            vec!["search", "GEN00003", "--purpose", "curiosity"],
            "not a purpose",
        ),
        (
            vec!["search", "GEN00003", "--purpose", "robbery"],
            "needs a case number",
        ),
    ] {
        let out = hub.run_as("ofc1", &args)?;
        assert!(!out.status.success(), "{args:?} was answered");
        assert!(text(&out).contains(why), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("pole-9"), "a refusal leaked reads");
    }

    // Exact, wildcard and OCR-tolerant searches with a purpose.
    let exact = json(&hub.run_as(
        "ofc1",
        &[
            "search",
            "GEN00003",
            "--purpose",
            "stolen-vehicle",
            "--json",
        ],
    )?);
    assert_eq!(plates(&exact), ["GEN00003"]);
    assert_eq!(exact["hits"][0]["signature"], true, "{exact}");
    assert_eq!(exact["hits"][0]["node"], "pole-9");
    let wild = json(&hub.run_as(
        "ofc1",
        &[
            "search",
            "gen0000?",
            "--purpose",
            "stolen-vehicle",
            "--json",
        ],
    )?);
    assert_eq!(plates(&wild).len(), 6, "{wild}");
    let tolerant = json(&hub.run_as(
        "ofc1",
        &[
            "search",
            "6EN0OOO5",
            "--tolerant",
            "--purpose",
            "robbery",
            "--case",
            "26-0042",
            "--json",
        ],
    )?);
    assert_eq!(plates(&tolerant), ["GEN00005"], "G~6 and 0~O: {tolerant}");

    // An auditor reads logs; searching reads is not their job.
    let out = hub.run_as(
        "auditor",
        &["search", "GEN00003", "--purpose", "stolen-vehicle"],
    )?;
    assert!(!out.status.success(), "an auditor searched: {}", text(&out));

    // Every search is in the access log: when, what, who and agency, why.
    let audit = json(&hub.run_as("auditor", &["audit", "access", "--json"])?);
    let rows = audit["rows"].as_array().cloned().unwrap_or_default();
    let searches: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["user"] == "ofc1" && r["action"] == "search")
        .collect();
    assert_eq!(searches.len(), 6, "three refused, three answered: {audit}");
    for r in &searches {
        assert!(r["time"].as_u64().is_some_and(|t| t > 0), "{r}");
        assert_eq!(r["agency"], AGENCY, "{r}");
        assert!(
            r["query"]
                .as_str()
                .is_some_and(|q| q.to_uppercase().contains("GEN") || q.contains("6EN")),
            "{r}"
        );
    }
    let answered: Vec<_> = searches
        .iter()
        .filter(|r| r["outcome"] == "allowed")
        .collect();
    assert_eq!(answered.len(), 3, "{audit}");
    assert!(answered.iter().all(|r| r["purpose"].is_string()), "{audit}");
    let tolerant_row = answered
        .iter()
        .find(|r| r["case"] == "26-0042")
        .expect("the tolerant search with its case number");
    assert_eq!(tolerant_row["purpose"], "robbery");
    assert_eq!(tolerant_row["results"], 1);
    let refused = searches
        .iter()
        .filter(|r| {
            r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused"))
        })
        .count();
    assert_eq!(refused, 3, "{audit}");
    Ok(())
}

fn write_settings(dir: &Path, name: &str, body: &str) -> anyhow::Result<std::path::PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, body)?;
    Ok(p)
}

fn policy_version(hub: &Hub) -> anyhow::Result<u64> {
    let v = json(&hub.run_as("auditor", &["policy", "show", "--json"])?);
    v["version"].as_u64().ok_or_else(|| anyhow::anyhow!("{v}"))
}

#[test]
fn only_an_administrator_changes_the_policy_and_an_invalid_change_changes_nothing(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;
    // Version 1, and 2 listing the new officer for the edges.
    let before = wait_for(LIMIT, "the policy listing the officer", || {
        policy_version(&hub).ok().filter(|v| *v == 2)
    })?;

    let short = write_settings(dir.path(), "short.toml", "hub_retention_days = 200\n")?;
    let out = hub
        .as_user("admin")?
        .args(["policy", "set"])
        .arg(&short)
        .output()?;
    assert!(!out.status.success(), "retention of 200 days was accepted");
    assert!(text(&out).contains("365"), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("unchanged at version {before}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        policy_version(&hub)?,
        before,
        "a refused change changed the policy"
    );

    let fine = write_settings(
        dir.path(),
        "fine.toml",
        "hub_retention_days = 400\nedge_retention_days = 20\n",
    )?;
    let out = hub
        .as_user("ofc1")?
        .args(["policy", "set"])
        .arg(&fine)
        .output()?;
    assert!(!out.status.success(), "an officer changed the policy");
    assert_eq!(policy_version(&hub)?, before);

    let out = hub
        .as_user("admin")?
        .args(["policy", "set"])
        .arg(&fine)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let shown = json(&hub.run_as("auditor", &["policy", "show", "--json"])?);
    assert_eq!(shown["version"], before + 1);
    assert_eq!(shown["hub_retention_days"], 400);

    // Both attempts of the administrator are in the access log.
    let audit = json(&hub.run_as("auditor", &["audit", "access", "--json"])?);
    let changes: Vec<String> = audit["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["action"] == "policy-change")
        .map(|r| format!("{} {}", r["user"], r["outcome"]))
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().any(|c| c.contains("refused")), "{changes:?}");
    Ok(())
}

fn edge_login(edge: &Edge, dir: &Path, user: &str) -> anyhow::Result<(bool, String)> {
    let out = Command::new(bin("edge")?)
        .args(["login", "--user", user, "--config"])
        .arg(&edge.config)
        .env("NO_COLOR", "1")
        .env("ALPR_SESSION", dir.join(format!("edge-{user}.json")))
        .env("ALPR_PASSWORD", password_of(user))
        .output()?;
    Ok((out.status.success(), text(&out)))
}

#[test]
fn an_officer_disabled_at_the_hub_cannot_log_in_on_an_edge_once_it_has_synced() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let node = pki.node("car-3")?;
    let edge = Edge::start(
        &node,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 2,
            ..EdgeOptions::default()
        },
    )?;
    let version = |edge: &Edge| edge.status().and_then(|s| s["policy_version"].as_u64());
    let v1 = wait_for(LIMIT, "the edge's first policy", || version(&edge))?;
    let (ok, out) = edge_login(&edge, dir.path(), "ofc7")?;
    assert!(!ok, "an unknown officer logged in on the edge: {out}");

    hub.add_user("ofc7", "officer", TRAINED)?;
    wait_for(LIMIT, "the policy listing ofc7 at the edge", || {
        version(&edge).filter(|v| *v > v1)
    })?;
    let (ok, out) = edge_login(&edge, dir.path(), "ofc7")?;
    assert!(ok, "ofc7 could not log in on the edge: {out}");

    let v2 = version(&edge).unwrap_or_default();
    let out = hub.run_as("admin", &["user", "disable", "ofc7"])?;
    assert!(out.status.success(), "{}", text(&out));
    wait_for(LIMIT, "the policy without ofc7 at the edge", || {
        version(&edge).filter(|v| *v > v2)
    })?;
    let (ok, out) = edge_login(&edge, dir.path(), "ofc7")?;
    assert!(!ok, "a disabled officer logged in on the edge: {out}");
    Ok(())
}

/// The hub, not the client, decides what an access is, and records every
/// attempt at read data: a search that cannot run, a view of a read the
/// hub does not hold, a view of an alert that is not there and a log
/// bundle asked for by a role that may not have it each leave a refused
/// record with the reason, beside the view that was answered.
#[test]
fn every_attempt_at_read_data_leaves_a_record_with_its_reason() -> anyhow::Result<()> {
    use alpr_hub::api::client::{ApiClient, ApiFailure, Session};
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let (hub, _edge) = six_reads_and_an_officer(&pki, dir.path())?;

    // (command, the action recorded, what its query names, the reason).
    let attempts: [(&[&str], &str, &str, &str); 2] = [
        (
            &["read", "pole-9#999", "--purpose", "stolen-vehicle"],
            "view",
            "read=pole-9#999",
            "no read pole-9#999",
        ),
        (
            &["alert", "show", "pole-9#3"],
            "view",
            "alert pole-9#3",
            "no alert pole-9#3",
        ),
    ];
    for (args, ..) in &attempts {
        let out = hub.run_as("ofc1", args)?;
        assert!(
            !out.status.success(),
            "{args:?} was answered: {}",
            text(&out)
        );
    }
    let out = hub.run_as("ofc1", &["read", "pole-9#2", "--purpose", "stolen-vehicle"])?;
    assert!(out.status.success(), "{}", text(&out));
    // Straight to the API (`hub search` checks a query before sending
    // it): a search that cannot run; and the log bundle, which holds every
    // read, that an officer may not have.
    let session: Session = serde_json::from_slice(&std::fs::read(hub.sessions.join("ofc1.json"))?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = |r: anyhow::Error| r.downcast::<ApiFailure>().ok().map(|f| f.status);
    let (search, bundle) = rt.block_on(async {
        let mut c = ApiClient::connect(&hub.api, &std::fs::read(&hub.ca)?).await?;
        c.token = Some(session.token);
        let bad = serde_json::json!({"query": {"plate": "G*"}, "purpose": "stolen-vehicle"});
        let search: anyhow::Result<serde_json::Value> = c.post("/api/v1/search", &bad).await;
        let mut sink = Vec::new();
        let bundle = c.get_download("/api/v1/audit/bundle", &mut sink).await;
        anyhow::Ok((search.err().and_then(status), bundle.err().and_then(status)))
    })?;
    assert_eq!((search, bundle), (Some(400), Some(403)));

    let audit = json(&hub.run_as("auditor", &["audit", "access", "--json", "--user", "ofc1"])?);
    let rows = audit["rows"].as_array().cloned().unwrap_or_default();
    let refused = |action: &str, names: &str, why: &str| {
        rows.iter().any(|r| {
            r["action"] == action
                && r["query"].as_str().is_some_and(|q| q.contains(names))
                && r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("refused") && o.contains(why))
        })
    };
    for (args, action, names, why) in attempts {
        assert!(
            refused(action, names, why),
            "{args:?} left no refused {action} record naming {names:?} ({why}): {audit:#}"
        );
    }
    assert!(
        refused("search", "G*", "needs at least"),
        "the search that could not run left no record: {audit:#}"
    );
    assert!(
        refused("audit-query", "bundle", "may not"),
        "the refused bundle left no record: {audit:#}"
    );
    assert!(
        rows.iter().any(|r| r["action"] == "view"
            && r["outcome"] == "allowed"
            && r["query"]
                .as_str()
                .is_some_and(|q| q.contains("read=pole-9#2") && q.contains("plate=GEN"))),
        "{audit:#}"
    );
    Ok(())
}
