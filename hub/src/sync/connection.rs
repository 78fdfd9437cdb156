//! One node's connection: the handshake and the certificate checks, the
//! node's lease and session, its place among the live connections, the
//! shared documents pushed while it is connected, and its streams.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::DeviceCert;
use alpr_shared::sync::{HubOutput, HubSession, NodeKey, NodeKeys, Validity};
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::quic;
use alpr_shared::wire::{Refusal, RefusalCode};
use tracing::{info, warn, Instrument};

use super::live::Live;
use super::stream::StreamCtx;
use super::{hotlists, Driver, CLOSE_BUSY, REPLACEMENT_WINDOW};
use crate::config::normalise_serial;
use crate::hub::Hub;
use crate::ingest::Metrics;
use crate::refusals::kind;

/// Finish one incoming connection's handshake (within its time), check
/// its certificate (deployment CA, node rules, revocation) and the limit of
/// node connections, then serve the node until it goes.
pub(super) async fn handle_incoming(
    driver: Arc<Driver>,
    incoming: quinn::Incoming,
    handshake: tokio::sync::OwnedSemaphorePermit,
) {
    let hub = driver.hub.clone();
    let gate = &driver.gate;
    let peer = incoming.remote_address();
    let conn = match tokio::time::timeout(gate.handshake_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            drop(handshake);
            Metrics::add(&hub.metrics.refused_handshakes, 1);
            let detail = format!("TLS handshake failed: {e}");
            let code = RefusalCode::UnknownNode.as_str();
            hub.refuse_as(None, peer, code, None, &detail).await;
            return;
        }
        Err(_) => {
            // Dropping the handshake's future abandons the connection.
            drop(handshake);
            Metrics::add(&hub.metrics.refused_handshakes, 1);
            let detail = format!("handshake not finished within {:?}", gate.handshake_timeout);
            hub.refuse_as(None, peer, kind::HANDSHAKE_TIMEOUT, None, &detail)
                .await;
            return;
        }
    };
    drop(handshake);
    let checked = quic::peer_certificate(&conn)
        .ok_or_else(|| "no client certificate".to_owned())
        .and_then(|der| hub.anchor.check_device_der(&der).map_err(|e| e.to_string()));
    let cert = match checked {
        Ok(c) => c,
        Err(detail) => {
            close_refused(&hub, &conn, None, peer, RefusalCode::UnknownNode, &detail).await;
            return;
        }
    };
    if let Some(at) = hub
        .revoked_at(&cert.serial)
        .filter(|at| *at <= UnixMillis::now())
    {
        let detail = format!("certificate {} is revoked since {at}", cert.serial);
        close_refused(
            &hub,
            &conn,
            Some(&cert.name),
            peer,
            RefusalCode::Revoked,
            &detail,
        )
        .await;
        return;
    }
    let Ok(permit) = gate.nodes.clone().try_acquire_owned() else {
        let detail = "the hub's connection limit is reached";
        hub.refuse_as(Some(&cert.name), peer, kind::CONNECTION_LIMIT, None, detail)
            .await;
        conn.close(CLOSE_BUSY.into(), detail.as_bytes());
        return;
    };
    let span = tracing::info_span!("node", node = %cert.name);
    node_connection(driver.clone(), conn, cert, peer)
        .instrument(span)
        .await;
    drop(permit);
}

/// The keys ingest checks this node's entries with: every certificate the
/// hub holds for it that took effect, and the one it connected with
/// (pending until its first entry lands on the stored chain), each with its
/// revocation time.
fn node_keys(hub: &Hub, cert: &DeviceCert) -> anyhow::Result<NodeKeys> {
    let key_of = |c: &DeviceCert, effective_from: Option<u64>| NodeKey {
        serial: normalise_serial(&c.serial),
        key: c.key,
        validity: Validity {
            not_before: c.not_before,
            not_after: c.not_after,
        },
        effective_from,
        revoked_at: hub.revoked_at(&c.serial),
    };
    let mut held = Vec::new();
    for c in hub.storage.certificates(&cert.name)? {
        if c.effective_from.is_none() {
            continue;
        }
        match hub.anchor.check_device_der(&c.der) {
            Ok(d) if d.name == cert.name => held.push(key_of(&d, c.effective_from)),
            // A certificate that no longer checks vouches for nothing.
            Ok(_) | Err(_) => {
                warn!(serial = %c.serial, "a stored certificate of this node does not check; ignored")
            }
        }
    }
    Ok(NodeKeys::new(held, key_of(cert, None)))
}

async fn close_refused(
    hub: &Hub,
    conn: &quinn::Connection,
    device: Option<&DeviceId>,
    peer: SocketAddr,
    code: RefusalCode,
    detail: &str,
) {
    let r = Refusal {
        code,
        seq: None,
        detail: detail.to_owned(),
    };
    hub.refuse(device, peer, &r).await;
    conn.close(code.close_code().into(), detail.as_bytes());
}

/// Serve one authenticated node: take its lease, open its session with
/// what the hub holds of it, keep it as the node's live connection, push
/// the shared documents as they change, and run each stream it opens.
async fn node_connection(
    driver: Arc<Driver>,
    conn: quinn::Connection,
    cert: DeviceCert,
    peer: SocketAddr,
) {
    let hub = driver.hub.clone();
    let name = cert.name.clone();
    // One hub process at a time places a node's entries: its lease is
    // taken before its progress is read, and held while it is connected.
    let storage = hub.storage.clone();
    let leased = name.clone();
    let lease = match tokio::task::spawn_blocking(move || storage.lease_node(&leased)).await {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => {
            info!(%peer, "the node is connected to another hub: sent there");
            conn.close(
                quic::CLOSE_HELD_ELSEWHERE.into(),
                b"node is connected to another hub",
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "taking the node's lease");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "taking the node's lease");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub error");
            return;
        }
    };
    let progress = match hub.storage.node(&name) {
        Ok(r) => r.map(|r| r.progress()).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "reading the node's progress");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
    };
    let keys = match node_keys(&hub, &cert) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "reading the node's certificates");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
    };
    info!(%peer, acked = progress.next_seq, serial = %cert.serial, "node connected");
    let mut policy_rx = hub.policy.subscribe();
    let policy = policy_rx.borrow_and_update().clone();
    let mut holds_rx = hub.holds.watch();
    let holds = holds_rx.borrow_and_update().clone();
    let mut local_rx = hub.local_entries.watch();
    let local_entries = local_rx.borrow_and_update().clone();
    let mut lists_rx = hub.hotlists.watch();
    let lists = hotlists::summary(&lists_rx.borrow_and_update());
    let session = Arc::new(Mutex::new(
        HubSession::new(name.clone(), cert.key, hub.keys.receipt.clone(), progress)
            .with_keys(keys)
            .with_policy(policy.version(), Arc::new(policy.encode()))
            .with_holds(holds)
            .with_local_entries(local_entries)
            .with_hotlists(lists),
    ));
    let replaced = driver.live.insert(
        &name,
        Live {
            conn: conn.clone(),
            serial: normalise_serial(&cert.serial),
            session: session.clone(),
        },
    );
    if let Some(old) = replaced {
        old.conn.close(
            RefusalCode::Replaced.close_code().into(),
            b"a newer connection of this node",
        );
        if let Some(n) = driver.live.count_replacement(&name) {
            let r = Refusal {
                code: RefusalCode::IdentityConflict,
                seq: None,
                detail: format!(
                    "two devices share one identity: {n} connections replaced each other within {} s",
                    REPLACEMENT_WINDOW.as_secs()
                ),
            };
            hub.refuse(Some(&name), peer, &r).await;
        }
    }
    let ctx = Arc::new(StreamCtx {
        budget: driver.budgets.node(&name),
        admission: driver.admission.clone(),
        verify_slots: driver.verify_slots.clone(),
        hub: hub.clone(),
        session,
        device: name.clone(),
        kind: cert.kind,
        serial: normalise_serial(&cert.serial),
        cert_der: cert.der.clone(),
        peer,
        control: Mutex::new(None),
        hotlist_turn: tokio::sync::Mutex::new(()),
    });
    let streams = tokio_util::task::TaskTracker::new();
    let mut policy_open = true;
    let mut holds_open = true;
    let mut local_open = true;
    let mut lists_open = true;
    let reason = loop {
        tokio::select! {
            _ = hub.cancel.cancelled() => {
                conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub shutting down");
                break "hub shutting down".to_string();
            }
            // The database let go of this process's hold on the node:
            // another hub may take it now.
            _ = lease.lost() => {
                warn!("the node's lease was lost (the database connection ended): closing");
                conn.close(
                    quic::CLOSE_SHUTDOWN.into(),
                    b"the hub lost its hold on this node; connect again",
                );
                break "lease lost".to_string();
            }
            Some(p) = next(&mut policy_rx, &mut policy_open, Clone::clone), if policy_open => {
                ctx.push_policy(&p).await;
            }
            Some(doc) = next(&mut holds_rx, &mut holds_open, Clone::clone), if holds_open => {
                ctx.push_holds(doc).await;
            }
            Some(doc) = next(&mut local_rx, &mut local_open, Clone::clone), if local_open => {
                ctx.push_local_entries(doc).await;
            }
            Some(lists) = next(&mut lists_rx, &mut lists_open, hotlists::summary), if lists_open => {
                // Sent from their own task (a whole list is many frames),
                // one list at a time per node.
                for o in ctx.with_session(|s| s.set_hotlists(lists)).unwrap_or_default() {
                    if let HubOutput::SendHotlist { source, from, to } = o {
                        let ctx = ctx.clone();
                        streams.spawn(async move { ctx.push_hotlist(source, from, to).await }.in_current_span());
                    }
                }
            }
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    let ctx = ctx.clone();
                    streams.spawn(async move { ctx.run_stream(send, recv).await }.in_current_span());
                }
                Err(e) => {
                    node_reported_conflict(&hub, &name, peer, &e).await;
                    break e.to_string();
                }
            }
        }
    };
    streams.close();
    streams.wait().await;
    driver.live.remove(&name, &conn);
    drop(lease);
    info!(%reason, "node disconnected");
}

/// The next value of a watched document (through `f`); `None`, and
/// `open` false for good, once the document's sender is gone.
async fn next<T, U>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    open: &mut bool,
    f: impl FnOnce(&T) -> U,
) -> Option<U> {
    if rx.changed().await.is_err() {
        *open = false;
        return None;
    }
    Some(f(&rx.borrow_and_update()))
}

/// A node that found the hub's record is not its own log closes its
/// connection saying so: record it as the node's identity conflict.
async fn node_reported_conflict(
    hub: &Hub,
    name: &DeviceId,
    peer: SocketAddr,
    e: &quinn::ConnectionError,
) {
    let quinn::ConnectionError::ApplicationClosed(ac) = e else {
        return;
    };
    let Some(r) = Refusal::from_close(ac.error_code.into_inner(), &ac.reason) else {
        return;
    };
    if r.code == RefusalCode::IdentityConflict {
        let r = Refusal {
            detail: format!("the node reports: {}", r.detail),
            ..r
        };
        hub.refuse(Some(name), peer, &r).await;
    }
}
