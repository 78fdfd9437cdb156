//! `hub audit verify`: an auditor re-verifies every node log the running hub
//! holds, from the CA certificate alone, and gets a one-line verdict; with
//! no hub running, the command says so instead of hanging.

use std::time::Duration;

use alpr_e2e::{Edge, EdgeOptions, Hub, Pki};
use alpr_shared::log::bundle::{
    KIND_CERT, KIND_CHECKPOINT, KIND_ENTRY, KIND_HUB_CERT, KIND_MANIFEST, KIND_REVOCATION,
};

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

/// The records of a log bundle: (kind, bytes), the manifest last.
fn records(bytes: &[u8]) -> anyhow::Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut at = 16;
    while at < bytes.len() {
        let kind = bytes[at];
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into()?) as usize;
        out.push((kind, bytes[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    Ok(out)
}

/// Whether record (kind, bytes) belongs to node `name`.
fn of_node(kind: u8, bytes: &[u8], name: &str) -> bool {
    use alpr_shared::log::{SignedCheckpoint, SignedEntry};
    match kind {
        KIND_CERT => alpr_shared::cert::claimed_name(bytes).is_ok_and(|n| n.as_str() == name),
        KIND_ENTRY => SignedEntry::decode(bytes).is_ok_and(|e| e.header.device.as_str() == name),
        KIND_CHECKPOINT => {
            SignedCheckpoint::decode(bytes).is_ok_and(|c| c.checkpoint.device.as_str() == name)
        }
        _ => false,
    }
}

/// The hub signs only the bundles it builds: with no endpoint that signs a
/// manifest a client chose, a bundle lacking a node, a tail or a
/// checkpoint cannot be passed off as hub-signed and complete, whichever
/// manifest it carries.
#[test]
fn a_bundle_lacking_a_node_tail_or_checkpoint_cannot_pass_as_hub_signed_and_complete(
) -> anyhow::Result<()> {
    use alpr_hub::api::client::{ApiClient, ApiFailure, Session};
    use alpr_shared::log::bundle::{BundleWriter, SignedManifest};
    use alpr_shared::types::UnixMillis;

    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let mut edges = Vec::new();
    for (name, n) in [("pole-a", 60u64), ("patrol-a", 40)] {
        let opts = EdgeOptions {
            generate: n,
            ..EdgeOptions::default()
        };
        edges.push((
            Edge::start(&pki.node(name)?, hub.addr, dir.path(), &opts)?,
            n,
        ));
    }
    for (edge, n) in &edges {
        edge.wait_synced(*n, LIMIT)?;
    }
    for (edge, _) in &mut edges {
        edge.proc.stop()?;
    }
    let bundle = dir.path().join("hub.bundle");
    let out = hub
        .as_user("auditor")?
        .args(["audit", "verify", "--export"])
        .arg(&bundle)
        .output()?;
    assert!(out.status.success(), "{}", alpr_e2e::output_text(&out));
    let verify = |path: &std::path::Path| -> anyhow::Result<(bool, String)> {
        let out = std::process::Command::new(alpr_e2e::bin("hub")?)
            .args(["verify", "--ca"])
            .arg(pki.ca_cert())
            .arg(path)
            .output()?;
        Ok((out.status.success(), alpr_e2e::output_text(&out)))
    };
    let (ok, text) = verify(&bundle)?;
    assert!(
        ok && text.contains("bundle AUTHENTIC and complete"),
        "{text}"
    );

    let recs = records(&std::fs::read(&bundle)?)?;
    let (last_kind, hub_manifest) = recs.last().cloned().unwrap_or_default();
    assert_eq!(last_kind, KIND_MANIFEST);
    let hub_signed = SignedManifest::decode(&hub_manifest)?;
    // What an auditor (or anyone with their session) can reach of the hub.
    let session: Session =
        serde_json::from_slice(&std::fs::read(hub.sessions.join("auditor.json"))?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = rt.block_on(ApiClient::connect(&hub.api, &std::fs::read(&hub.ca)?))?;
    client.token = Some(session.token.clone());

    let doctored: [(&str, Keep); 3] = [
        (
            "without patrol-a",
            Box::new(|k, b| !of_node(k, b, "patrol-a")),
        ),
        (
            "without pole-a's last 10 entries",
            Box::new(|k, b| {
                k != KIND_ENTRY
                    || alpr_shared::log::SignedEntry::decode(b)
                        .is_ok_and(|e| e.header.device.as_str() != "pole-a" || e.seq() < 50)
            }),
        ),
        (
            "without pole-a's checkpoint",
            Box::new(|k, b| !(k == KIND_CHECKPOINT && of_node(k, b, "pole-a"))),
        ),
    ];
    for (what, keep) in &doctored {
        let mut w = BundleWriter::new(Vec::new())?;
        for (kind, bytes) in recs.iter().filter(|(k, b)| keep(*k, b)) {
            match *kind {
                KIND_HUB_CERT => w.hub_certificate(bytes)?,
                KIND_REVOCATION => w.revocation(&postcard_revocation(bytes)?)?,
                KIND_CERT => w.certificate(bytes)?,
                KIND_CHECKPOINT => w.checkpoint_bytes(bytes)?,
                KIND_ENTRY => w.entry_bytes(bytes)?,
                _ => {}
            }
        }
        let manifest = w.manifest(UnixMillis::now());
        // Whatever route once signed a client's manifest: the hub now
        // signs nothing it did not build.
        let asked: anyhow::Result<serde_json::Value> = rt.block_on(client.post(
            "/api/v1/bundle/sign",
            &serde_json::json!({ "manifest": hex::encode(manifest.encode()) }),
        ));
        let signed = match asked {
            Ok(reply) => {
                let signed = reply["signed"].as_str().unwrap_or_default();
                SignedManifest::decode(&hex::decode(signed)?)?
            }
            Err(e) => {
                let status = e.downcast_ref::<ApiFailure>().map(|f| f.status);
                assert_eq!(status, Some(404), "{what}: {e:#}");
                // The only hub signature at hand is over another bundle.
                SignedManifest {
                    manifest,
                    signature: hub_signed.signature,
                }
            }
        };
        let path = dir.path().join("doctored.bundle");
        std::fs::write(&path, w.finish(&signed)?)?;
        let (ok, text) = verify(&path)?;
        assert!(
            !ok && !text.contains("AUTHENTIC and complete"),
            "a bundle {what} passed as hub-signed and complete:\n{text}"
        );
        // The hub's own manifest, kept whole, does not cover it either.
        let mut bytes = alpr_shared::log::bundle::MAGIC.to_vec();
        for (kind, b) in recs
            .iter()
            .filter(|(k, b)| *k == KIND_MANIFEST || keep(*k, b))
        {
            bytes.push(*kind);
            bytes.extend_from_slice(&(b.len() as u32).to_be_bytes());
            bytes.extend_from_slice(b);
        }
        std::fs::write(&path, bytes)?;
        let (ok, text) = verify(&path)?;
        assert!(
            !ok && !text.contains("AUTHENTIC and complete"),
            "a bundle {what} under the hub's manifest passed:\n{text}"
        );
    }
    // Node log pages, whose access the client decided, are gone too: the
    // logs reach an auditor only in the bundle the hub builds.
    for path in [
        "/api/v1/nodes/pole-a/log?from=0&limit=10&size=10",
        "/api/v1/audit/hub-log?from=1&limit=10",
    ] {
        let r: anyhow::Result<serde_json::Value> = rt.block_on(client.get(path));
        let status = r
            .err()
            .and_then(|e| e.downcast::<ApiFailure>().ok())
            .map(|f| f.status);
        assert_eq!(status, Some(404), "{path}");
    }
    Ok(())
}

/// Which records of a bundle a doctored copy keeps.
type Keep = Box<dyn Fn(u8, &[u8]) -> bool>;

fn postcard_revocation(bytes: &[u8]) -> anyhow::Result<alpr_shared::cert::Revocation> {
    Ok(postcard::from_bytes(bytes)?)
}
