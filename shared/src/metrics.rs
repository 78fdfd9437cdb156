//! Health for machines: a Prometheus text endpoint (`GET /metrics`) and a
//! health check (`GET /healthz`: 200 "ok", or 503 with the reason) on one
//! small HTTP/1.1 server, bound to loopback unless configured otherwise.
//! Hub and edge each implement [`Exporter`] over their own counters.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// What a process exposes.
pub trait Exporter: Send + Sync + 'static {
    /// The metrics, in the Prometheus text format (see [`MetricsText`]).
    fn metrics(&self) -> String;
    /// `Ok` while the process does its job; else what is wrong.
    fn health(&self) -> Result<(), String>;
}

/// A Prometheus text exposition being written.
#[derive(Debug, Default)]
pub struct MetricsText(String);

impl MetricsText {
    pub fn new() -> Self {
        Self::default()
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// A value that only grows.
    pub fn counter(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.head(name, "counter", help);
        let _ = writeln!(self.0, "{name} {value}");
        self
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.head(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {value}");
        self
    }

    /// One series per label value (`kind` = `name{label="…"}`).
    pub fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &[(String, f64)],
    ) -> &mut Self {
        self.head(name, kind, help);
        for (l, v) in values {
            let l = l
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', " ");
            let _ = writeln!(self.0, "{name}{{{label}=\"{l}\"}} {v}");
        }
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 16;

/// Bind `addr` (a clear error if it is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve `/metrics` and `/healthz` on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    exporter: Arc<dyn Exporter>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                // A failed accept (out of descriptors) is not the end.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let exporter = exporter.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &*exporter)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
            drop(permit);
        });
    }
}

fn answer<B>(req: &Request<B>, exporter: &dyn Exporter) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            exporter.metrics(),
        ),
        (&Method::GET, "/healthz") => match exporter.health() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /healthz\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// `GET path` on a metrics endpoint: (status code, body). For health
/// commands and tests; plain HTTP/1.0 over a TCP socket, bounded.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = Vec::new();
    s.take(16 << 20).read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value of an unlabelled series in a scraped exposition.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), String>);

    impl Exporter for Fixed {
        fn metrics(&self) -> String {
            MetricsText::new()
                .counter("alpr_reads_total", "Reads.", 42.0)
                .labelled(
                    "alpr_refusals_total",
                    "counter",
                    "Refusals.",
                    "code",
                    &[("bad-signature".into(), 3.0)],
                )
                .finish()
        }
        fn health(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_and_health_over_real_http() {
        for (health, code) in [(Ok(()), 200), (Err("disk full".to_owned()), 503)] {
            let l = bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
            let addr = l.local_addr().expect("addr");
            let cancel = CancellationToken::new();
            let task = tokio::spawn(serve(l, Arc::new(Fixed(health.clone())), cancel.clone()));
            let (m, h) =
                tokio::task::spawn_blocking(move || (get(addr, "/metrics"), get(addr, "/healthz")))
                    .await
                    .expect("join");
            let (mc, body) = m.expect("metrics");
            assert_eq!(mc, 200);
            assert_eq!(value(&body, "alpr_reads_total"), Some(42.0));
            assert!(body.contains("alpr_refusals_total{code=\"bad-signature\"} 3"));
            let (hc, hbody) = h.expect("health");
            assert_eq!(hc, code, "{hbody}");
            if code == 503 {
                assert!(hbody.contains("disk full"));
            }
            cancel.cancel();
            task.await.expect("join").expect("serve");
        }
    }
}
