//! An unreadable entry does not silence a node (issue 8.8): an entry of the
//! edge's own store is damaged while the edge is stopped; on restart the
//! edge signs a loss record for it, later reads still reach the hub, the
//! loss is shown on `edge status` as the node's own fault (not the hub's),
//! and the verifier reports it as a loss, not as a forgery or a gap.

use std::time::Duration;

use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::{verify_log, EntryKind};

const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn a_damaged_entry_in_the_edge_store_is_signed_as_lost_and_later_reads_flow() -> anyhow::Result<()>
{
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-damaged")?;
    let mut hub = Hub::start(&pki, dir.path(), &[])?;
    // The hub is down while the node reads its first 30 plates.
    hub.proc.stop()?;
    let opts = |generate| EdgeOptions {
        generate,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts(30))?;
    wait_for(LIMIT, "30 reads stored", || {
        (edge.status()?["log_size"].as_u64() == Some(30)).then_some(())
    })?;
    edge.proc.stop()?;
    let before = edge.stored_entries()?;

    // Entry 12 is damaged on disk.
    alpr_edge::store::write_raw_entry(&edge.data.join("edge.redb"), 12, b"\xff garbage \x00")?;

    hub.restart()?;
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &opts(50))?;
    let st = wait_for(LIMIT, "everything readable to reach the hub", || {
        let s = edge.status()?;
        let n = s["log_size"].as_u64()?;
        (n >= 50 && s["acked"].as_u64() == Some(n)).then_some(s)
    })?;
    assert_eq!(st["lost_entries"].as_u64(), Some(1), "{st}");
    assert!(
        st["own_loss"]
            .as_str()
            .is_some_and(|l| l.contains("unreadable in its own store")),
        "{st}"
    );
    assert!(st["identity_conflict"].is_null(), "{st}");
    let log = edge.proc.log_text();
    assert!(
        log.contains("this node's fault, not the hub's"),
        "the edge log must say whose fault it is"
    );
    assert!(
        !log.contains("the hub broke the protocol"),
        "the edge blamed the hub:\n{}",
        edge.proc.log_tail(30)
    );

    // The auditor sees one loss, signed by the node, and an authentic log.
    let out = hub.run_as("auditor", &["audit", "verify"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("entry 12 lost by the node: unreadable in the node's store"),
        "{text}"
    );

    edge.proc.stop()?;
    hub.proc.stop()?;
    let at_edge = edge.stored_entries()?;
    let at_hub = hub.stored_entries("pole-damaged")?;
    assert_eq!(at_hub, at_edge, "the hub holds every readable entry, once");
    // Nothing else was lost: every entry but 12 is the one first written.
    for e in &before {
        if e.seq() != 12 {
            assert!(at_hub.contains(e), "entry {} lost", e.seq());
        }
    }
    assert!(at_hub.iter().all(|e| e.seq() != 12));
    let loss = at_hub
        .iter()
        .find(|e| matches!(e.header.kind, EntryKind::Loss { .. }))
        .ok_or_else(|| anyhow::anyhow!("no loss record at the hub"))?;
    assert!(loss.seq() >= 30);
    let report = verify_log(
        &pki.device_cert(&node)?,
        &at_hub,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.losses.len(), 1);
    assert_eq!((report.losses[0].first, report.losses[0].last), (12, 12));
    Ok(())
}
