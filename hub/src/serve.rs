//! The composition root: build the hub from its configuration (store,
//! keys, services, access log, users), start its tasks (retention, past
//! matches, compaction, other hub processes' changes), its adapters (the
//! API for people with the console, the metrics endpoint, the QUIC driver
//! for nodes), and run them until shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::{Revocation, TrustAnchor};
use alpr_shared::types::UnixMillis;
use alpr_shared::wire::quic;
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::HubConfig;
use crate::hub::Hub;
use crate::ingest::{Metrics, Writer, WriterConfig};
use crate::refusals::SourceRefusals;
use crate::store::WriteOp;
use crate::sync;

/// Run the hub until `cancel` fires: open the store, start the writer,
/// listen, and on shutdown stop accepting, close connections, and let the
/// writer commit what it holds.
pub async fn serve(
    config: HubConfig,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    config.check_ca_key_apart()?;
    sync::limits::check(&config).context("hub configuration")?;
    alpr_shared::private::create_private_dir(&config.data_dir)?;
    let (storage, recovering) = config.open_storage()?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            alpr_shared::metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint on {addr}"))?,
        ),
        None => None,
    };
    let ca_pem = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert_pem = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key_pem = alpr_shared::private::read_key_file(&config.key)?;
    let anchor = TrustAnchor::from_pem(&ca_pem).context("the CA certificate")?;
    let (keys, log_key) = config.hub_keys(&anchor)?;
    // The API for people is bound before the hub says it listens, so a
    // command run right after finds it.
    let api_listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("binding the API on {}", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let api_tls = {
        let (cert, key) = config.api_tls_files();
        let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key = alpr_shared::private::read_key_file(key)?;
        crate::api::tls_config(&cert, &key)?
    };
    let endpoint = sync::endpoint(&config, &ca_pem, &cert_pem, &key_pem)?;
    let addr = endpoint.local_addr()?;

    // Revocations from the configuration join those recorded: a bare
    // serial takes effect when first loaded, a table at its time.
    let now = UnixMillis::now();
    let mut revoked: HashMap<String, Revocation> = storage
        .revocations()
        .context("reading revocations")?
        .into_iter()
        .map(|r| (r.serial.clone(), r))
        .collect();
    let mut new_revocations = Vec::new();
    for entry in &config.revoked {
        let serial = entry.serial();
        let at = entry.at()?;
        let known = revoked.get(&serial).map(|r| r.effective_at);
        if known.is_none() || at.is_some_and(|t| Some(t) < known) {
            let r = Revocation {
                serial: serial.clone(),
                effective_at: at.unwrap_or(now),
                reason: entry.reason(),
            };
            revoked.insert(serial, r.clone());
            new_revocations.push(WriteOp::Revoke(r));
        }
    }
    if !new_revocations.is_empty() {
        storage
            .commit(new_revocations)
            .context("recording the configured revocations")?;
    }

    let policy = crate::policy::PolicyService::open(
        storage.clone(),
        keys.policy.clone(),
        anchor.clone(),
        &config.policy,
        Vec::new(),
    )
    .context("the hub's policy ([policy] in hub.toml)")?;
    policy
        .set_revocations(revoked.values().cloned().collect())
        .await
        .context("putting the revocations in the policy")?;
    info!(version = policy.current().version(), "policy in force");
    let holds = crate::holds::HoldsService::open(storage.clone()).context("the legal holds")?;
    info!(active = holds.active().len(), "legal holds loaded");
    let hotlists = crate::hotlist::HotlistService::open(
        storage.clone(),
        crate::hotlist::HotlistKeys {
            key: keys.hotlist.clone(),
            anchor: anchor.clone(),
            legacy: Some(keys.tls_public),
        },
        config.hotlist.clone(),
    )
    .context("the hotlists ([hotlist] in hub.toml)")?;
    info!(
        lists = hotlists.current().len(),
        "hotlist generations loaded"
    );
    let local_entries = crate::hotlist::local::LocalEntriesService::open(storage.clone())
        .context("the local hotlist entries")?;
    info!(
        entries = local_entries.entries().len(),
        "local hotlist entries loaded"
    );

    // The hub's own access log, signed with its log key under that key's
    // certificate's name; users and sessions; the API for people.
    let access = crate::access::AccessLog::start(storage.clone(), log_key)
        .context("starting the access log")?;
    let users = Arc::new(
        crate::users::Users::new(storage.clone(), access.clone(), config.users())
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let node_writes = crate::node_writes::NodeWrites::new(
        access.clone(),
        users.clone(),
        policy.clone(),
        holds.clone(),
        local_entries.clone(),
    );

    let metrics = Arc::new(Metrics::default());
    let (writer, writer_thread) =
        Writer::spawn(storage.clone(), metrics.clone(), WriterConfig::default());
    let live = Arc::new(sync::Connections::default());
    let hub = Arc::new(Hub {
        storage,
        writer,
        metrics,
        health: Arc::new(crate::health::HubHealth::new(recovering)),
        anchor,
        keys,
        revoked: Mutex::new(revoked),
        live: live.clone(),
        cancel: cancel.child_token(),
        sources: SourceRefusals::default(),
        refusal_retention: config.refusal_retention,
        policy,
        holds,
        local_entries,
        hotlists,
        node_writes,
    });
    let driver = sync::Driver::new(hub.clone(), live, &config);
    let tasks = tokio_util::task::TaskTracker::new();
    if let Some(listener) = metrics_listener {
        info!(addr = %listener.local_addr()?, "metrics endpoint listening");
        let exporter = Arc::new(crate::hub::HubExporter(hub.clone()));
        let cancel = hub.cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = alpr_shared::metrics::serve(listener, exporter, cancel).await {
                warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    if users.prepare_bootstrap(&config.data_dir, api_addr)? {
        info!(
            file = %config.data_dir.join(crate::users::BOOTSTRAP_FILE).display(),
            "no users yet: run `hub bootstrap` on this machine to create the first administrator"
        );
    }
    let seeded = config
        .policy
        .seeded_officers()
        .context("the officers in [policy]")?;
    // Other hub processes on the same database: their changes to the
    // shared documents reach this one's nodes and people.
    if let Some(changes) = hub.storage.watch_changes() {
        tokio::spawn(sync::follow::follow(
            hub.clone(),
            users.clone(),
            changes,
            cancel.child_token(),
        ));
    }
    tokio::spawn(crate::policy::officers::follow_users(
        users.clone(),
        hub.policy.clone(),
        seeded,
        cancel.child_token(),
    ));
    // Local hotlist entries removed or expired, and legal holds released,
    // longer than the grace period leave their documents: at start, then
    // hourly.
    {
        let local = hub.local_entries.clone();
        let holds = hub.holds.clone();
        let stop = cancel.child_token();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let now = UnixMillis::now();
                        match local.compact(now).await {
                            Ok(true) => info!("compacted the local hotlist entries"),
                            Ok(false) => {}
                            Err(e) => warn!(error = %e, "compacting the local hotlist entries"),
                        }
                        match holds.compact(now).await {
                            Ok(true) => info!("compacted the legal holds"),
                            Ok(false) => {}
                            Err(e) => warn!(error = %e, "compacting the legal holds"),
                        }
                    }
                }
            }
        });
    }
    // Retention, every `retention_interval`, sparing what the legal holds
    // in force cover.
    let held_now = hub.holds.clone();
    let holds: Arc<dyn crate::retention::HoldSource> = Arc::new(move || held_now.active());
    let retention = Arc::new(crate::retention::Retention::new(
        hub.storage.clone(),
        access.clone(),
        holds,
        Arc::new(alpr_shared::types::UnixMillis::now),
    ));
    tokio::spawn(crate::retention::schedule(
        retention.clone(),
        hub.policy.clone(),
        config.retention_interval,
        cancel.child_token(),
    ));
    let search = crate::search::Searcher::new(hub.storage.clone(), hub.anchor.clone());
    // Past matches: each new generation's new rows and each new local
    // entry searched in the reads held (the system's access is logged).
    let back_matcher = crate::alerts::back_match::BackMatcher {
        storage: hub.storage.clone(),
        searcher: search.clone(),
        access: access.clone(),
    };
    tokio::spawn(back_matcher.clone().follow_bulk(
        hub.policy.clone(),
        hub.hotlists.clone(),
        cancel.child_token(),
    ));
    {
        let local = hub.local_entries.clone();
        tokio::spawn(back_matcher.follow_local(
            hub.policy.clone(),
            hub.local_entries.watch_entries(),
            move || local.entries(),
            cancel.child_token(),
        ));
    }
    let api_state = crate::api::ApiState {
        hub: hub.clone(),
        users,
        access,
        data_dir: config.data_dir.clone(),
        search,
        retention,
        retention_interval: config.retention_interval,
    };
    let pages = crate::console::routes(
        api_state.clone(),
        Arc::new(crate::console::ConsoleState::new(config.console.clone())),
    );
    let app = crate::api::router(api_state, config.api_body_limit, pages);
    info!(addr = %api_addr, "api listening");
    let mut api_task = tokio::spawn(crate::api::serve(
        api_listener,
        api_tls,
        app,
        crate::api::ApiLimits {
            max_connections: config.api_max_connections,
            request_timeout: config.api_request_timeout,
        },
        hub.cancel.clone(),
    ));
    // Both ports are ready: nodes and people may come.
    info!(%addr, "hub listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let writer_closed = hub.writer.clone();
    let mut failure = None;
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            r = &mut api_task => {
                if cancel.is_cancelled() {
                    break;
                }
                tracing::error!("the API stopped; the hub stops so that its supervisor restarts it");
                failure = Some(match r {
                    Ok(Err(e)) => e.context("the API stopped"),
                    Ok(Ok(())) => anyhow::anyhow!("the API stopped"),
                    Err(e) => anyhow::anyhow!("the API panicked: {e}"),
                });
                break;
            }
            _ = writer_closed.closed() => {
                // The writer is gone: nothing could be stored or
                // acknowledged. Stop, so that a supervisor restarts the hub.
                tracing::error!("the writer stopped; the hub stops so that its supervisor restarts it");
                failure = Some(anyhow::anyhow!("the hub's writer stopped"));
                break;
            }
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        driver.accept(incoming);
    }
    info!("shutting down: closing connections");
    endpoint.close(quic::CLOSE_SHUTDOWN.into(), b"hub shutting down");
    hub.cancel.cancel();
    if !api_task.is_finished() {
        let _ = api_task.await;
    }
    tasks.close();
    tasks.wait().await;
    driver.close().await;
    endpoint.wait_idle().await;
    drop(driver);
    drop(hub);
    drop(writer_closed);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .ok();
    info!("hub stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
