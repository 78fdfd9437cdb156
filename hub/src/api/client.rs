//! The client side of the API, for the commands people run: HTTPS over
//! rustls (ring) trusting only the deployment CA, and the saved session
//! (`hub login` writes it 0600 to `$ALPR_SESSION`, or
//! `$XDG_CONFIG_HOME/alpr/hub-session.json`, or
//! `~/.config/alpr/hub-session.json`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alpr_shared::types::UnixMillis;
use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long a command waits to connect before saying the hub is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// A saved session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// `https://HOST:PORT`
    pub hub: String,
    /// The deployment CA certificate the hub's certificate must chain to.
    pub ca: PathBuf,
    pub username: String,
    pub token: String,
    pub expires: UnixMillis,
}

/// Where the session is saved: `$ALPR_SESSION`, else under the user's
/// config folder.
pub fn session_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ALPR_SESSION") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(
            std::env::var_os("HOME").context("no $HOME: set ALPR_SESSION to a file path")?,
        )
        .join(".config"),
    };
    Ok(base.join("alpr").join("hub-session.json"))
}

impl Session {
    /// The saved session, or why there is none.
    pub fn load() -> anyhow::Result<Session> {
        let path = session_path()?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "not logged in ({}: {e}): run `hub login --hub https://HOST:PORT --ca CA.pem --user NAME`",
                path.display()
            )
        })?;
        let s: Session =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if s.expires <= UnixMillis::now() {
            anyhow::bail!(
                "the session of {} expired at {}: run `hub login` again",
                s.username,
                s.expires
            );
        }
        Ok(s)
    }

    /// Save (0600), replacing any earlier session.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = session_path()?;
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                alpr_shared::private::create_private_dir(dir)?;
            }
        }
        let _ = std::fs::remove_file(&path);
        let mut f = alpr_shared::private::create_private_file(&path)?;
        std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A client of the session's hub, sending its token.
    pub async fn client(&self) -> anyhow::Result<ApiClient> {
        let mut c = ApiClient::connect(
            &self.hub,
            &std::fs::read(&self.ca)
                .with_context(|| format!("reading the CA certificate {}", self.ca.display()))?,
        )
        .await?;
        c.token = Some(self.token.clone());
        Ok(c)
    }
}

/// An HTTPS connection to the hub's API.
#[derive(Debug)]
pub struct ApiClient {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    pub token: Option<String>,
}

/// An answer that was not a success: the status and the hub's message.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub message: String,
}

/// `https://HOST:PORT` → (host, port).
pub fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("{url:?} is not an https:// address"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .with_context(|| format!("{url:?} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("{url:?}: {port:?} is not a port"))?;
    Ok((host.to_owned(), port))
}

/// A rustls client configuration (ring) trusting only `ca_pem`.
pub fn tls_client(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for der in alpr_shared::cert::pem_certificates(ca_pem).context("the CA certificate")? {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .context("the CA certificate")?;
    }
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

impl ApiClient {
    /// Connect to `url` (`https://HOST:PORT`), trusting only `ca_pem`.
    pub async fn connect(url: &str, ca_pem: &[u8]) -> anyhow::Result<ApiClient> {
        let (host, port) = parse_url(url)?;
        let tls = tls_client(ca_pem)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("{host:?} is not a host name"))?;
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .with_context(|| format!("resolving {host}"))?
                .collect();
            let mut last = None;
            for a in addrs {
                match tokio::net::TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(anyhow::anyhow!(
                "connecting to the hub's API at {url}: {}: is `hub serve` running?",
                last.map_or("no address".to_string(), |e| e.to_string())
            ))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer from the hub's API at {url} within {} s: is `hub serve` running?",
                    CONNECT_TIMEOUT.as_secs()
                )
            })??;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .with_context(|| {
                format!(
                    "TLS with the hub at {url} (is its certificate issued by this CA for {host}?)"
                )
            })?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context("HTTP with the hub")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(ApiClient {
            send,
            host: format!("{host}:{port}"),
            token: None,
        })
    }

    /// Send one request with the session's token; the hub's response.
    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.send
            .ready()
            .await
            .context("the hub closed the connection")?;
        self.send
            .send_request(req)
            .await
            .with_context(|| format!("asking the hub ({path})"))
    }

    async fn request<T: DeserializeOwned>(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = read_limited(resp.into_body()).await?;
        if !status.is_success() {
            return Err(failure(status, &bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the hub's answer to {path}"))
    }

    /// POST `body` and stream a successful answer's bytes into `out` (no
    /// size limit: evidence bundles); an error answer is read as JSON.
    pub async fn post_download<B: Serialize>(
        &mut self,
        path: &str,
        body: &B,
        out: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<u64> {
        let body = Some(serde_json::to_vec(body)?);
        self.download(hyper::Method::POST, path, body, out).await
    }

    /// GET `path` and stream a successful answer's bytes into `out`, as
    /// [`ApiClient::post_download`] (log bundles).
    pub async fn get_download(
        &mut self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<u64> {
        self.download(hyper::Method::GET, path, None, out).await
    }

    async fn download(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
        out: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<u64> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            return Err(failure(status, &read_limited(body).await?));
        }
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the hub's answer")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).context("writing the answer")?;
                written += data.len() as u64;
            }
        }
        Ok(written)
    }

    /// POST raw bytes (a list file, `application/octet-stream`); the
    /// answer as JSON.
    pub async fn post_bytes<T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let mut req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        self.send
            .ready()
            .await
            .context("the hub closed the connection")?;
        let resp = self
            .send
            .send_request(req)
            .await
            .with_context(|| format!("asking the hub ({path})"))?;
        let status = resp.status();
        let bytes = read_limited(resp.into_body()).await?;
        if !status.is_success() {
            return Err(failure(status, &bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the hub's answer to {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> anyhow::Result<T> {
        self.request(hyper::Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.request(hyper::Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
    }
}

/// An answer's body, at most [`MAX_RESPONSE`] bytes.
pub(crate) async fn read_limited(body: hyper::body::Incoming) -> anyhow::Result<Bytes> {
    Ok(http_body_util::Limited::new(body, MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the hub's answer: {e}"))?
        .to_bytes())
}

/// The hub's refusal: its JSON `{"error": …}`, or the body as text.
fn failure(status: hyper::StatusCode, bytes: &[u8]) -> anyhow::Error {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    let message = serde_json::from_slice::<E>(bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned());
    ApiFailure {
        status: status.as_u16(),
        message,
    }
    .into()
}

/// A query string of `pairs` (values percent-encoded).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        let Some(v) = v else { continue };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The password: `$ALPR_PASSWORD`, else prompted without echo on a
/// terminal.
pub fn password(prompt: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ALPR_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(prompt)
        .context("reading the password (set ALPR_PASSWORD when not on a terminal)")
}

/// A runtime for a command-line client's calls.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One GET of the hub's API with the saved session (`hub login`).
pub fn api_get<T: serde::de::DeserializeOwned>(path: &str) -> anyhow::Result<T> {
    runtime()?.block_on(async { Session::load()?.client().await?.get(path).await })
}

/// One POST of `body` to the hub's API with the saved session.
pub fn api_post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    path: &str,
    body: &B,
) -> anyhow::Result<T> {
    runtime()?.block_on(async { Session::load()?.client().await?.post(path, body).await })
}

/// A record's id (a hold's, a local entry's: `[A-Za-z0-9-_]`) as a URL
/// path segment; anything else is refused as not a `what` id.
pub fn path_segment<'a>(id: &'a str, what: &str) -> anyhow::Result<&'a str> {
    anyhow::ensure!(
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id:?} is not {what} id"
    );
    Ok(id)
}
