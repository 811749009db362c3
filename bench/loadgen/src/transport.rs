//! The client's secure transports: TLS (rustls through tokio-rustls) that accepts the one
//! certificate the benchmark made for this run, and HTTP/2 (the `h2` crate) over it.
//!
//! Plain TCP needs nothing here. Every TLS connection makes a full handshake (session
//! resumption is off), so a churn over TLS measures what a new client costs the server.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// ALPN ids the client offers: exactly one, so the server's choice is the scenario's.
pub const ALPN_H1: &[u8] = b"http/1.1";
pub const ALPN_H2: &[u8] = b"h2";

/// Accepts exactly the certificate it was given (byte for byte) and checks the handshake's
/// signatures against it: the benchmark's self-signed certificate needs no chain, and a
/// different server on the port fails the handshake rather than being measured.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS client for one certificate and one ALPN protocol.
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    alpn: &'static [u8],
}

impl Tls {
    /// Reads the PEM certificate at `cert` (the server's own) and offers `alpn` alone.
    pub fn new(cert: &Path, alpn: &'static [u8]) -> Result<Tls, String> {
        let cert = CertificateDer::from_pem_file(cert)
            .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { cert, algs }))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::try_from("localhost").expect("a valid name"),
            alpn,
        })
    }

    /// Runs the handshake on a connected socket and checks that the server chose our ALPN.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| format!("tls: {}", e.kind()))?;
        if tls.get_ref().1.alpn_protocol() != Some(self.alpn) {
            return Err("tls: server chose another protocol".into());
        }
        Ok(tls)
    }
}

/// Starts HTTP/2 on a TLS stream and drives the connection on a task of its own, which
/// ends once every stream and the returned handle are dropped.
pub async fn h2_handshake(
    tls: TlsStream<TcpStream>,
) -> Result<h2::client::SendRequest<Bytes>, String> {
    // Windows like a browser's (Chrome: 15 MB a connection, 6 MB a stream), so flow
    // control never holds an event back: the client releases what it reads at once.
    let (send, connection) = h2::client::Builder::new()
        .initial_connection_window_size(16 * 1024 * 1024)
        .initial_window_size(1024 * 1024)
        .handshake(tls)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// The GET of one SSE stream on HTTP/2.
pub fn h2_get(path: &str) -> Result<http::Request<()>, String> {
    http::Request::get(format!("https://localhost{path}"))
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(())
        .map_err(|e| format!("request: {e}"))
}
