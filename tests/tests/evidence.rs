//! Evidence as an auditor gets it: `hub audit verify` of a hub that is
//! ingesting at full speed, its signed export verified offline, and
//! `hub verify` on crafted, huge, revoked and wrong inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use alpr_e2e::{bin, Edge, EdgeOptions, Hub, NodeFiles, Pki};
use alpr_shared::cert::{pem_certificates, Revocation};
use alpr_shared::crypto::SecretKey;
use alpr_shared::log::bundle::BundleWriter;
use alpr_shared::log::LogWriter;
use alpr_shared::signer::{ExportSigning, HubKey};
use alpr_shared::types::{DeviceId, Hash32, Location, ReadContent, TimeSource, UnixMillis};

const LIMIT: Duration = Duration::from_secs(600);
/// What `hub verify` may add to its peak memory over a bundle of a few
/// reads, whatever the bundle's size: the 8 MB the README claims.
const RSS_GROWTH_BOUND_KB: u64 = 8 * 1024;

fn audit(hub: &Hub, export: Option<&Path>) -> anyhow::Result<Output> {
    let mut cmd = hub.as_user("auditor")?;
    cmd.args(["audit", "verify", "--json"]);
    if let Some(p) = export {
        cmd.arg("--export").arg(p);
    }
    Ok(cmd.output()?)
}

fn hub_verify(pki: &Pki, bundle: &Path) -> anyhow::Result<Output> {
    Ok(Command::new(bin("hub")?)
        .args(["verify", "--ca"])
        .arg(pki.ca_cert())
        .arg(bundle)
        .env("NO_COLOR", "1")
        .output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Entries the hub acknowledged to the one node of `hub`.
fn acked(hub: &Hub) -> anyhow::Result<u64> {
    hub.nodes()?["nodes"][0]["acked"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no node at the hub yet"))
}

#[test]
fn an_audit_during_full_speed_ingest_is_authentic_every_time() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("patrol-live")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    // The node reads without end while the audits run, so every one of
    // them meets a hub that is ingesting (checked below, not assumed).
    let endless = |generate| EdgeOptions {
        generate,
        interval: Duration::from_millis(1),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &endless(1_000_000_000))?;
    // Wait until the log spans more than one page of the API.
    alpr_e2e::wait_for(LIMIT, "more than 4096 entries at the hub", || {
        (acked(&hub).ok()? > 4096).then_some(())
    })?;
    for round in 0..4 {
        let before = acked(&hub)?;
        let out = audit(&hub, None)?;
        let after = acked(&hub)?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow::anyhow!("round {round}: {e}: {}", text(&out)))?;
        assert!(
            out.status.success() && report["authentic"] == true,
            "round {round}: a live hub audited as not authentic:\n{report:#}"
        );
        let size = report["nodes"][0]["size"].as_u64().unwrap_or(0);
        assert!(
            before < after,
            "round {round}: the hub ingested nothing while it was audited ({before} → {after})"
        );
        assert!(
            (before..=after).contains(&size),
            "round {round}: the audit's snapshot ({size}) is not from while it ran ({before} → {after})"
        );
    }
    // Stop reading: restarted to generate no more, the node syncs what it has.
    edge.proc.stop()?;
    let mut edge = Edge::start(&node, hub.addr, dir.path(), &endless(1))?;
    let total = alpr_e2e::wait_for(LIMIT, "the node's log synced", || {
        let s = edge.status()?;
        let size = s["log_size"].as_u64()?;
        (size > 4096 && s["acked"].as_u64() == Some(size)).then_some(size)
    })?;

    // Once synced, the export verifies offline, signed by the hub.
    let bundle = dir.path().join("live.bundle");
    let out = audit(&hub, Some(&bundle))?;
    assert!(out.status.success(), "{}", text(&out));
    let out = hub_verify(&pki, &bundle)?;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "patrol-live: AUTHENTIC — {total} entries, {total} reads"
        )),
        "{t}"
    );
    assert!(t.contains("bundle AUTHENTIC and complete"), "{t}");
    edge.proc.stop()?;
    Ok(())
}

struct Signer {
    /// The hub's export key and its certificate.
    hub_der: Vec<u8>,
    hub_key: HubKey<ExportSigning>,
    node_der: Vec<u8>,
    serial: String,
    log: LogWriter,
}

fn signer(pki: &Pki, node: &NodeFiles) -> anyhow::Result<Signer> {
    let ca = pki.ca_dir();
    Ok(Signer {
        hub_der: pem_certificates(&std::fs::read(ca.join("export.crt"))?)?.remove(0),
        hub_key: HubKey::from_pem(
            &std::fs::read(ca.join("export.key"))?,
            &std::fs::read(ca.join("export.crt"))?,
            &alpr_shared::cert::TrustAnchor::from_pem(&std::fs::read(ca.join("ca.crt"))?)?,
        )?,
        node_der: pem_certificates(&std::fs::read(&node.cert)?)?.remove(0),
        serial: node.serial.clone(),
        log: LogWriter::new(
            SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&node.key)?)?,
            DeviceId::new(&node.name)?,
        ),
    })
}

fn read_at(log: &mut LogWriter, i: u64, at: UnixMillis) -> alpr_shared::log::SignedEntry {
    let plate = format!("7ABC{:03}", i % 1000);
    log.append_read(
        ReadContent {
            location: Location::Site {
                site_id: "main-st".into(),
            },
            camera: "cam0".into(),
            char_confidence: vec![9_000; plate.len()],
            plate,
            confidence: 9_100,
            issuer: Default::default(),
            detector_model: "d".into(),
            ocr_model: "o".into(),
            crop_hash: Hash32::ZERO,
            overview_hash: Hash32::ZERO,
        },
        at,
        TimeSource::Ntp,
    )
    .expect("append")
}

/// A valid, hub-signed bundle of `n` reads, with `revocations`.
fn write_bundle(
    s: &mut Signer,
    path: &Path,
    n: u64,
    revocations: &[Revocation],
    t0: u64,
) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = BundleWriter::new(file)?;
    w.hub_certificate(&s.hub_der)?;
    for r in revocations {
        w.revocation(r)?;
    }
    w.certificate(&s.node_der)?;
    // Entries are signed first so the checkpoint can come before them.
    let entries: Vec<_> = (0..n)
        .map(|i| read_at(&mut s.log, i, UnixMillis(t0 + i)))
        .collect();
    w.checkpoint(&s.log.checkpoint(UnixMillis::now()))?;
    for e in &entries {
        w.entry(e)?;
    }
    w.finish_signed(&s.hub_key, UnixMillis::now())?;
    Ok(())
}

/// Run `hub verify` under GNU time; its output and peak RSS in KiB.
fn verify_measured(pki: &Pki, bundle: &Path) -> anyhow::Result<(Output, u64)> {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin("hub")?)
        .args(["verify", "--ca"])
        .arg(pki.ca_cert())
        .arg(bundle)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let rss = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no peak RSS from /usr/bin/time: {err}"))?;
    Ok((out, rss))
}

#[test]
fn hub_verify_streams_big_and_crafted_bundles_in_bounded_memory() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-big")?;
    let mut s = signer(&pki, &node)?;

    // What the verifier itself takes, on a bundle of a few reads.
    let small = dir.path().join("small.bundle");
    write_bundle(&mut s, &small, 10, &[], UnixMillis::now().0 - 300_000)?;
    let (out, base) = verify_measured(&pki, &small)?;
    assert!(out.status.success(), "{}", text(&out));

    // A large valid bundle.
    let big = dir.path().join("big.bundle");
    let mut s = signer(&pki, &node)?;
    write_bundle(&mut s, &big, 150_000, &[], UnixMillis::now().0 - 200_000)?;
    let size = std::fs::metadata(&big)?.len();
    let (out, rss) = verify_measured(&pki, &big)?;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("bundle AUTHENTIC and complete"), "{t}");
    eprintln!(
        "hub verify: peak RSS {} KiB on 10 reads, {} KiB on a valid bundle of {} MB",
        base,
        rss,
        size / 1_000_000
    );
    assert!(
        rss.saturating_sub(base) < RSS_GROWTH_BOUND_KB,
        "peak RSS {rss} KiB for {size} bytes, {base} KiB for 10 reads"
    );

    // A crafted 300 MB file: one entry repeated, no certificate, no manifest.
    let crafted = dir.path().join("crafted.bundle");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&crafted)?);
        f.write_all(b"ALPR-LOG-BUNDLE2")?;
        let e = read_at(&mut s.log, 0, UnixMillis::now()).encode();
        let mut written = 16u64;
        while written < 300_000_000 {
            f.write_all(&[2])?;
            f.write_all(&(e.len() as u32).to_be_bytes())?;
            f.write_all(&e)?;
            written += 5 + e.len() as u64;
        }
        f.flush()?;
    }
    let (out, rss) = verify_measured(&pki, &crafted)?;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("without the hub's signed manifest"), "{t}");
    eprintln!("hub verify: crafted 300 MB file, peak RSS {rss} KiB");
    assert!(
        rss.saturating_sub(base) < RSS_GROWTH_BOUND_KB,
        "peak RSS {rss} KiB on the crafted file, {base} KiB for 10 reads"
    );
    Ok(())
}

#[test]
fn hub_verify_reports_entries_signed_after_revocation() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("car-stolen")?;
    let mut s = signer(&pki, &node)?;
    let t0 = UnixMillis::now().0 - 60_000;
    let revoked = Revocation {
        serial: s.serial.clone(),
        effective_at: UnixMillis(t0 + 3),
        reason: "vehicle stolen".into(),
    };
    let bundle = dir.path().join("revoked.bundle");
    write_bundle(&mut s, &bundle, 5, &[revoked], t0)?;
    let out = hub_verify(&pki, &bundle)?;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("car-stolen: NOT AUTHENTIC"), "{t}");
    for seq in [3, 4] {
        assert!(
            t.contains(&format!(
                "entry {seq}: signed with certificate {} after its revocation took effect",
                s.serial
            )),
            "{t}"
        );
    }
    assert!(!t.contains("entry 2: signed with"), "{t}");
    Ok(())
}

#[test]
fn hub_verify_refuses_a_directory_and_a_fifo_clearly() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let out = hub_verify(&pki, dir.path())?;
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("is a directory, not a bundle file"), "{t}");

    let fifo: PathBuf = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    // Nobody writes to the FIFO: a reader that opened it would hang.
    let out = hub_verify(&pki, &fifo)?;
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("is not a regular file"), "{t}");
    Ok(())
}
