//! What the hub refuses, and that it says so: a forged read, a replayed
//! read, a revoked node, a node of another CA, and a malformed frame — each
//! refused, logged with its reason, counted, while the hub keeps serving.

use std::time::Duration;

use alpr_e2e::raw::RawNode;
use alpr_e2e::{wait_for, Edge, EdgeOptions, Hub, Pki};
use alpr_shared::crypto::SecretKey;
use alpr_shared::log::LogWriter;
use alpr_shared::types::{DeviceId, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, Frame, Lane, RefusalCode};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn forged_replayed_revoked_foreign_and_malformed_are_refused_and_logged() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let good = pki.node("good-1")?;
    let revoked = pki.node("stolen-1")?;
    let foreign = pki.foreign_node("other-1")?;
    let mut hub = Hub::start(&pki, dir.path(), std::slice::from_ref(&revoked.serial))?;

    // A genuine node uploads 50 reads.
    let opts = EdgeOptions {
        generate: 50,
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&good, hub.addr, dir.path(), &opts)?;
    edge.wait_synced(50, LIMIT)?;
    edge.proc.stop()?;
    let log = edge.stored_entries()?;
    assert_eq!(log.len(), 50);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let raw = RawNode::connect(hub.addr, &good).await?;
        let Frame::Welcome(w) = raw.hello("good-1").await? else {
            anyhow::bail!("no welcome");
        };
        assert_eq!(w.receipt.receipt.next_seq, 50);

        // Replayed reads: harmless, acknowledged at the same point, logged.
        let replay = Frame::Entries(
            Entries::from_log(log[10..20].to_vec(), None)
                .ok_or_else(|| anyhow::anyhow!("not consecutive"))?,
        );
        let answer = raw.exchange(Lane::Entries, &[replay]).await?;
        assert!(
            matches!(&answer[0], Frame::Ack(r) if r.receipt.next_seq == 50),
            "a replay must not move the log: {answer:?}"
        );

        // A forged read: the next entry, signed by someone without the key.
        let last = log.last().ok_or_else(|| anyhow::anyhow!("empty log"))?;
        let mut forger = LogWriter::resume(
            SecretKey::generate(),
            DeviceId::new("good-1")?,
            50,
            last.hash(),
        );
        let forged = forger.append_read(
            log[0]
                .read()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no content"))?,
            UnixMillis::now(),
            TimeSource::Gps,
        )?;
        let answer = raw
            .exchange(
                Lane::Entries,
                &[Frame::Entries(
                    Entries::from_log(vec![forged], None)
                        .ok_or_else(|| anyhow::anyhow!("one entry"))?,
                )],
            )
            .await?;
        assert!(
            matches!(&answer[0], Frame::Refused(r) if r.code == RefusalCode::BadSignature),
            "forged read not refused: {answer:?}"
        );

        // An edited read: a genuine entry whose plate was changed.
        let mut edited = log[5].clone();
        if let Some(b) = edited.body.as_mut() {
            b.content.plate = "EDIT1234".into();
        }
        let answer = raw
            .exchange(
                Lane::Entries,
                &[Frame::Entries(
                    Entries::from_log(vec![edited], None)
                        .ok_or_else(|| anyhow::anyhow!("one entry"))?,
                )],
            )
            .await?;
        assert!(
            matches!(&answer[0], Frame::Refused(r) if r.code == RefusalCode::Edited),
            "edited read not refused: {answer:?}"
        );

        // A malformed frame (a length over any limit) closes that stream only.
        let mut garbage = u32::MAX.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xAB; 64]);
        assert!(
            raw.send_raw(Lane::Entries, &garbage).await?,
            "the malformed stream was not closed"
        );
        let again = raw.hello("good-1").await?;
        assert!(
            matches!(again, Frame::Welcome(_)),
            "the connection should survive: {again:?}"
        );
        raw.close().await;
        anyhow::Ok(())
    })?;

    // A revoked node is refused; both sides say why.
    let mut stolen = Edge::start(&revoked, hub.addr, dir.path(), &EdgeOptions::default())?;
    wait_for(LIMIT, "the revoked node to be refused", || {
        let s = stolen.status()?;
        s["link"]
            .as_str()?
            .starts_with("refused: revoked")
            .then_some(())
    })?;
    // A node of another CA never gets past the handshake: its first
    // stream fails, and the hub logs why.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        match RawNode::connect(hub.addr, &foreign).await {
            Ok(raw) => raw.hello("other-1").await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    assert!(outcome.is_err(), "a node of another CA got an answer");
    wait_for(LIMIT, "the foreign node's refusal in the hub log", || {
        hub.proc
            .log_text()
            .contains("TLS handshake failed")
            .then_some(())
    })?;

    // The log line comes first; the stored record follows with the
    // writer's next commit.
    // Nodes' refusals and unauthenticated sources' are listed apart.
    let codes = |nodes: &serde_json::Value| -> Vec<String> {
        ["recent_refusals", "unauthenticated_refusals"]
            .iter()
            .filter_map(|list| nodes[list].as_array())
            .flatten()
            .filter_map(|r| r["code"].as_str().map(String::from))
            .collect()
    };
    let nodes = wait_for(LIMIT, "the foreign node's refusal on record", || {
        let nodes = hub.nodes().ok()?;
        codes(&nodes)
            .iter()
            .any(|c| c == "unknown-node")
            .then_some(nodes)
    })?;
    let codes = codes(&nodes);
    for code in [
        "bad-signature",
        "edited",
        "malformed",
        "revoked",
        "unknown-node",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "no {code} refusal in {codes:?}"
        );
    }
    assert!(nodes["refused_handshakes"].as_u64() >= Some(1));
    let good_row = nodes["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "good-1"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("good-1 missing"))?;
    assert_eq!(
        good_row["acked"].as_u64(),
        Some(50),
        "nothing forged was stored"
    );
    assert!(
        good_row["duplicates"].as_u64() >= Some(10),
        "the replay was not counted"
    );
    assert!(good_row["refusals"].as_u64() >= Some(3));

    let log = hub.proc.log_text();
    assert!(
        log.contains("replayed entries ignored"),
        "replay not logged"
    );
    assert!(log.contains("code=bad-signature"), "forgery not logged");
    assert!(log.contains("code=revoked"), "revocation not logged");
    assert!(log.contains("stolen-1"), "the revoked node is not named");

    stolen.proc.stop()?;
    hub.proc.stop()?;
    Ok(())
}
