//! A minimal browser for the console over HTTPS, for `alpr-bench hub console`
//! and the end-to-end tests: it trusts the deployment CA, keeps the
//! cookies the hub sets, sends urlencoded and multipart forms, and reads
//! the live alerts' server-sent events. Redirects are not followed: a
//! test sees the 303 a browser would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};

/// Most bytes of one answer read.
const MAX_ANSWER: usize = 64 << 20;
/// Most bytes of one server-sent event.
const MAX_EVENT: usize = 16 << 20;

/// An answer as a browser gets it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as sent (a download's bytes).
    pub bytes: Bytes,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// Round trip, ms.
    pub took_ms: f64,
}

impl Answer {
    /// The server's time (`Server-Timing: app;dur=MS`).
    pub fn server_ms(&self) -> Option<f64> {
        self.header("server-timing")?
            .split(';')
            .find_map(|p| p.trim().strip_prefix("dur="))?
            .parse()
            .ok()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the first form field `name` on the page
    /// (`name="NAME" value="…"`), entities decoded.
    pub fn field(&self, name: &str) -> Option<String> {
        field_in(&self.body, name)
    }

    /// The CSRF value of the page's forms.
    pub fn csrf(&self) -> Option<String> {
        self.field("csrf")
    }

    /// Whether an element with this id is on the page.
    pub fn has_id(&self, id: &str) -> bool {
        self.body.contains(&format!("id=\"{id}\""))
    }

    /// The text of the element with `id` up to its first closing tag,
    /// inner tags dropped, entities decoded, trimmed.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let rest = &self.body[self.body.find(&format!("id=\"{id}\""))?..];
        let start = rest.find('>')? + 1;
        let end = rest[start..].find("</")? + start;
        Some(unescape(&strip_tags(&rest[start..end])).trim().to_owned())
    }

    /// The rows `<tr class="CLASS" …>…</tr>` of the page, as their
    /// markup with entities decoded.
    pub fn rows(&self, class: &str) -> Vec<String> {
        self.body
            .split(&format!("<tr class=\"{class}\""))
            .skip(1)
            .filter_map(|r| r.split("</tr>").next())
            .map(unescape)
            .collect()
    }
}

/// The value of the first `name="NAME" value="…"` in `markup` (a page
/// or one of its rows), entities decoded.
pub fn field_in(markup: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let rest = &markup[markup.find(&key)? + key.len()..];
    Some(unescape(&rest[..rest.find('"')?]))
}

/// Text with maud's entities decoded.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One HTTP/1 connection's sending half.
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A file field of a multipart form: field name, file name, content.
pub type FileField<'a> = (&'a str, &'a str, &'a [u8]);

/// A console client: one kept-alive connection (reopened when the hub
/// closes it), the cookies the hub set, and the CSRF value of the last
/// page that carried one.
pub struct ConsoleClient {
    url: String,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    send: Option<Sender>,
    cookies: Vec<(String, String)>,
    csrf: Option<String>,
}

impl ConsoleClient {
    /// A client of the hub at `url` (`https://HOST:PORT`) trusting `ca_pem`.
    pub fn new(url: &str, ca_pem: &[u8]) -> anyhow::Result<ConsoleClient> {
        let (host, port) = crate::api::client::parse_url(url)?;
        Ok(ConsoleClient {
            url: url.to_owned(),
            host: format!("{host}:{port}"),
            tls: Arc::new(crate::api::client::tls_client(ca_pem)?),
            send: None,
            cookies: Vec::new(),
            csrf: None,
        })
    }

    async fn connect(&self) -> anyhow::Result<Sender> {
        let (host, port) = crate::api::client::parse_url(&self.url)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("{host:?} is not a host name"))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS with the hub")?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .context("HTTP with the hub")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// The value of a cookie the hub set.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CSRF value of the last page that carried one.
    pub fn csrf(&self) -> anyhow::Result<String> {
        self.csrf
            .clone()
            .context("no page with a CSRF field was opened yet")
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(hyper::header::SET_COOKIE) {
            let Some((name, rest)) = v.to_str().ok().and_then(|v| v.split_once('=')) else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or("").to_owned();
            self.cookies.retain(|(k, _)| k != name);
            if !rest.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value));
            }
        }
    }

    fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<(HeaderValue, Vec<u8>)>,
    ) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(hyper::header::COOKIE, c.join("; "));
        }
        let bytes = match body {
            Some((kind, bytes)) => {
                req = req.header(hyper::header::CONTENT_TYPE, kind);
                bytes
            }
            None => Vec::new(),
        };
        Ok(req.body(Full::new(Bytes::from(bytes)))?)
    }

    /// One request on the kept connection; the answer whatever its status.
    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<(HeaderValue, Vec<u8>)>,
    ) -> anyhow::Result<Answer> {
        let req = self.request(method, path, body)?;
        let mut send = match self.send.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let t0 = Instant::now();
        let resp = exchange(&mut send, req, path).await?;
        self.send = Some(send);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer to {path}: {e}"))?
            .to_bytes();
        let took_ms = t0.elapsed().as_secs_f64() * 1000.0;
        self.keep_cookies(&headers);
        let answer = Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            took_ms,
        };
        if let Some(csrf) = answer.csrf() {
            self.csrf = Some(csrf);
        }
        Ok(answer)
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.send(hyper::Method::GET, path, None).await
    }

    /// POST an urlencoded form of exactly `fields` (the CSRF value is one
    /// of them: [`ConsoleClient::csrf`] or a forged one).
    pub async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let body = form_body(fields).into_bytes();
        let kind = HeaderValue::from_static("application/x-www-form-urlencoded");
        self.send(hyper::Method::POST, path, Some((kind, body)))
            .await
    }

    /// POST a multipart form: `fields`, then one file (the order the
    /// console's upload form has).
    pub async fn post_multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: FileField<'_>,
    ) -> anyhow::Result<Answer> {
        let boundary = "----alpr-console-client-7d3f9a";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        let (name, filename, bytes) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let kind = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))?;
        self.send(hyper::Method::POST, path, Some((kind, body)))
            .await
    }

    /// Log in through the console's form; the answer to the form (a 303
    /// to the dashboard when it worked).
    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<Answer> {
        self.get("/console/login").await?;
        let csrf = self.csrf().context("the login page has no CSRF field")?;
        let answer = self
            .post_form(
                "/console/login",
                &[("username", user), ("password", password), ("csrf", &csrf)],
            )
            .await?;
        // The login form's value is not the session's: the next page has it.
        self.csrf = None;
        Ok(answer)
    }

    /// Open a stream of server-sent events (`/console/alerts/live`) on a
    /// connection of its own, with this client's cookies.
    pub async fn events(&self, path: &str) -> anyhow::Result<Events> {
        let req = self.request(hyper::Method::GET, path, None)?;
        let mut send = self.connect().await?;
        let resp = exchange(&mut send, req, path).await?;
        anyhow::ensure!(resp.status().is_success(), "{path}: HTTP {}", resp.status());
        Ok(Events {
            body: resp.into_body(),
            buf: Vec::new(),
            _send: send,
        })
    }
}

/// Send `req` (for `path`) once the connection is ready; the answer's head.
async fn exchange(
    send: &mut Sender,
    req: hyper::Request<Full<Bytes>>,
    path: &str,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    send.ready()
        .await
        .context("the hub closed the connection")?;
    send.send_request(req)
        .await
        .with_context(|| format!("asking the hub ({path})"))
}

/// A stream of server-sent events being read.
pub struct Events {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    /// Keeps the connection open while the stream is read.
    _send: Sender,
}

impl Events {
    /// The data of the next `alerts` event (its `data:` lines joined),
    /// waiting at most `timeout`; other events and comments are skipped.
    pub async fn next_alerts(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let mut name = "message";
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if name == "alerts" {
                    return Ok(data);
                }
            }
            anyhow::ensure!(
                self.buf.len() <= MAX_EVENT,
                "an event over {MAX_EVENT} bytes"
            );
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .map_err(|_| anyhow::anyhow!("no alerts event within {timeout:?}"))?
                .context("the stream of events ended")?
                .context("reading the stream of events")?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend(data.iter().filter(|b| **b != b'\r'));
            }
        }
    }
}
