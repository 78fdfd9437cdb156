//! A node's certificates over its life, at the running hub: a renewal (new
//! key, new serial) carries on the same log and the hub keeps both
//! certificates; a certificate that only says hello replaces nothing; a
//! revocation applied to the running hub closes the node's connection and
//! refuses what it signs afterwards.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use alpr_e2e::raw::RawNode;
use alpr_e2e::{bin, wait_for, Edge, EdgeOptions, Hub, NodeFiles, Pki};
use alpr_shared::wire::Frame;

const LIMIT: Duration = Duration::from_secs(120);

/// The node's row of `hub nodes --json`.
fn node_row(hub: &Hub, name: &str) -> anyhow::Result<serde_json::Value> {
    let report = hub.nodes()?;
    report["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == name).cloned())
        .ok_or_else(|| anyhow::anyhow!("no node {name} in {report}"))
}

/// (serial, effective_from) of each certificate the hub keeps for the node.
fn certificates(hub: &Hub, name: &str) -> anyhow::Result<Vec<(String, Option<u64>)>> {
    let row = node_row(hub, name)?;
    Ok(row["certificates"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["serial"].as_str().unwrap_or_default().to_owned(),
                        c["effective_from"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `hub audit verify --json --export FILE` of the running hub.
fn audit(hub: &Hub, export: &Path) -> anyhow::Result<(Output, serde_json::Value)> {
    let out = hub
        .as_user("auditor")?
        .args(["audit", "verify", "--json"])
        .arg("--export")
        .arg(export)
        .output()?;
    let report = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((out, report))
}

/// `hub verify --ca ca.crt BUNDLE`, offline.
fn verify_offline(pki: &Pki, bundle: &Path) -> anyhow::Result<(Output, String)> {
    let out = Command::new(bin("hub")?)
        .args(["verify", "--ca"])
        .arg(pki.ca_cert())
        .arg(bundle)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out, text))
}

/// Copy a node's files aside (enrolling again overwrites them).
fn keep(node: &NodeFiles, dir: &std::path::Path) -> anyhow::Result<NodeFiles> {
    std::fs::create_dir_all(dir)?;
    for (from, to) in [
        (&node.cert, "node.crt"),
        (&node.key, "node.key"),
        (&node.ca, "ca.crt"),
    ] {
        std::fs::copy(from, dir.join(to))?;
    }
    Ok(NodeFiles {
        name: node.name.clone(),
        cert: dir.join("node.crt"),
        key: dir.join("node.key"),
        ca: dir.join("ca.crt"),
        serial: node.serial.clone(),
    })
}

#[test]
fn a_re_enrolled_node_carries_on_and_the_hub_keeps_both_certificates() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let first = pki.node("car-21")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edge = Edge::start(
        &first,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 40,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(40, LIMIT)?;
    edge.proc.stop()?;

    // Renewal: a new key and serial for the same name; the node restarts.
    let second = pki.node("car-21")?;
    assert_ne!(first.serial, second.serial);
    let mut edge = Edge::start(
        &second,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 90,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(90, LIMIT)?;
    edge.proc.stop()?;

    // The hub holds both certificates: the first from the start, the
    // second from the first entry it signed.
    let certs = certificates(&hub, "car-21")?;
    assert_eq!(
        certs,
        vec![(first.serial.clone(), Some(0)), (second.serial, Some(40))],
        "{certs:?}"
    );
    assert_eq!(node_row(&hub, "car-21")?["acked"].as_u64(), Some(90));

    // The auditor sees one authentic history signed by two keys, on the
    // running hub and offline from the exported bundle.
    let bundle = dir.path().join("renewed.bundle");
    let (out, report) = audit(&hub, &bundle)?;
    assert!(out.status.success(), "audit: {report}");
    assert_eq!(report["authentic"], true, "{report}");
    assert_eq!(report["reads"].as_u64(), Some(90), "{report}");
    let (out, text) = verify_offline(&pki, &bundle)?;
    assert!(out.status.success(), "hub verify: {text}");
    assert!(
        text.contains("AUTHENTIC") && !text.contains("NOT AUTHENTIC"),
        "{text}"
    );
    Ok(())
}

#[test]
fn entries_signed_after_a_back_dated_revocation_are_reported_by_both_audits() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-24")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edge = Edge::start(
        &node,
        hub.addr,
        dir.path(),
        &EdgeOptions {
            generate: 30,
            ..EdgeOptions::default()
        },
    )?;
    edge.wait_synced(30, LIMIT)?;
    edge.proc.stop()?;
    // What the hub holds is the node's log (checked by the sync tests).
    let stored = edge.stored_entries()?;
    assert_eq!(stored.len(), 30);
    // The key is found to have been stolen before the last ten reads.
    let at = stored[20].header.captured_at;
    let out = hub
        .as_user("admin")?
        .args(["revoke", &node.serial, "--reason", "key stolen", "--at"])
        .arg(at.to_string())
        .output()?;
    assert!(
        out.status.success(),
        "hub revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bundle = dir.path().join("revoked.bundle");
    let (out, report) = audit(&hub, &bundle)?;
    assert!(!out.status.success(), "the audit must fail: {report}");
    let faults = report["nodes"][0]["faults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let after: Vec<u64> = faults
        .iter()
        .filter(|f| f["fault"] == "signed_after_revocation")
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    let expected: Vec<u64> = stored
        .iter()
        .filter(|e| e.header.captured_at >= at)
        .map(|e| e.seq())
        .collect();
    assert!(!expected.is_empty() && expected.len() < 30);
    assert_eq!(after, expected, "{report}");

    let (out, text) = verify_offline(&pki, &bundle)?;
    assert!(!out.status.success(), "hub verify must fail: {text}");
    assert_eq!(
        text.matches("after its revocation took effect").count(),
        expected.len(),
        "every entry signed after the revocation is named: {text}"
    );
    Ok(())
}

#[test]
fn a_second_certificate_that_only_says_hello_replaces_nothing() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let first = keep(&pki.node("car-22")?, &dir.path().join("first"))?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 20,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&first, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(20, LIMIT)?;
    edge.proc.stop()?;

    // Someone holding a second certificate for the name says hello only.
    let second = pki.node("car-22")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let raw = RawNode::connect(hub.addr, &second).await?;
        let answer = raw.hello("car-22").await?;
        assert!(matches!(answer, Frame::Welcome(_)), "{answer:?}");
        raw.close().await;
        anyhow::Ok(())
    })?;
    let certs = certificates(&hub, "car-22")?;
    assert_eq!(
        certs,
        vec![(first.serial.clone(), Some(0)), (second.serial, None)],
        "{certs:?}"
    );

    // The first stays in force: the node carries on with it.
    let opts = EdgeOptions {
        generate: 35,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&first, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(35, LIMIT)?;
    edge.proc.stop()?;
    let certs = certificates(&hub, "car-22")?;
    assert_eq!(certs[0], (first.serial, Some(0)));
    assert_eq!(certs[1].1, None, "the hello-only certificate stays pending");
    Ok(())
}

#[test]
fn a_revocation_on_the_running_hub_closes_the_node_and_refuses_its_new_entries(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-23")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 1_000_000,
        interval: Duration::from_millis(100),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts)?;
    wait_for(LIMIT, "some reads acknowledged", || {
        let row = node_row(&hub, "car-23").ok()?;
        (row["acked"].as_u64()? >= 5 && row["connected"] == true).then_some(())
    })?;

    let out = hub.run_as(
        "admin",
        &["revoke", &node.serial, "--reason", "stolen", "--json"],
    )?;
    assert!(
        out.status.success(),
        "hub revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["closed"], serde_json::json!(["car-23"]), "{report}");
    let effective_at = report["revocation"]["effective_at"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no time in {report}"))?;

    // The node keeps reading and tries again; the hub refuses it.
    wait_for(LIMIT, "the revoked node refused", || {
        let r = hub.nodes().ok()?;
        r["recent_refusals"]
            .as_array()?
            .iter()
            .any(|x| x["code"] == "revoked" && x["device"] == "car-23")
            .then_some(())
    })?;
    let acked = node_row(&hub, "car-23")?["acked"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no acked"))?;
    wait_for(LIMIT, "the node to read on", || {
        (edge.status()?["log_size"].as_u64()? >= acked + 10).then_some(())
    })?;
    assert_eq!(node_row(&hub, "car-23")?["acked"].as_u64(), Some(acked));
    assert_eq!(node_row(&hub, "car-23")?["connected"], false);
    edge.proc.stop()?;
    hub.proc.stop()?;
    // Nothing the hub holds was captured at or after the revocation.
    let stored = hub.stored_entries("car-23")?;
    assert_eq!(stored.len() as u64, acked);
    assert!(stored.iter().all(|e| e.header.captured_at.0 < effective_at));
    Ok(())
}
