//! Several hub processes on one database: what another process changes
//! in the shared documents reaches this one's nodes and people. The store
//! says when something may have changed ([`HubStorage::watch_changes`]);
//! the follower then reloads each service from the store, and each pushes
//! what is new through its usual watch: the policy, the legal holds, the
//! local hotlist entries, the bulk lists' generations, revocations, and
//! the accounts people log in with.
//!
//! [`HubStorage::watch_changes`]: crate::store::HubStorage::watch_changes

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::hub::Hub;

/// After a failed reload (the database away), the next try.
const RETRY: Duration = Duration::from_secs(2);

/// Reload on every change until `cancel`.
pub async fn follow(
    hub: Arc<Hub>,
    users: Arc<crate::users::Users>,
    mut changes: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    let mut failed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RETRY), if failed => {}
        }
        let seen = *changes.borrow_and_update();
        debug!(seen, "the shared documents may have changed: reloading");
        failed = !reload(&hub, &users).await;
    }
}

/// Reload every shared document; false if any could not be read (each is
/// tried regardless).
async fn reload(hub: &Hub, users: &Arc<crate::users::Users>) -> bool {
    let mut ok = true;
    match hub.policy.reload().await {
        Ok(Some(version)) => info!(version, "policy from another hub process in force"),
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, "reloading the policy");
            ok = false;
        }
    }
    match hub.holds.reload().await {
        Ok(true) => info!("legal holds changed by another hub process"),
        Ok(false) => {}
        Err(e) => {
            warn!(error = %e, "reloading the legal holds");
            ok = false;
        }
    }
    match hub.local_entries.reload().await {
        Ok(true) => info!("local hotlist entries changed by another hub process"),
        Ok(false) => {}
        Err(e) => {
            warn!(error = %e, "reloading the local hotlist entries");
            ok = false;
        }
    }
    match hub.hotlists.reload().await {
        Ok(came) => {
            for (source, generation) in came {
                info!(
                    source,
                    generation, "bulk list imported on another hub process: current"
                );
            }
        }
        Err(e) => {
            warn!(error = %e, "reloading the bulk lists");
            ok = false;
        }
    }
    let storage = hub.storage.clone();
    match tokio::task::spawn_blocking(move || storage.revocations()).await {
        Ok(Ok(all)) => {
            for r in all.into_iter().filter(|r| hub.revocation_is_new(r)) {
                info!(serial = %r.serial, "certificate revoked on another hub process");
                if let Err(e) = hub.apply_revocation(r).await {
                    warn!(error = %e, "applying a revocation");
                    ok = false;
                }
            }
        }
        Ok(Err(e)) => {
            warn!(error = %e, "reloading the revocations");
            ok = false;
        }
        Err(e) => {
            warn!(error = %e, "reloading the revocations");
            ok = false;
        }
    }
    let people = users.clone();
    match tokio::task::spawn_blocking(move || people.reload()).await {
        Ok(Ok(true)) => info!("accounts changed by another hub process"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "reloading the accounts");
            ok = false;
        }
        Err(e) => {
            warn!(error = %e, "reloading the accounts");
            ok = false;
        }
    }
    ok
}
