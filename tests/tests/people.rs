//! People and the hub's API, through the real binaries: `hub bootstrap`,
//! `hub login`, `hub user …`, `hub audit access|verify`, `hub verify`.
//! Training gates access, roles decide what each may do, failed logins
//! are throttled, every login, failure and lock-out is in the signed
//! access log, and an edited access entry is caught offline.

use std::time::Duration;

use alpr_e2e::raw::RawNode;
use alpr_e2e::{password_of, wait_for, Hub, Pki, AGENCY, LAPSED, TRAINED};
use alpr_shared::crypto::SecretKey;
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord, LogWriter};
use alpr_shared::types::{DeviceId, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, Frame, Lane};

const LIMIT: Duration = Duration::from_secs(60);

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `hub audit access --json` as the auditor.
fn access_rows(hub: &Hub, extra: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut args = vec!["audit", "access", "--json"];
    args.extend_from_slice(extra);
    let out = hub.run_as("auditor", &args)?;
    anyhow::ensure!(out.status.success(), "hub audit access: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

#[test]
fn a_user_without_current_training_is_refused_with_the_reason() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;

    hub.add_user("lapsed", "officer", LAPSED)?;
    let err = hub.login("lapsed").expect_err("a lapsed officer logged in");
    let err = err.to_string();
    assert!(
        err.contains("no current training") && err.contains(LAPSED.1),
        "the refusal does not say why: {err}"
    );

    // A session ends its use as soon as the training lapses.
    hub.add_user("ofc", "officer", TRAINED)?;
    hub.login("ofc")?;
    hub.add_user("op", "operator", TRAINED)?;
    hub.login("op")?;
    assert!(hub.run_as("op", &["nodes"])?.status.success());
    let out = hub.run_as(
        "admin",
        &[
            "user",
            "train",
            "op",
            "--completed",
            LAPSED.0,
            "--expires",
            LAPSED.1,
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = hub.run_as("op", &["nodes"])?;
    assert!(
        !out.status.success(),
        "a lapsed operator's session still works"
    );
    assert!(
        stderr(&out).contains("no current training"),
        "{}",
        stderr(&out)
    );

    // A disabled user is refused too.
    let out = hub.run_as("admin", &["user", "disable", "ofc"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = hub.login("ofc").expect_err("a disabled user logged in");
    assert!(err.to_string().contains("disabled"), "{err}");

    // The training audit names both. The operator's training was recorded
    // as expired in 2025, yet they logged in since: the audit flags that
    // access as a violation and exits non-zero.
    let out = hub.run_as("auditor", &["audit", "training", "--json"])?;
    assert!(!out.status.success(), "a violation passed the audit");
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let user = |name: &str| {
        audit["users"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["username"] == name)
            .cloned()
    };
    let op = user("op").ok_or_else(|| anyhow::anyhow!("op missing: {audit:#}"))?;
    assert_eq!(op["lapsed_now"], true);
    assert_eq!(op["training_expires"], LAPSED.1);
    let after: Vec<&str> = op["after_lapse"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(after, ["login"], "{op:#}");
    assert_eq!(audit["violations"], 1, "{audit:#}");
    // Refused logins are not violations.
    let lapsed = user("lapsed").ok_or_else(|| anyhow::anyhow!("lapsed missing: {audit:#}"))?;
    assert!(
        lapsed["after_lapse"].as_array().is_some_and(Vec::is_empty),
        "{lapsed:#}"
    );
    assert!(user("auditor").is_none(), "{audit:#}");
    let out = hub.run_as("auditor", &["audit", "training"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("VIOLATION") && text.contains("op"), "{text}");

    // Each refusal is in the access log with its reason.
    let rows = access_rows(&hub, &["--user", "lapsed"])?;
    assert!(
        rows.iter().any(|r| r["action"] == "login-failed"
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("no current training"))),
        "{rows:#?}"
    );
    Ok(())
}

#[test]
fn an_officer_cannot_add_users_or_read_audits() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("ofc", "officer", TRAINED)?;
    hub.login("ofc")?;

    let out = hub
        .as_user("ofc")?
        .args([
            "user",
            "add",
            "mallory",
            "--agency",
            AGENCY,
            "--title",
            "x",
            "--role",
            "administrator",
            "--training-completed",
            TRAINED.0,
            "--training-expires",
            TRAINED.1,
        ])
        .env("ALPR_NEW_PASSWORD", password_of("mallory"))
        .output()?;
    assert!(!out.status.success(), "an officer added a user");
    assert!(
        stderr(&out).contains("may not manage users"),
        "{}",
        stderr(&out)
    );
    assert!(!hub.run_as("ofc", &["audit", "access"])?.status.success());
    assert!(!hub.run_as("ofc", &["nodes"])?.status.success());

    let out = hub.run_as("admin", &["user", "list", "--json"])?;
    let users: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let names: Vec<&str> = users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert!(!names.contains(&"mallory"), "{names:?}");
    assert!(names.contains(&"ofc"), "{names:?}");

    // Bootstrap is once: with users, it is refused.
    let again = hub.bootstrap("second-admin");
    assert!(again.is_err(), "a second bootstrap succeeded");
    Ok(())
}

#[test]
fn throttling_stops_a_password_guessing_loop_and_every_attempt_is_logged() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start_with(&pki, dir.path(), &[], "login_lockout = \"3s\"\n")?;
    hub.add_user("ofc", "officer", TRAINED)?;

    alpr_e2e::wrong_logins(&hub, "ofc", 5)?;
    // Locked: the right password is refused too, with when to retry.
    let err = hub
        .login("ofc")
        .expect_err("the right password got through the lock");
    let err = err.to_string();
    assert!(err.contains("locked until") && err.contains("429"), "{err}");
    // Until the lock expires.
    wait_for(LIMIT, "the lock to expire", || hub.login("ofc").ok())?;

    let rows = access_rows(&hub, &["--user", "ofc"])?;
    let count = |action: &str| rows.iter().filter(|r| r["action"] == action).count();
    assert!(count("login-failed") >= 6, "{rows:#?}");
    assert_eq!(count("lockout"), 1, "{rows:#?}");
    assert_eq!(count("login"), 1, "{rows:#?}");
    // Each with who, from where, and when.
    for r in &rows {
        assert_eq!(r["user"], "ofc");
        assert_eq!(r["source"], "127.0.0.1");
        assert!(r["time"].as_u64().is_some_and(|t| t > 0), "{r}");
    }
    Ok(())
}

#[test]
fn a_lockout_outlives_a_hub_restart() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let mut hub = Hub::start_with(&pki, dir.path(), &[], "login_lockout = \"10m\"\n")?;
    hub.add_user("ofc", "officer", TRAINED)?;
    alpr_e2e::wrong_logins(&hub, "ofc", 5)?;
    // The restarted hub still refuses the right password, saying until
    // when: the count and the lock are in its store, not its memory.
    hub.proc.stop()?;
    hub.restart()?;
    let err = hub
        .login("ofc")
        .expect_err("the restart lifted the lock")
        .to_string();
    assert!(err.contains("locked until") && err.contains("429"), "{err}");
    Ok(())
}

#[test]
fn an_edited_access_log_entry_is_detected_by_hub_verify() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("ofc", "officer", TRAINED)?;
    hub.login("ofc")?;

    let bundle = dir.path().join("logs.bundle");
    let out = hub
        .as_user("auditor")?
        .args(["audit", "verify", "--export"])
        .arg(&bundle)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("access log: hub: AUTHENTIC"), "{text}");

    let verify = |path: &std::path::Path| -> anyhow::Result<(bool, String)> {
        let out = std::process::Command::new(alpr_e2e::bin("hub")?)
            .args(["verify", "--ca"])
            .arg(&hub.ca)
            .arg(path)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (ok, text) = verify(&bundle)?;
    assert!(ok, "{text}");
    assert!(text.contains("hub: AUTHENTIC"), "{text}");

    // Someone changes who added the officer: "user add ofc" → "user add ofd".
    let mut bytes = std::fs::read(&bundle)?;
    let needle = b"user add ofc";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .ok_or_else(|| anyhow::anyhow!("the access entry is not in the bundle"))?;
    bytes[at + needle.len() - 1] = b'd';
    let edited = dir.path().join("edited.bundle");
    std::fs::write(&edited, &bytes)?;
    let (ok, text) = verify(&edited)?;
    assert!(!ok, "an edited access entry verified:\n{text}");
    assert!(text.contains("hub: NOT AUTHENTIC"), "{text}");
    Ok(())
}

/// Access entries in a node's log (as an edge writes them) reach the audit
/// with the four statutory fields: when, what was queried, who (and their
/// agency), and why.
#[test]
fn hub_audit_access_shows_the_four_statutory_fields_from_nodes_and_hub() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-1")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("sup", "supervisor", TRAINED)?;
    hub.login("sup")?;

    let key = std::fs::read_to_string(&node.key)?;
    let mut log = LogWriter::new(SecretKey::from_pkcs8_pem(&key)?, DeviceId::new("car-1")?);
    let record = |plate: &str, case: Option<&str>| AccessRecord {
        user: "ofc-7".into(),
        agency: AGENCY.into(),
        action: AccessAction::Search,
        purpose: Some("stolen-vehicle".into()),
        case: case.map(Into::into),
        query: format!("plate={plate} mode=exact"),
        results: 1,
        outcome: AccessOutcome::Allowed,
        source: "console".into(),
    };
    let entries = vec![
        log.append_access(
            record("7ABC123", Some("2026-0042")),
            UnixMillis::now(),
            TimeSource::Ntp,
        )?,
        log.append_access(record("4XYZ999", None), UnixMillis::now(), TimeSource::Ntp)?,
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let raw = RawNode::connect(hub.addr, &node).await?;
        let Frame::Welcome(_) = raw.hello("car-1").await? else {
            anyhow::bail!("no welcome");
        };
        let answer = raw
            .exchange(
                Lane::Entries,
                &[Frame::Entries(
                    Entries::from_log(entries, None)
                        .ok_or_else(|| anyhow::anyhow!("not consecutive"))?,
                )],
            )
            .await?;
        anyhow::ensure!(
            matches!(&answer[0], Frame::Ack(r) if r.receipt.next_seq == 2),
            "not acknowledged: {answer:?}"
        );
        raw.close().await;
        anyhow::Ok(())
    })?;

    let out = hub.run_as(
        "auditor",
        &["audit", "access", "--json", "--plate", "7abc123"],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = audit["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{audit:#}");
    let r = &rows[0];
    assert_eq!(r["node"], "car-1");
    assert!(r["time"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(r["query"], "plate=7ABC123 mode=exact");
    assert_eq!(r["user"], "ofc-7");
    assert_eq!(r["agency"], AGENCY);
    assert_eq!(r["purpose"], "stolen-vehicle");
    assert_eq!(r["case"], "2026-0042");

    // The search without a case number is summarised.
    let out = hub.run_as("sup", &["audit", "access", "--json"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let without: Vec<&str> = audit["searches_without_case"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["query"].as_str())
        .collect();
    assert_eq!(without, ["plate=4XYZ999 mode=exact"], "{audit:#}");
    // Running the audit is itself in the access log.
    let rows = access_rows(&hub, &["--user", "sup"])?;
    assert!(
        rows.iter().any(|r| r["action"] == "audit-query"),
        "{rows:#?}"
    );

    let out = hub.run_as("auditor", &["audit", "access"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("searches without a case number: 1"), "{text}");

    // A supervisor of another agency sees none of it.
    hub.add_user_in("sup-other", "supervisor", TRAINED, "CA9999999")?;
    hub.login("sup-other")?;
    let out = hub.run_as("sup-other", &["audit", "access", "--json"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let agencies: Vec<&str> = audit["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["agency"].as_str())
        .collect();
    assert!(!agencies.is_empty(), "{audit:#}");
    assert!(agencies.iter().all(|a| *a == "CA9999999"), "{audit:#}");
    Ok(())
}

/// The API answers only with a session, and within its limits; its health
/// answer needs no login and carries no read data.
#[test]
fn the_api_needs_a_session_and_bounds_what_it_reads() -> anyhow::Result<()> {
    use alpr_hub::api::client::{ApiClient, ApiFailure};
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let ca = std::fs::read(&hub.ca)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let status = |r: anyhow::Result<serde_json::Value>| {
            r.err()
                .and_then(|e| e.downcast::<ApiFailure>().ok())
                .map(|f| (f.status, f.message))
        };
        let mut c = ApiClient::connect(&hub.api, &ca).await?;
        let (code, message) =
            status(c.get("/api/v1/nodes").await).ok_or_else(|| anyhow::anyhow!("answered"))?;
        assert_eq!(code, 401, "{message}");
        assert!(message.contains("log in"), "{message}");
        c.token = Some("0".repeat(64));
        let (code, _) =
            status(c.get("/api/v1/nodes").await).ok_or_else(|| anyhow::anyhow!("answered"))?;
        assert_eq!(code, 401);

        let health: serde_json::Value = c.get("/api/v1/health").await?;
        assert_eq!(health, serde_json::json!({"problems": []}));

        let mut c = ApiClient::connect(&hub.api, &ca).await?;
        let huge = serde_json::json!({"username": "auditor", "password": "x".repeat(2 << 20)});
        let (code, _) = status(c.post("/api/v1/login", &huge).await)
            .ok_or_else(|| anyhow::anyhow!("a 2 MiB body was read"))?;
        assert_eq!(code, 413);
        anyhow::Ok(())
    })?;
    // A client that does not trust the deployment CA gets no answer.
    let other = Pki::new()?;
    let err = rt
        .block_on(ApiClient::connect(
            &hub.api,
            &std::fs::read(other.ca_cert())?,
        ))
        .expect_err("a client of another CA connected");
    assert!(format!("{err:#}").contains("TLS"), "{err:#}");
    Ok(())
}

#[test]
fn hub_logout_ends_the_session_at_the_hub_not_only_on_this_machine() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    hub.add_user("ofc", "officer", TRAINED)?;
    hub.login("ofc")?;
    let (ok, out) = hub.run_text("ofc", &["policy", "show"])?;
    assert!(ok, "a fresh session is refused: {out}");

    // A copy of the session file, as a thief of the laptop would keep.
    let file = hub.sessions.join("ofc.json");
    let kept = std::fs::read(&file)?;
    let (ok, out) = hub.run_text("ofc", &["logout"])?;
    assert!(ok && out.contains("logged out"), "{out}");
    assert!(!out.contains("did not end the session"), "{out}");
    assert!(!file.exists(), "the session file is still there");

    // The hub itself refuses the token now.
    std::fs::write(&file, kept)?;
    let (ok, out) = hub.run_text("ofc", &["policy", "show"])?;
    assert!(
        !ok,
        "the session still works at the hub after logout: {out}"
    );
    assert!(out.contains("no session or session expired"), "{out}");
    let rows = access_rows(&hub, &["--user", "ofc"])?;
    assert!(
        rows.iter().any(|r| r["action"] == "logout"),
        "the logout is not in the access log: {rows:#?}"
    );
    Ok(())
}
