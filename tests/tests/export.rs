//! Evidence export through the real API and real processes: an export to a
//! federal agency is refused and logged; a case exported to an in-state
//! public agency verifies offline from the CA certificate alone; a changed
//! byte is reported; the HTML report holds each read's plate and a photo
//! per image, and nothing from outside the file.

use std::time::Duration;

use alpr_e2e::{bin, wait_for, Edge, EdgeOptions, Hub, Pki, TRAINED};

const LIMIT: Duration = Duration::from_secs(120);
const CASE: &str = "26-0100";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn exports(hub: &Hub) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = hub.run_as("auditor", &["audit", "exports", "--json"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(serde_json::from_slice::<Vec<serde_json::Value>>(
        &out.stdout,
    )?)
}

#[test]
fn a_case_exported_to_an_in_state_agency_verifies_offline_and_a_federal_one_is_refused(
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
            generate: 6,
            images: true,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(6, LIMIT)?;

    let agencies = dir.path().join("agencies.toml");
    std::fs::write(
        &agencies,
        "[[agencies]]\nori = \"CA0020000\"\nname = \"County District Attorney\"\nkind = \"in-state-public\"\n\n\
         [[agencies]]\nori = \"DCFBI0000\"\nname = \"FBI\"\nkind = \"federal\"\n",
    )?;
    let out = hub
        .as_user("admin")?
        .args(["policy", "set"])
        .arg(&agencies)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    hub.add_user("sup1", "supervisor", TRAINED)?;
    hub.login("sup1")?;
    hub.add_user("ofc1", "officer", TRAINED)?;
    hub.login("ofc1")?;

    // The supervisor holds the case: the reads of two plates.
    let out = hub.run_as(
        "sup1",
        &[
            "hold",
            "add",
            "--case",
            CASE,
            "--reason",
            "robbery <at> the \"bank\"",
            "--plate",
            "GEN00002",
            "--plate",
            "GEN00004",
        ],
    )?;
    assert!(out.status.success(), "hub hold add: {}", text(&out));
    let bundle = dir.path().join("case.evidence");
    let bundle_s = bundle.display().to_string();
    let export = |to: &str| {
        hub.run_as(
            "sup1",
            &[
                "export",
                "--case",
                CASE,
                "--to",
                to,
                "--out",
                &bundle_s,
                "--purpose",
                "robbery",
            ],
        )
    };

    // Federal: refused with the statute, nothing written, and logged.
    let out = export("DCFBI0000")?;
    assert!(!out.status.success(), "a federal export was allowed");
    assert!(text(&out).contains("1798.90.55"), "{}", text(&out));
    assert!(!bundle.exists(), "a refused export left a file");
    // An officer may not export at all (supervisors only).
    let out = hub.run_as(
        "ofc1",
        &[
            "export",
            "--case",
            CASE,
            "--to",
            "CA0020000",
            "--out",
            &bundle_s,
        ],
    )?;
    assert!(!out.status.success(), "an officer exported");
    assert!(
        text(&out).contains("may not export evidence"),
        "{}",
        text(&out)
    );
    assert!(!bundle.exists(), "a refused export left a file");
    let log = exports(&hub)?;
    assert!(
        log.iter().any(|r| r["recipient"] == "DCFBI0000"
            && r["case"] == CASE
            && r["outcome"].as_str().is_some_and(|o| o.contains("refused"))),
        "{log:?}"
    );

    // In-state public: written once the photos and checkpoint are at the hub.
    let out = wait_for(LIMIT, "an export with photos at the hub", || {
        let out = export("CA0020000").ok()?;
        let t = text(&out);
        if !out.status.success() && (t.contains("not at the hub yet") || t.contains("checkpoint")) {
            return None;
        }
        Some(out)
    })?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("evidence AUTHENTIC"), "{}", text(&out));

    // Offline, from the CA certificate alone.
    let ca = pki.ca_cert();
    let verify = |path: &std::path::Path| {
        std::process::Command::new(bin("hub").expect("hub"))
            .arg("verify")
            .arg("--ca")
            .arg(&ca)
            .arg(path)
            .output()
    };
    let out = verify(&bundle)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("evidence AUTHENTIC"), "{}", text(&out));
    assert!(
        text(&out).contains("2 reads (2 verified)"),
        "{}",
        text(&out)
    );

    // The report: each read's plate, a photo per image, nothing outside.
    let html = std::fs::read_to_string(dir.path().join("case.evidence.html"))?;
    for plate in ["GEN00002", "GEN00004"] {
        assert!(html.contains(&format!("Plate {plate}")), "{plate} missing");
    }
    assert!(
        !html.contains("GEN00003"),
        "a read outside the case is in the report"
    );
    assert_eq!(html.matches("<img ").count(), 4);
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), 4);
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("robbery &lt;at&gt; the &quot;bank&quot;"));

    // A flipped byte anywhere is reported.
    let mut bytes = std::fs::read(&bundle)?;
    let tampered = dir.path().join("tampered.evidence");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&tampered, &bytes)?;
    let out = verify(&tampered)?;
    assert!(!out.status.success(), "a changed byte verified");
    assert!(text(&out).contains("NOT AUTHENTIC"), "{}", text(&out));

    // The export is in the log with its recipient and count.
    let log = exports(&hub)?;
    assert!(
        log.iter().any(|r| r["recipient"] == "CA0020000"
            && r["case"] == CASE
            && r["reads"] == 2
            && r["outcome"] == "allowed"),
        "{log:?}"
    );
    Ok(())
}

/// An export refused because a photo is not at the hub yet (the car is on
/// a metered link: its photos wait for Wi-Fi) is in the access log and in
/// `hub audit exports`, with its reason, like every other attempt.
#[test]
fn an_export_refused_for_a_photo_not_yet_at_the_hub_is_in_the_audit() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let edge = Edge::start(
        &pki.node("car-8")?,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 4,
            images: true,
            metered: true,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(4, LIMIT)?;
    hub.hold_case_for_export(dir.path(), CASE, "GEN00002")?;

    let bundle = dir.path().join("case.evidence");
    let out = hub
        .as_user("sup1")?
        .args(["export", "--case", CASE, "--to", "CA0020000", "--out"])
        .arg(&bundle)
        .output()?;
    assert!(!out.status.success(), "exported without its photos");
    assert!(text(&out).contains("not at the hub yet"), "{}", text(&out));
    assert!(!bundle.exists(), "a refused export left a file");

    let log = exports(&hub)?;
    assert!(
        log.iter().any(|r| r["case"] == CASE
            && r["recipient"] == "CA0020000"
            && r["user"] == "sup1"
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused") && o.contains("not at the hub yet"))),
        "the refused export is not in hub audit exports: {log:#?}"
    );
    Ok(())
}
