//! The QUIC side of the wire: mutual-TLS configurations for the hub and the
//! nodes (rustls with ring, TLS 1.3 only, the deployment CA as the only
//! root), and reading and writing frames on quinn streams.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::{Frame, WireError, LEN_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no certificate in {0}")]
    NoCertificate(&'static str),
    #[error("bad PEM in {what}: {err}")]
    Pem {
        what: &'static str,
        err: rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let c = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsSetupError::Pem { what, err })?;
    if c.is_empty() {
        return Err(TlsSetupError::NoCertificate(what));
    }
    Ok(c)
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem, "CA certificate")? {
        roots.add(c)?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Keep-alive and idle timeout of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
}

fn transport(l: Liveness) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(l.keep_alive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(l.idle_timeout).ok());
    t.max_concurrent_bidi_streams(8u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    // BBR paces to the measured bottleneck instead of halving the window at
    // every loss: on a lossy radio link (2 % loss, a long RTT) loss-based
    // controllers leave the link idle much of the time.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    t
}

/// The hub's endpoint configuration: its certificate, and client
/// certificates required and checked against the deployment CA.
pub fn server_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    alpns: &[&[u8]],
    liveness: Liveness,
) -> Result<quinn::ServerConfig, TlsSetupError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| TlsSetupError::Pem { what: "key", err })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem, "hub certificate")?, key)?;
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsSetupError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport(liveness)));
    cfg.migration(true);
    Ok(cfg)
}

/// How much a peer may have in flight towards us before it must wait for
/// us to read: QUIC flow control, per stream and per connection, and the
/// streams it may open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveWindows {
    pub stream: u32,
    pub connection: u32,
    pub bidi_streams: u32,
}

/// Bound what each peer of `cfg` (built by [`server_config`]) may have in
/// flight towards us; keeps its keep-alive and idle timeout.
pub fn bound_receive(cfg: &mut quinn::ServerConfig, liveness: Liveness, w: ReceiveWindows) {
    let mut t = transport(liveness);
    t.stream_receive_window(w.stream.into());
    t.receive_window(w.connection.into());
    t.max_concurrent_bidi_streams(w.bidi_streams.into());
    cfg.transport_config(Arc::new(t));
}

/// A node's configuration: the hub must present a
/// certificate from the deployment CA; we present ours.
pub fn client_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[u8],
    liveness: Liveness,
) -> Result<quinn::ClientConfig, TlsSetupError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| TlsSetupError::Pem { what: "key", err })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs(cert_pem, "node certificate")?, key)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsSetupError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport(liveness)));
    Ok(cfg)
}

/// The peer's end-entity certificate (DER), once the handshake is done.
pub fn peer_certificate(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let id = conn.peer_identity()?;
    let chain = id.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().map(|c| c.as_ref().to_vec())
}

/// The ALPN the handshake settled on.
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let hd = conn.handshake_data()?;
    let hd = hd.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?;
    hd.protocol
}

/// Why a frame could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    #[error("stream ended")]
    Finished,
    #[error("stream: {0}")]
    Stream(#[from] quinn::ReadExactError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Read one frame, refusing an oversized length before allocating.
pub async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Frame, ReadFrameError> {
    let len = read_frame_len(recv, max).await?;
    read_frame_body(recv, len, max).await
}

/// Read a frame's length prefix, refusing one over `max`: a caller may
/// reserve the announced size (against a memory budget) before reading the
/// body with [`read_frame_body`].
pub async fn read_frame_len(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<usize, ReadFrameError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(ReadFrameError::Finished),
        Err(e) => return Err(e.into()),
    }
    Ok(Frame::body_len(prefix, max)?)
}

/// Read and decode a frame body of `len` bytes (from [`read_frame_len`]).
/// The buffer grows with what arrives, never ahead of it: a peer that
/// announces a large frame and sends nothing costs nothing.
pub async fn read_frame_body(
    recv: &mut quinn::RecvStream,
    len: usize,
    max: usize,
) -> Result<Frame, ReadFrameError> {
    let mut body: Vec<u8> = Vec::with_capacity(len.min(READ_CHUNK));
    while body.len() < len {
        let want = len - body.len();
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => {
                if body.capacity() - body.len() < chunk.bytes.len() {
                    // Grow by doubling, bounded by the announced length.
                    let target = (body.capacity() * 2).clamp(body.len() + chunk.bytes.len(), len);
                    body.reserve_exact(target - body.len());
                }
                body.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => {
                return Err(quinn::ReadExactError::FinishedEarly(body.len()).into());
            }
            Err(e) => return Err(quinn::ReadExactError::ReadError(e).into()),
        }
    }
    Ok(Frame::decode_body(&body, max)?)
}

/// First allocation of a frame body; it grows as the bytes arrive.
const READ_CHUNK: usize = 64 * 1024;

/// Write one frame.
pub async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &Frame,
) -> Result<(), quinn::WriteError> {
    send.write_all(&frame.encode()).await
}

/// Stream error code: the peer sent a frame that breaks the protocol.
pub const STREAM_MALFORMED: u32 = 1;
/// Connection close code for an orderly shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Connection close code: the hub is at its connection limit; try later,
/// or another hub.
pub const CLOSE_BUSY: u32 = 2;
/// Connection close code: another hub process holds this node's chain
/// (the node is connected to it, or was until moments ago); try another
/// hub, or this one later.
pub const CLOSE_HELD_ELSEWHERE: u32 = 3;
