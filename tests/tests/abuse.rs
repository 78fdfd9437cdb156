//! The hub stays bounded under abuse: handshakes without a certificate do
//! not flush a node's refusal out of `hub nodes` nor fill its database;
//! handshakes that never finish do not lock enrolled nodes out; the QUIC
//! port serves nodes only (no admin protocol); nodes pushing huge
//! image frames on many streams cannot raise the hub's memory past its
//! budgets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alpr_e2e::flood::{push_images, FloodOptions};
use alpr_e2e::raw::RawNode;
use alpr_e2e::{wait_for, Hub, Pki};
use alpr_hub::store::ChainStore;
use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{Frame, ALPN};
use anyhow::Context;

const LIMIT: Duration = Duration::from_secs(60);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn kind_count(nodes: &serde_json::Value, kind: &str) -> u64 {
    nodes["refusals_by_kind"][kind].as_u64().unwrap_or(0)
}

fn node_refusal<'a>(
    nodes: &'a serde_json::Value,
    device: &str,
    code: &str,
) -> Option<&'a serde_json::Value> {
    nodes["recent_refusals"]
        .as_array()?
        .iter()
        .find(|r| r["device"] == device && r["code"] == code)
}

/// A client that trusts the hub but presents no certificate at all.
fn anonymous_client(ca: &std::path::Path) -> anyhow::Result<quinn::ClientConfig> {
    use quinn::rustls;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

#[test]
fn a_thousand_handshakes_without_a_certificate_leave_a_revoked_nodes_refusal_in_sight(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let stolen = pki.node("stolen-1")?;
    let mut hub = Hub::start(&pki, dir.path(), std::slice::from_ref(&stolen.serial))?;
    let rt = runtime()?;

    // A revoked node is refused, and that is on record.
    rt.block_on(async {
        if let Ok(raw) = RawNode::connect(hub.addr, &stolen).await {
            let answer = raw.hello("stolen-1").await;
            anyhow::ensure!(answer.is_err(), "a revoked node was answered");
        }
        anyhow::Ok(())
    })?;
    wait_for(LIMIT, "the revoked node's refusal on record", || {
        node_refusal(&hub.nodes().ok()?, "stolen-1", "revoked").map(|_| ())
    })?;

    // 1,000 handshakes without a client certificate.
    const BAD: u64 = 1000;
    let client = anonymous_client(&pki.ca_cert())?;
    rt.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(client);
        let mut done = 0;
        while done < BAD {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let connecting = endpoint.connect(hub.addr, "localhost")?;
                batch.spawn(async move {
                    // The client may think it is through; the hub then
                    // closes the connection. Either way it ends.
                    if let Ok(c) = connecting.await {
                        let _ = tokio::time::timeout(LIMIT, c.closed()).await;
                    }
                });
            }
            while batch.join_next().await.is_some() {}
            done += 50;
        }
        endpoint.wait_idle().await;
        anyhow::Ok(())
    })?;

    let nodes = wait_for(LIMIT, "every bad handshake counted", || {
        let n = hub.nodes().ok()?;
        (n["refused_handshakes"].as_u64() >= Some(BAD)).then_some(n)
    })?;
    assert!(
        node_refusal(&nodes, "stolen-1", "revoked").is_some(),
        "the revoked node's refusal was pushed out of `hub nodes`: {nodes:#}"
    );
    assert!(
        kind_count(&nodes, "unknown-node") >= BAD,
        "not counted by kind: {}",
        nodes["refusals_by_kind"]
    );
    let sources = nodes["unauthenticated_refusals"]
        .as_array()
        .context("no unauthenticated_refusals")?;
    assert!(
        !sources.is_empty() && sources.len() <= 5,
        "one source, one row a minute: {sources:?}"
    );
    assert!(sources.iter().all(|r| r["source"] == "127.0.0.1"));
    hub.proc.stop()?;

    // What the database holds: a handful of rows, not a thousand.
    let store = alpr_hub::store::redb::RedbStore::open(&hub.data.join("hub.redb"))?;
    let rows = store.source_refusals(usize::MAX)?;
    assert!(rows.len() <= 5, "{} rows for one source", rows.len());
    let all = store.refusals(usize::MAX)?;
    assert!(
        all.len() <= 5,
        "{} node refusal rows after bad handshakes",
        all.len()
    );
    Ok(())
}

/// A one-way relay: datagrams from clients go to the hub, nothing comes
/// back, so their handshakes never finish. Counts what it forwards.
async fn black_hole(hub: SocketAddr, forwarded: Arc<AtomicU64>) -> anyhow::Result<SocketAddr> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if from != hub && sock.send_to(&buf[..n], hub).await.is_ok() {
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(addr)
}

#[test]
fn stalled_handshakes_do_not_lock_out_an_enrolled_node() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let good = pki.node("good-1")?;
    let other = pki.node("other-1")?;
    // Two node connections at most; half-open ones would live for minutes.
    let hub = Hub::start_with(
        &pki,
        dir.path(),
        &[],
        "max_connections = 2\nidle_timeout = \"300s\"\n",
    )?;
    let rt = runtime()?;
    let forwarded = Arc::new(AtomicU64::new(0));
    const STALLED: usize = 200;
    let _stalled = rt.block_on(async {
        let relay = black_hole(hub.addr, forwarded.clone()).await?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(quic::client_config(
            &std::fs::read(&good.ca)?,
            &std::fs::read(&good.cert)?,
            &std::fs::read(&good.key)?,
            ALPN,
            Liveness {
                keep_alive: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(300),
            },
        )?);
        let mut pending = Vec::new();
        for _ in 0..STALLED {
            let c = endpoint.connect(relay, "localhost")?;
            pending.push(tokio::spawn(async move {
                let _ = c.await;
            }));
        }
        anyhow::Ok((endpoint, pending))
    })?;
    // Every stalled client's first Initial, and retransmissions, reached
    // the hub before the node tries.
    wait_for(LIMIT, "the stalled handshakes to reach the hub", || {
        (forwarded.load(Ordering::Relaxed) >= 2 * STALLED as u64).then_some(())
    })?;

    let (first, second) = rt.block_on(async {
        // The enrolled node gets in, retrying as an edge would.
        let mut last = None;
        for _ in 0..(LIMIT.as_secs() * 2) {
            match RawNode::connect(hub.addr, &good).await {
                Ok(raw) => match raw.hello("good-1").await {
                    Ok(Frame::Welcome(_)) => {
                        last = Some(Ok(raw));
                        break;
                    }
                    other => last = Some(Err(anyhow::anyhow!("no welcome: {other:?}"))),
                },
                Err(e) => last = Some(Err(e)),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let first = last
            .context("never tried")?
            .context("the enrolled node was locked out")?;
        // A second node fits; a third does not, and that is counted.
        let second = RawNode::connect(hub.addr, &other).await?;
        anyhow::ensure!(matches!(second.hello("other-1").await?, Frame::Welcome(_)));
        anyhow::Ok((first, second))
    })?;
    let third = pki.node("third-1")?;
    rt.block_on(async {
        let refused = match RawNode::connect(hub.addr, &third).await {
            Ok(raw) => raw.hello("third-1").await.is_err(),
            Err(_) => true,
        };
        anyhow::ensure!(refused, "a node over max_connections was served");
        anyhow::Ok(())
    })?;
    let nodes = wait_for(
        LIMIT,
        "the limit refusal and handshake timeouts counted",
        || {
            let n = hub.nodes().ok()?;
            (kind_count(&n, "connection-limit") >= 1 && kind_count(&n, "handshake-timeout") >= 1)
                .then_some(n)
        },
    )?;
    assert!(
        node_refusal(&nodes, "third-1", "connection-limit").is_some(),
        "the refused node is not on record: {nodes:#}"
    );
    rt.block_on(async {
        first.close().await;
        second.close().await;
    });
    Ok(())
}

/// The QUIC port is for nodes only: the old admin protocol is gone, and a
/// client asking for it (with a node's certificate) gets nothing.
#[test]
fn the_quic_port_serves_no_admin_protocol() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node("pole-1")?;
    let hub = Hub::start(&pki, dir.path(), &[])?;
    let rt = runtime()?;
    let answered = rt.block_on(async {
        let cfg = quic::client_config(
            &std::fs::read(&node.ca)?,
            &std::fs::read(&node.cert)?,
            &std::fs::read(&node.key)?,
            b"alpr-admin/1",
            Liveness {
                keep_alive: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(10),
            },
        )?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(cfg);
        let answer = async {
            let conn = endpoint.connect(hub.addr, "localhost")?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(br#""Nodes""#).await?;
            send.finish()?;
            anyhow::Ok(recv.read_to_end(1 << 20).await?)
        }
        .await;
        endpoint.close(0u32.into(), b"done");
        anyhow::Ok(answer.is_ok_and(|b| !b.is_empty()))
    })?;
    assert!(!answered, "the QUIC port answered the old admin protocol");
    let nodes = wait_for(LIMIT, "the refused handshake counted", || {
        let n = hub.nodes().ok()?;
        (n["refused_handshakes"].as_u64()? >= 1).then_some(n)
    })?;
    assert!(
        nodes["nodes"].as_array().is_some_and(|n| n.is_empty()),
        "{nodes:#}"
    );
    Ok(())
}

#[test]
fn nodes_pushing_huge_image_frames_on_every_stream_stay_within_the_hubs_budget(
) -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    // The smallest budgets the hub accepts: two image frames per node,
    // 64 MiB for all of them.
    const MIB: u64 = 1024 * 1024;
    let node_buffer = 2 * alpr_shared::wire::MAX_IMAGE_FRAME as u64;
    let buffer = 64 * MIB;
    let hub = Hub::start_with(
        &pki,
        dir.path(),
        &[],
        &format!("node_buffer_bytes = {node_buffer}\nbuffer_bytes = {buffer}\n"),
    )?;
    const NODES: usize = 6;
    let nodes: Vec<_> = (0..NODES)
        .map(|i| pki.node(&format!("flood-{i}")))
        .collect::<Result<_, _>>()?;
    let (before, _) = hub.proc.rss()?;
    let rt = runtime()?;
    let opts = FloodOptions {
        streams: 8,
        per_stream: 1,
        image_bytes: alpr_shared::wire::MAX_IMAGE_BYTES,
        named: false,
    };
    let addr = hub.addr;
    let outcomes = rt.block_on(async {
        let mut all = tokio::task::JoinSet::new();
        for n in nodes {
            all.spawn(async move { push_images(addr, &n, opts).await });
        }
        let mut out = Vec::new();
        while let Some(r) = all.join_next().await {
            out.push(r??);
        }
        anyhow::Ok(out)
    })?;
    let (_, peak) = hub.proc.rss()?;
    let sent: u64 = outcomes.iter().map(|o| o.sent).sum();
    let answered: u64 = outcomes.iter().map(|o| o.stored + o.refused).sum();
    assert_eq!(
        sent,
        (NODES * opts.streams * opts.per_stream) as u64,
        "every image was sent"
    );
    assert_eq!(answered, sent, "the hub read and answered every image");
    // Frames in the hub (its budget), what QUIC may hold per connection
    // before the hub reads it, and room for the rest of the process.
    let windows = NODES as u64 * u64::from(alpr_hub::sync::limits::WINDOWS.connection);
    let bound = buffer + windows + 32 * MIB;
    let grew = peak.saturating_sub(before);
    eprintln!(
        "hub RSS before {} MiB, peak {} MiB, grew {} MiB (bound {} MiB)",
        before / MIB,
        peak / MIB,
        grew / MIB,
        bound / MIB
    );
    assert!(
        grew <= bound,
        "{NODES} nodes pushing {} MiB frames raised the hub's peak RSS by {} MiB (bound {} MiB)",
        opts.image_bytes as u64 / MIB,
        grew / MIB,
        bound / MIB
    );
    Ok(())
}
