//! The operator tools that open the hub's store without a login — `hub
//! store check` and `hub migrate`, run on the hub's machine — leave every
//! run in the hub's own access log, in its signed chain, before they read
//! anything (issue 22.12).

use std::time::Duration;

use alpr_e2e::{bin, output_text, Edge, EdgeOptions, Hub, Pki};

const LIMIT: Duration = Duration::from_secs(120);

/// `hub ARGS --config` the hub's configuration, as the machine's account
/// `ops-kim`.
fn tool(hub: &Hub, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(std::process::Command::new(bin("hub")?)
        .args(args)
        .arg("--config")
        .arg(&hub.config)
        .env("USER", "ops-kim")
        .output()?)
}

#[test]
fn store_check_and_migrate_runs_are_in_the_hub_access_log_and_its_chain_verifies(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 20,
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&pki.node("pole-t")?, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(20, LIMIT)?;

    // On the hub's machine, with the hub stopped (redb holds its file).
    hub.proc.stop()?;
    let out = tool(&hub, &["store", "check", "--json"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let out = tool(&hub, &["migrate"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    hub.restart()?;

    let out = hub.run_as(
        "auditor",
        &["audit", "access", "--json", "--user", "ops-kim"],
    )?;
    assert!(out.status.success(), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let purposes: Vec<&str> = rows.iter().filter_map(|r| r["purpose"].as_str()).collect();
    assert_eq!(purposes, ["store-check", "store-migrate"], "{rows:#?}");
    for r in &rows {
        assert_eq!(r["action"], "store-tool", "{r}");
        assert!(
            r["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("hub machine")),
            "{r}"
        );
    }
    // The check counted what it was about to read: 20 reads and the
    // hub's own entries before it.
    assert!(
        rows[0]["results"].as_u64().is_some_and(|n| n > 20),
        "{}",
        rows[0]
    );

    // Sealed into the hub's chain like its other accesses: it verifies.
    let out = hub.run_as("auditor", &["audit", "verify", "--json"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["authentic"], true, "{report}");
    let hub_log = &report["hub_access_log"];
    assert_eq!(
        hub_log["faults"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    Ok(())
}
