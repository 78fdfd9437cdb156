//! Retention end to end through the people's API: an administrator sees
//! what is due and runs it; an auditor cannot run it but reads the purges
//! the hub signed. Reads just synced are not due, so nothing is purged and
//! every log still verifies. (Purging a year and a day later, under and
//! after a hold, is tested with a simulated clock in `alpr_hub::retention`.)
//! A node enrolled long ago uploads reads a year old while the hub purges
//! them every second, and every audit meanwhile is authentic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alpr_e2e::raw::RawNode;
use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, NodeFiles, Pki};
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::types::{DeviceId, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, Frame, Lane};

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

const DAY_MS: u64 = 24 * 3600 * 1000;
/// Reads uploaded per batch.
const BATCH: u64 = 200;

/// Upload reads captured 400 days ago (past the hub's retention) as
/// `node`, batch after batch, until `stop`; how many were acknowledged.
fn upload_year_old_reads(
    hub: std::net::SocketAddr,
    node: &NodeFiles,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let key = SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&node.key)?)?;
    let device = DeviceId::new(node.name.as_str())?;
    let mut log = LogWriter::new(key, device);
    let start = UnixMillis::now().0 - 400 * DAY_MS;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let raw = RawNode::connect(hub, node).await?;
        let Frame::Welcome(_) = raw.hello(&node.name).await? else {
            anyhow::bail!("no welcome");
        };
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<_> = (sent..sent + BATCH)
                .map(|i| {
                    let plate = format!("OLD{i:05}");
                    log.append_read(
                        ReadContent {
                            location: Location::Site {
                                site_id: "main-st".into(),
                            },
                            camera: "cam-1".into(),
                            char_confidence: vec![9_000; plate.len()],
                            plate,
                            confidence: 9_000,
                            issuer: Default::default(),
                            detector_model: "det".into(),
                            ocr_model: "ocr".into(),
                            crop_hash: sha256(format!("crop {i}").as_bytes()),
                            overview_hash: sha256(format!("overview {i}").as_bytes()),
                        },
                        UnixMillis(start + i * 1000),
                        TimeSource::Ntp,
                    )
                })
                .collect::<Result<_, _>>()?;
            let entries =
                Entries::from_log(batch, None).ok_or_else(|| anyhow::anyhow!("not consecutive"))?;
            let answer = raw
                .exchange(Lane::Entries, &[Frame::Entries(entries)])
                .await?;
            sent += BATCH;
            anyhow::ensure!(
                matches!(&answer[0], Frame::Ack(r) if r.receipt.next_seq == sent),
                "not acknowledged: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        raw.close().await;
        Ok(sent)
    })
}

/// Purge records the hub signed so far (`hub audit retention`).
fn purge_records(hub: &Hub) -> anyhow::Result<usize> {
    let audit = json(&hub.run_as("auditor", &["audit", "retention", "--json"])?)?;
    Ok(audit["purges"].as_array().map_or(0, Vec::len))
}

/// Several audits while reads a year old keep arriving and retention keeps
/// purging them (every second): each is authentic. The hub reads its own
/// log, with the purge records, after the nodes' logs; read before them, a
/// purge in between would leave reads purged without a record.
#[test]
fn audits_while_retention_purges_are_authentic_every_time() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node_enrolled_days_ago("pole-old", 800)?;
    let hub = Hub::start_with(&pki, dir.path(), &[], "retention_interval = \"1s\"\n")?;
    let stop = Arc::new(AtomicBool::new(false));
    let uploader = {
        let (addr, node, stop) = (hub.addr, node.clone(), stop.clone());
        std::thread::spawn(move || upload_year_old_reads(addr, &node, &stop))
    };
    let running = || !uploader.is_finished();
    wait_for(LIMIT * 2, "8000 reads at the hub and a purge", || {
        let acked = hub.nodes().ok()?["nodes"][0]["acked"].as_u64()?;
        (acked > 8000 && purge_records(&hub).ok()? > 0).then_some(())
    })?;
    let mut purged = Vec::new();
    for round in 0..4 {
        anyhow::ensure!(running(), "the uploader stopped");
        let before = purge_records(&hub)?;
        let out = hub.run_as("auditor", &["audit", "verify", "--json"])?;
        let after = purge_records(&hub)?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow::anyhow!("round {round}: {e}: {}", alpr_e2e::output_text(&out)))?;
        assert!(
            out.status.success() && report["authentic"] == true,
            "round {round}: an audit during retention is not authentic:\n{report:#}"
        );
        assert!(
            after > before,
            "round {round}: no purge was signed while the audit ran ({before} records)"
        );
        purged.push(report["nodes"][0]["purged"].as_u64().unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = uploader
        .join()
        .map_err(|_| anyhow::anyhow!("the uploader panicked"))??;
    // Every audit met purged reads, more each time than the first.
    assert!(
        purged.iter().all(|&p| p > 0) && purged[3] > purged[0] && sent >= purged[3],
        "purged {purged:?} of {sent}"
    );
    Ok(())
}
