//! rustls and quinn configuration for mutual TLS against the cluster CA.
//!
//! The ring provider is passed explicitly everywhere so that no process-wide default provider has
//! to be installed (and no panic occurs if another crate enables a second provider).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use crate::certs::TlsIdentity;

/// ALPN protocol id; both sides must agree or the handshake fails.
pub const ALPN: &[u8] = b"tinykv/1";

/// Errors building a TLS configuration from certificate material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("CA certificate rejected as trust anchor: {0}")]
    TrustAnchor(rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("certificate or key unusable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration offers no QUIC cipher suite: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Timers and limits applied to every connection of an endpoint.
#[derive(Clone, Debug)]
pub struct ConnectionTuning {
    /// Ping interval; keeps idle links open and detects dead peers.
    pub keep_alive: Duration,
    /// A connection with no traffic (not even keep-alive acks) for this long is considered dead.
    pub idle_timeout: Duration,
    pub max_concurrent_bidi_streams: u32,
    pub max_concurrent_uni_streams: u32,
    /// Per-stream flow-control window; bounds one stream's throughput to window / RTT.
    pub stream_receive_window: u32,
    /// Packets that need an acknowledgement the peer may receive before it must send one
    /// (QUIC's acknowledgement-frequency extension; QUIC's own rule is every second packet).
    /// Requests and answers carry acknowledgements anyway; acknowledging each of them again on
    /// its own costs a datagram, a system call on both sides and a wake-up per request.
    pub ack_eliciting_threshold: u32,
    /// The round-trip time assumed before the first sample: it sets how soon a lost handshake
    /// packet is sent again, and how long a connection still in its handshake lingers when
    /// the endpoint closes (three probe timeouts, about 9× this). RFC 9002's 333 ms suits an
    /// unknown path; a cluster on one network knows better.
    pub initial_rtt: Duration,
}

impl Default for ConnectionTuning {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 256,
            stream_receive_window: 4 * 1024 * 1024,
            ack_eliciting_threshold: 10,
            initial_rtt: Duration::from_millis(333),
        }
    }
}

impl ConnectionTuning {
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut cfg = quinn::TransportConfig::default();
        cfg.keep_alive_interval(Some(self.keep_alive));
        // An idle timeout that does not fit QUIC's varint falls back to the protocol maximum.
        cfg.max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok());
        cfg.max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_concurrent_bidi_streams));
        cfg.max_concurrent_uni_streams(quinn::VarInt::from_u32(self.max_concurrent_uni_streams));
        cfg.stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window));
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(quinn::VarInt::from_u32(self.ack_eliciting_threshold));
        cfg.ack_frequency_config(Some(ack));
        cfg.initial_rtt(self.initial_rtt);
        cfg
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &TlsIdentity) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(identity.ca.clone())
        .map_err(TlsConfigError::TrustAnchor)?;
    Ok(Arc::new(roots))
}

/// Server side: requires a client certificate chaining to the cluster CA.
pub fn server_config(
    identity: &TlsIdentity,
    tuning: &ConnectionTuning,
) -> Result<quinn::ServerConfig, TlsConfigError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider.clone()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    cfg.transport_config(Arc::new(tuning.transport_config()));
    Ok(cfg)
}

/// Client side: verifies the server against the cluster CA and presents our own certificate.
pub fn client_config(
    identity: &TlsIdentity,
    tuning: &ConnectionTuning,
) -> Result<quinn::ClientConfig, TlsConfigError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    cfg.transport_config(Arc::new(tuning.transport_config()));
    Ok(cfg)
}

/// True if a connection error is a TLS alert or a local certificate verification failure, i.e.
/// the peer (or we) refused the other's certificate rather than the network failing.
pub fn is_tls_refusal(err: &quinn::ConnectionError) -> bool {
    match err {
        quinn::ConnectionError::TransportError(e) => is_crypto_code(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => is_crypto_code(close.error_code),
        _ => false,
    }
}

fn is_crypto_code(code: quinn::TransportErrorCode) -> bool {
    // QUIC maps TLS alerts to transport error codes 0x100..=0x1ff (RFC 9001 §4.8).
    let raw = u64::from(code);
    (0x100..=0x1ff).contains(&raw)
}
