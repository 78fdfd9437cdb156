//! Motion-JPEG over HTTP(S): what many IP cameras and video encoders
//! serve, one JPEG per part of a `multipart/x-mixed-replace` answer.
//! HTTP basic authentication when the camera has credentials; HTTPS
//! against the CA file given for the camera. Frames are kept as JPEG
//! until the recogniser takes one (only the frames analysed are
//! decoded), and stamped with the edge's clock when they arrive.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::credentials::Credentials;
use super::{
    streaming, CameraStats, Fault, Latest, LiveCamera, LiveFrame, Payload, CONNECT_TIMEOUT,
};
use crate::capture::FrameClock;

/// The largest part taken as one frame.
pub const MAX_PART: usize = 16 << 20;

/// What a receiving thread needs to reach one MJPEG camera.
#[derive(Clone)]
pub struct MjpegCamera {
    pub name: String,
    pub url: url::Url,
    pub credentials: Option<Credentials>,
    /// For `https://`: trust anchors from the camera's CA file.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub stall: Duration,
}

/// Start the camera's receiving thread.
pub fn open(cam: MjpegCamera, cancel: CancellationToken) -> std::io::Result<LiveCamera> {
    let stats = CameraStats::new(&cam.name, "mjpeg-http");
    let latest = Arc::new(Latest::default());
    let (s, l, c) = (stats.clone(), latest.clone(), cancel.clone());
    let thread = std::thread::Builder::new()
        .name(format!("mjpeg-{}", cam.name))
        .spawn(move || super::receive(&s, &cam.url, &c, || session(&cam, &l, &s)))?;
    Ok(LiveCamera::new(stats, latest, cancel, thread))
}

/// A TLS client that trusts the certificates in `ca_file` (PEM) only.
pub fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn session(cam: &MjpegCamera, latest: &Latest, stats: &CameraStats) -> Result<(), Fault> {
    let host = cam
        .url
        .host_str()
        .ok_or_else(|| Fault::config("the camera's URL has no host"))?
        .to_owned();
    let port = cam
        .url
        .port_or_known_default()
        .ok_or_else(|| Fault::config("the camera's URL has no port"))?;
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| Fault::net("no answer within 5 s"))?
    .map_err(|e| Fault::net(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Stream> = match &cam.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| Fault::config("the camera's host is not a valid TLS name"))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| Fault::net("no TLS handshake within 5 s"))?
            .map_err(|e| Fault::config(format!("TLS: {e}")))?;
            Box::new(tls)
        }
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| Fault::net(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = match cam.url.query() {
        Some(q) => format!("{}?{q}", cam.url.path()),
        None => cam.url.path().to_owned(),
    };
    let mut request = hyper::Request::get(path)
        .header(HOST, host.as_str())
        .header(USER_AGENT, "alpr-edge");
    if let Some(c) = &cam.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.username,
            c.password.as_str()
        ));
        request = request.header(AUTHORIZATION, format!("Basic {token}"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Fault::config(e.to_string()))?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| Fault::net("no answer within 5 s"))?
        .map_err(|e| Fault::net(e.to_string()))?;
    if answer.status() == hyper::StatusCode::UNAUTHORIZED {
        return Err(Fault::config(
            "the camera refused the credentials (HTTP 401): check credentials_file or credentials_env",
        ));
    }
    if !answer.status().is_success() {
        return Err(Fault::net(format!(
            "the camera answered HTTP {}",
            answer.status()
        )));
    }
    let content_type = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = boundary_of(&content_type).ok_or_else(|| {
        Fault::config(format!(
            "the camera's answer is not an MJPEG stream (Content-Type {content_type:?}, \
             expected multipart/x-mixed-replace)"
        ))
    })?;
    let mut parts = Parts::new(&boundary);
    let mut body = answer.into_body();
    loop {
        let frame = tokio::time::timeout(cam.stall, body.frame())
            .await
            .map_err(|_| Fault::net(format!("no frame for {} s", cam.stall.as_secs())))?;
        let data = match frame {
            None => return Err(Fault::net("the camera ended the stream")),
            Some(Err(e)) => return Err(Fault::net(e.to_string())),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        parts.push(&data);
        while let Some(part) = parts.next_part() {
            match part {
                Ok(jpeg) => {
                    stats.frame_arrived();
                    streaming(stats);
                    latest.put(
                        LiveFrame {
                            payload: Payload::Jpeg(jpeg),
                            captured_at: SystemTime::now(),
                            clock: FrameClock::SystemClock,
                        },
                        stats,
                    );
                }
                Err(()) => CameraStats::count(&stats.corrupt),
            }
        }
        if stats
            .frozen
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Fault::net("the picture is frozen"));
        }
    }
}

/// The boundary of a `multipart/x-mixed-replace` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind
        .trim()
        .eq_ignore_ascii_case("multipart/x-mixed-replace")
    {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // Some cameras repeat the two dashes in the parameter.
        let v = v.strip_prefix("--").unwrap_or(v);
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// Splits a multipart body into its parts, bounded: a part larger than
/// [`MAX_PART`] is dropped as corrupt.
struct Parts {
    delimiter: Vec<u8>,
    buf: Vec<u8>,
}

impl Parts {
    fn new(boundary: &str) -> Self {
        Parts {
            delimiter: format!("--{boundary}").into_bytes(),
            buf: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole part's JPEG, `Err` for a part that is no JPEG.
    fn next_part(&mut self) -> Option<Result<Vec<u8>, ()>> {
        loop {
            let start = find(&self.buf, &self.delimiter)?;
            let head_from = start + self.delimiter.len();
            let Some(head_len) = find(&self.buf[head_from..], b"\r\n\r\n") else {
                if self.buf.len() - start > 64 << 10 {
                    // Headers that never end.
                    self.buf.drain(..head_from);
                    return Some(Err(()));
                }
                return None;
            };
            let body_from = head_from + head_len + 4;
            let headers = String::from_utf8_lossy(&self.buf[head_from..head_from + head_len])
                .to_ascii_lowercase();
            let length = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let end = match length {
                Some(n) if n <= MAX_PART => {
                    if self.buf.len() < body_from + n {
                        return None;
                    }
                    body_from + n
                }
                _ => match find(&self.buf[body_from..], &self.delimiter) {
                    Some(i) => body_from + i,
                    None if self.buf.len() - body_from > MAX_PART => {
                        self.buf.clear();
                        return Some(Err(()));
                    }
                    None => return None,
                },
            };
            let mut body = self.buf[body_from..end].to_vec();
            self.buf.drain(..end);
            while body.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                body.pop();
            }
            if body.is_empty() {
                continue;
            }
            return Some(if body.starts_with(&[0xFF, 0xD8]) {
                Ok(body)
            } else {
                Err(())
            });
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_with_and_without_lengths_and_a_bad_part_is_counted() {
        assert_eq!(
            boundary_of("multipart/x-mixed-replace; boundary=--frame").as_deref(),
            Some("frame")
        );
        assert_eq!(boundary_of("image/jpeg"), None);
        let mut p = Parts::new("frame");
        let jpeg = b"\xFF\xD8 pixels \xFF\xD9".to_vec();
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 12\r\n\r\n",
        );
        body.extend_from_slice(&jpeg);
        body.extend_from_slice(b"\r\n--frame\r\nContent-Type: text/plain\r\n\r\nnot a picture\r\n");
        body.extend_from_slice(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n");
        body.extend_from_slice(&jpeg);
        body.extend_from_slice(b"\r\n--frame\r\n");
        // Fed a few bytes at a time, as a network gives it.
        let mut got = Vec::new();
        for chunk in body.chunks(7) {
            p.push(chunk);
            while let Some(part) = p.next_part() {
                got.push(part);
            }
        }
        assert_eq!(got, vec![Ok(jpeg.clone()), Err(()), Ok(jpeg)]);
    }
}
