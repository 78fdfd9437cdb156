//! `hub audit verify`: an auditor re-verifies every node log the running hub
//! holds, from the CA certificate alone, and gets a one-line verdict; with
//! no hub running, the command says so instead of hanging.

use std::time::Duration;

use alpr_e2e::{Edge, EdgeOptions, Hub, Pki};

const LIMIT: Duration = Duration::from_secs(180);

fn audit(hub: &Hub, json: bool) -> anyhow::Result<std::process::Output> {
    let mut cmd = hub.as_user("auditor")?;
    cmd.args(["audit", "verify"]);
    if json {
        cmd.arg("--json");
    }
    Ok(cmd.output()?)
}

#[test]
fn audit_verifies_every_node_log_the_hub_holds() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let pole = pki.node("pole-a")?;
    let patrol = pki.node("patrol-a")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edges = Vec::new();
    for (node, n) in [(&pole, 300u64), (&patrol, 120)] {
        let opts = EdgeOptions {
            generate: n,
            ..EdgeOptions::default()
        };
        edges.push((Edge::start(node, hub.addr, dir.path(), &opts)?, n));
    }
    for (edge, n) in &edges {
        edge.wait_synced(*n, LIMIT)?;
    }

    let out = audit(&hub, false)?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "audit failed:\n{text}");
    assert!(
        text.contains("pole-a: AUTHENTIC — 300 entries, 300 reads"),
        "{text}"
    );
    assert!(
        text.contains("patrol-a: AUTHENTIC — 120 entries, 120 reads"),
        "{text}"
    );
    assert_eq!(
        text.lines().last(),
        Some("all 2 node logs authentic: 420 reads"),
        "{text}"
    );

    // The same for scripts, with each node's signed checkpoint checked.
    let out = audit(&hub, true)?;
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["authentic"], true);
    assert_eq!(report["reads"].as_u64(), Some(420));
    for node in report["nodes"].as_array().into_iter().flatten() {
        let size = node["size"].as_u64();
        let checkpoints: Vec<u64> = node["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        assert_eq!(
            checkpoints.last().copied(),
            size,
            "the node's last checkpoint is not at its log's end: {node}"
        );
    }

    // With the hub stopped, the command says why it cannot audit.
    for (edge, _) in &mut edges {
        edge.proc.stop()?;
    }
    hub.proc.stop()?;
    let out = audit(&hub, false)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an audit without a hub succeeded");
    assert!(
        err.contains("is `hub serve` running"),
        "unclear error: {err}"
    );
    Ok(())
}
