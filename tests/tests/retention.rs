//! Retention end to end through the people's API: an administrator sees
//! what is due and runs it; an auditor cannot run it but reads the purges
//! the hub signed. Reads just synced are not due, so nothing is purged and
//! every log still verifies. (Purging a year and a day later, under and
//! after a hold, is tested with a simulated clock in `alpr_hub::retention`.)

use std::time::Duration;

use alpr_e2e::{Edge, EdgeOptions, Hub, Pki};

const LIMIT: Duration = Duration::from_secs(120);

fn json(out: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn retention_status_run_and_audit_through_the_api() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let pole = pki.node("pole-a")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let opts = EdgeOptions {
        generate: 40,
        ..EdgeOptions::default()
    };
    let edge = Edge::start(&pole, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(40, LIMIT)?;
    // The edge purges nothing while it has no policy or its legal holds
    // are not fresh (on this build no hold state is refreshed from the hub
    // yet), and says so.
    alpr_e2e::wait_for(LIMIT, "edge status to report retention", || {
        edge.status()
            .and_then(|s| s["retention"].as_str().map(str::to_owned))
            .filter(|r| r.contains("retention paused"))
    })?;

    let status = json(&hub.run_as("admin", &["retention", "status", "--json"])?)?;
    assert_eq!(status["due"], 0, "{status}");
    assert_eq!(status["retention_days"], 365, "{status}");

    // An auditor may not purge.
    let refused = hub.run_as("auditor", &["retention", "run"])?;
    assert!(!refused.status.success());

    let run = json(&hub.run_as("admin", &["retention", "run", "--json"])?)?;
    assert_eq!(run["purged"], 0, "{run}");

    let audit = json(&hub.run_as("auditor", &["audit", "retention", "--json"])?)?;
    assert_eq!(audit["purges"].as_array().map(Vec::len), Some(0), "{audit}");
    assert_eq!(audit["overdue"], 0, "{audit}");

    let verify = hub.run_as("auditor", &["audit", "verify"])?;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    Ok(())
}
