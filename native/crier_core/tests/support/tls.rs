//! TLS for the tests: a self-signed certificate made in the test, a server config from it,
//! and rustls client configs that trust it.

use std::sync::Arc;

use crier_core::config::ServerConfig;
use crier_core::tls::{self, Alpn};
use rustls::pki_types::CertificateDer;

/// A self-signed certificate for `localhost`, as PEM and DER, and its key.
pub struct Cert {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub key: String,
}

impl Cert {
    /// Makes a new certificate and key.
    pub fn new() -> Self {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        Cert {
            pem: cert.pem(),
            der: cert.der().clone(),
            key: signing_key.serialize_pem(),
        }
    }

    /// `config` serving TLS with this certificate, offering `alpn`.
    pub fn server_config(&self, alpn: &[Alpn], config: ServerConfig) -> ServerConfig {
        let tls = tls::server_config(self.pem.as_bytes(), self.key.as_bytes(), alpn).unwrap();
        ServerConfig {
            tls: Some(tls),
            ..config
        }
    }

    /// A rustls client config that trusts this certificate and offers `alpn`.
    pub fn client_config(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }
}
