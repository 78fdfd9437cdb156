//! The node's local socket (`status.sock` under the data folder, 0600):
//! how the officer's commands (`edge status`, `edge alerts`, `edge hold`,
//! `edge hotlist`, `edge login`, `edge search`) reach the running node.
//! One JSON request per connection, one answer; the node answers through
//! its access rules ([`crate::policy::EdgeAccess`]), which log every
//! access first.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::capture::gps::{GpsHandle, GpsStatus};
use crate::config::EdgeConfig;
use crate::health::{CaptureHealth, CaptureState};
use crate::store::StoreHandle;
use crate::sync::{SharedStatus, SyncStatus};

/// What `edge status` prints.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub device: String,
    pub log_size: u64,
    /// What the hub holds (its latest receipt, checked against this log).
    pub acked: u64,
    /// When the hub signed that receipt.
    pub acked_at: Option<String>,
    /// Whether the hub confirmed it on the current connection (otherwise
    /// it is the receipt of an earlier one: the hub may hold less now).
    pub receipt_current: bool,
    /// Reads the hub does not hold yet; `None` while the hub's record of
    /// this node is not this node's log (an identity conflict): nothing
    /// is known to be held.
    pub backlog: Option<u64>,
    pub images_pending: u64,
    pub link: String,
    /// The hub connected to, or being tried.
    pub hub: String,
    /// Every hub configured, in the order they are tried.
    #[serde(default)]
    pub hubs: Vec<String>,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub metered: bool,
    /// What capture is doing ("off", "running", "failing", …).
    #[serde(default)]
    pub capture: CaptureState,
    /// Why the store cannot commit now (it retries); absent when healthy.
    #[serde(default)]
    pub store_error: Option<String>,
    /// Free bytes on the data folder's filesystem.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// What is wrong now; empty when healthy (`edge health`).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Why uploads stopped, when the hub's record is not this node's log.
    pub identity_conflict: Option<String>,
    /// The hub lost reads it had acknowledged (restored from a backup).
    pub hub_lost: Option<String>,
    /// Entries of this node's own log its store could not read back, and
    /// recorded as lost with a signed loss entry: the node's fault.
    pub lost_entries: u64,
    pub own_loss: Option<String>,
    /// The gpsd client's state (vehicles, or where `gpsd` is configured).
    #[serde(default)]
    pub gps: Option<GpsStatus>,
    /// The policy version this node enforces (none before the hub sent one).
    #[serde(default)]
    pub policy_version: Option<u64>,
    /// When the hub last confirmed that policy.
    #[serde(default)]
    pub policy_refreshed_at: Option<String>,
    /// Not refreshed for longer than the policy allows: logins are refused.
    #[serde(default)]
    pub policy_stale: bool,
    /// The last policy refused as not the hub's (or invalid), and why.
    #[serde(default)]
    pub policy_error: Option<String>,
    /// Legal holds in force on this node (retention purges nothing they
    /// cover).
    #[serde(default)]
    pub active_holds: usize,
    /// When this node last merged the hub's legal holds.
    #[serde(default)]
    pub holds_refreshed_at: Option<String>,
    /// Local hotlist entries active on this node now.
    #[serde(default)]
    pub active_local_entries: usize,
    /// What the last retention pass did, or why it purged nothing
    /// ([`crate::retention::Outcome`]).
    #[serde(default)]
    pub retention: Option<String>,
    /// The bulk lists this node matches against: (source, generation).
    #[serde(default)]
    pub hotlists: Vec<(String, u64)>,
    /// The last bulk list from the hub that could not be applied, and why.
    #[serde(default)]
    pub hotlist_error: Option<String>,
}

fn status_of(
    device: &str,
    store: &StoreHandle,
    sync: &SyncStatus,
    capture: &CaptureHealth,
) -> Status {
    let log = store.status();
    let capture = capture.get();
    let disk_free = store
        .path()
        .parent()
        .and_then(alpr_shared::health::disk_free);
    let problems = crate::health::problems(store, &capture, disk_free);
    let policy = store.policy().ok().flatten().map(|(p, at)| {
        crate::policy::PolicyView::of(&p, at, alpr_shared::types::UnixMillis::now())
    });
    let (holds, holds_refreshed_at) = store.holds().unwrap_or_default();
    Status {
        active_holds: holds.iter().filter(|h| h.active()).count(),
        active_local_entries: {
            let now = alpr_shared::types::UnixMillis::now();
            store
                .local_entries()
                .map(|e| e.iter().filter(|e| e.active(now)).count())
                .unwrap_or_default()
        },
        holds_refreshed_at: holds_refreshed_at.map(|t| t.to_string()),
        policy_version: policy.as_ref().map(|p| p.version),
        policy_refreshed_at: policy.as_ref().and_then(|p| p.refreshed_at.clone()),
        policy_stale: policy.as_ref().is_some_and(|p| p.stale),
        policy_error: sync.policy_error.clone(),
        hotlists: sync.hotlists.clone(),
        hotlist_error: sync.hotlist_error.clone(),
        retention: None,
        capture,
        store_error: store.failing(),
        disk_free,
        problems,
        device: device.to_owned(),
        log_size: log.len,
        acked: log.acked,
        acked_at: log.acked_at.map(|t| t.to_string()),
        receipt_current: sync.receipt_current,
        backlog: sync.identity_conflict.is_none().then(|| log.backlog()),
        images_pending: log.images_pending,
        link: sync.link.clone(),
        hub: sync.hub.clone(),
        hubs: sync.hubs.clone(),
        last_sync: sync.last_sync.map(|t| t.to_string()),
        last_error: sync.last_error.clone(),
        connects: sync.connects,
        metered: sync.metered,
        identity_conflict: sync.identity_conflict.clone(),
        hub_lost: sync.hub_lost.clone(),
        lost_entries: log.lost,
        own_loss: sync.own_loss.clone(),
        gps: None,
    }
}

/// Largest request on the local socket (a search with its token).
pub const MAX_LOCAL_REQUEST: usize = 16 * 1024;

/// A request on the node's local socket: one JSON line (`status` alone is
/// the status, as older clients ask).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum LocalRequest {
    Status,
    Policy,
    Login { user: String, password: String },
    Logout { token: String },
    Search(crate::search::SearchRequest),
    HoldAdd(crate::holds::HoldAddRequest),
    HoldList(crate::holds::HoldListRequest),
    AlertList(crate::alert::AlertListRequest),
    AlertShow(crate::alert::AlertShowRequest),
    AlertDispose(crate::alert::AlertDisposeRequest),
    HotlistAdd(crate::hotlist::local::LocalAddRequest),
    HotlistEdit(crate::hotlist::local::LocalEditRequest),
    HotlistRemove(crate::hotlist::local::LocalRemoveRequest),
    HotlistList(crate::hotlist::local::LocalListRequest),
}

/// The answer to a request other than `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalAnswer {
    Ok(serde_json::Value),
    Error(String),
}

#[cfg(unix)]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_status(
    (listener, _bound): (tokio::net::UnixListener, BoundSocket),
    device: String,
    store: StoreHandle,
    status: SharedStatus,
    capture: CaptureHealth,
    gps: Option<GpsHandle>,
    access: crate::policy::EdgeAccess,
    retention: Arc<std::sync::Mutex<Option<crate::retention::Outcome>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => a?,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let st = status
            .lock()
            .map(|s| status_of(&device, &store, &s, &capture))
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))
            .map(|mut st| {
                st.gps = gps
                    .as_ref()
                    .map(|g| g.state().summary(std::time::Instant::now()));
                st.retention = retention
                    .lock()
                    .ok()
                    .and_then(|r| r.as_ref().map(ToString::to_string));
                st
            })?;
        let access = access.clone();
        tokio::spawn(async move {
            let request = read_request(&mut sock).await;
            let bytes = match request {
                Ok(LocalRequest::Status) => serde_json::to_vec(&st).ok(),
                Ok(r) => serde_json::to_vec(&answer(&access, r).await).ok(),
                Err(e) => serde_json::to_vec(&LocalAnswer::Error(e)).ok(),
            };
            if let Some(bytes) = bytes {
                let _ = sock.write_all(&bytes).await;
            }
            let _ = sock.shutdown().await;
            drop(permit);
        });
    }
}

/// One request line, bounded in size and time.
#[cfg(unix)]
async fn read_request(sock: &mut tokio::net::UnixStream) -> Result<LocalRequest, String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = sock.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&b'\n') {
                break;
            }
            if buf.len() > MAX_LOCAL_REQUEST {
                return Err(format!("request over {MAX_LOCAL_REQUEST} bytes"));
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
        Ok(r) => r?,
        // An old client that sends nothing gets the status.
        Err(_) => return Ok(LocalRequest::Status),
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() || text == "status" {
        return Ok(LocalRequest::Status);
    }
    serde_json::from_str(text).map_err(|e| format!("bad request: {e}"))
}

async fn answer(access: &crate::policy::EdgeAccess, r: LocalRequest) -> LocalAnswer {
    let to_value = |v: Result<serde_json::Value, String>| match v {
        Ok(v) => LocalAnswer::Ok(v),
        Err(e) => LocalAnswer::Error(e),
    };
    match r {
        LocalRequest::Status => LocalAnswer::Error("status is answered apart".into()),
        LocalRequest::Policy => to_value(access.policy().and_then(|p| {
            match p {
                None => Err("this edge holds no policy yet".into()),
                Some((p, at)) => serde_json::to_value(crate::policy::PolicyView::of(
                    &p,
                    at,
                    alpr_shared::types::UnixMillis::now(),
                ))
                .map_err(|e| e.to_string()),
            }
        })),
        LocalRequest::Login { user, password } => to_value(
            access
                .login(&user, &password)
                .await
                .and_then(|ok| serde_json::to_value(ok).map_err(|e| e.to_string())),
        ),
        LocalRequest::Logout { token } => match access.logout(&token).await {
            Ok(()) => LocalAnswer::Ok(serde_json::Value::Null),
            Err(e) => LocalAnswer::Error(e),
        },
        LocalRequest::HoldAdd(req) => to_value(
            crate::holds::add(access, req)
                .await
                .and_then(|h| serde_json::to_value(h).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistAdd(req) => to_value(
            crate::hotlist::local::add(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistEdit(req) => to_value(
            crate::hotlist::local::edit(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistRemove(req) => to_value(
            crate::hotlist::local::remove(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistList(req) => to_value(
            crate::hotlist::local::list(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HoldList(req) => to_value(
            crate::holds::list(access, &req)
                .and_then(|l| serde_json::to_value(l).map_err(|e| e.to_string())),
        ),
        LocalRequest::Search(req) => to_value(
            crate::search::search(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertList(req) => to_value(
            crate::alert::list(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertShow(req) => to_value(
            crate::alert::show(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertDispose(req) => to_value(
            crate::alert::dispose(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
    }
}

/// The status socket while it is bound: removed when the listener stops.
#[cfg(unix)]
pub(crate) struct BoundSocket(PathBuf);

#[cfg(unix)]
impl Drop for BoundSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bind the status socket, owner-only (0600). A stale socket of an earlier
/// run is replaced; anything else at that path (a file, a folder, a socket
/// another process answers on) is left alone and refused.
#[cfg(unix)]
pub(crate) fn bind_status_socket(
    path: &std::path::Path,
) -> anyhow::Result<(tokio::net::UnixListener, BoundSocket)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{} is the socket of a running process: is another edge using this data_dir?",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "refusing to replace {}: it is not the edge's status socket (move it away)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    let bound = BoundSocket(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok((listener, bound))
}

#[cfg(not(unix))]
pub(crate) fn bind_status_socket(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_status(
    _socket: (),
    _device: String,
    _store: StoreHandle,
    _status: SharedStatus,
    _capture: CaptureHealth,
    _gps: Option<GpsHandle>,
    _access: crate::policy::EdgeAccess,
    _retention: Arc<std::sync::Mutex<Option<crate::retention::Outcome>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    cancel.cancelled().await;
    Ok(())
}

#[cfg(unix)]
pub fn query_status(config: &EdgeConfig) -> anyhow::Result<Status> {
    let out = local_call(config, b"status\n")?;
    serde_json::from_slice(&out).context("the node's answer")
}

/// Send a request to the running node's local socket.
#[cfg(unix)]
pub fn local_request(config: &EdgeConfig, r: &LocalRequest) -> anyhow::Result<serde_json::Value> {
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    let out = local_call(config, &line)?;
    match serde_json::from_slice::<LocalAnswer>(&out).context("the node's answer")? {
        LocalAnswer::Ok(v) => Ok(v),
        LocalAnswer::Error(e) => Err(anyhow::anyhow!(e)),
    }
}

#[cfg(not(unix))]
pub fn local_request(_config: &EdgeConfig, _r: &LocalRequest) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("the edge's local socket needs Unix")
}

#[cfg(unix)]
fn local_call(config: &EdgeConfig, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let path = config.socket_path();
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        use std::io::ErrorKind;
        match e.kind() {
            // The socket and its folder are the node's user's alone.
            ErrorKind::PermissionDenied => anyhow::anyhow!(
                "permission denied on {}: run `edge status` as the user the node runs as",
                path.display()
            ),
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow::anyhow!(
                "the node is not running (no status socket answers at {})",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot reach the node at {}: {e}", path.display()),
        }
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.take(64 << 20).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(not(unix))]
pub fn query_status(_config: &EdgeConfig) -> anyhow::Result<Status> {
    anyhow::bail!("edge status needs a Unix socket")
}
