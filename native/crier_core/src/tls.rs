//! TLS settings: a certificate chain and its key (PEM), and the ALPN protocols offered, turned
//! into a rustls server configuration once, when the server starts.
//!
//! Everything that can be wrong with a certificate or a key is found here, before the server
//! binds, and reported as a [`TlsError`] that names the part at fault: a server never starts
//! with a configuration that fails its first handshake.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// An application protocol offered through ALPN (RFC 7301), in the server's order of
/// preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 (`h2`, RFC 9113 section 3.2).
    H2,
    /// HTTP/1.1 (`http/1.1`).
    Http11,
}

impl Alpn {
    /// The protocol's ALPN identifier, as it goes on the wire.
    pub fn id(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }

    /// The protocol a client chose, from its ALPN identifier.
    pub fn from_id(id: &[u8]) -> Option<Alpn> {
        match id {
            b"h2" => Some(Alpn::H2),
            b"http/1.1" => Some(Alpn::Http11),
            _ => None,
        }
    }
}

/// What a connection's TLS handshake agreed, as `Plug.Conn.get_ssl_data/1` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The protocol ALPN chose, if the client offered one the server has.
    pub alpn: Option<Alpn>,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
}

impl TlsInfo {
    /// Reads what `session`'s finished handshake agreed.
    pub fn of(session: &rustls::ServerConnection) -> Self {
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLSv1.3",
        };
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .unwrap_or("unknown")
            .to_string();
        TlsInfo {
            version,
            cipher,
            alpn: session.alpn_protocol().and_then(Alpn::from_id),
            sni: session.server_name().map(str::to_string),
        }
    }
}

/// The ALPN protocols offered when none are configured: HTTP/2 first, as browsers only speak
/// it over TLS, then HTTP/1.1 for clients without it.
pub const DEFAULT_ALPN: [Alpn; 2] = [Alpn::H2, Alpn::Http11];

/// Why a certificate or key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The certificate PEM holds no `CERTIFICATE` block.
    NoCertificate,
    /// The certificate PEM is malformed.
    BadCertificate(String),
    /// The key PEM holds no private key block.
    NoKey,
    /// The key is malformed or of a kind the crypto provider cannot sign with.
    BadKey(String),
    /// The key and the certificate do not belong together, or rustls refused the pair.
    Rejected(String),
    /// No ALPN protocol was offered.
    NoProtocols,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::NoCertificate => f.write_str("the certificate PEM holds no CERTIFICATE"),
            TlsError::BadCertificate(why) => write!(f, "the certificate PEM is malformed: {why}"),
            TlsError::NoKey => f.write_str("the key PEM holds no private key"),
            TlsError::BadKey(why) => write!(f, "the private key cannot be used: {why}"),
            TlsError::Rejected(why) => write!(f, "the certificate and key were refused: {why}"),
            TlsError::NoProtocols => f.write_str("at least one ALPN protocol must be offered"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Builds the rustls configuration of a server from a PEM certificate chain (end-entity
/// certificate first), its PEM private key (PKCS#8, PKCS#1 or SEC1) and the ALPN protocols
/// to offer, in order of preference.
///
/// # Errors
///
/// A [`TlsError`] naming what is wrong: no or malformed certificate, no or malformed key, a
/// key that does not match the certificate, or no protocol.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    alpn: &[Alpn],
) -> Result<Arc<ServerConfig>, TlsError> {
    if alpn.is_empty() {
        return Err(TlsError::NoProtocols);
    }
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        other => TlsError::BadKey(other.to_string()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Rejected(e.to_string()),
            other => TlsError::BadKey(other.to_string()),
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.id().to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_certificate_and_key_build_a_config_offering_the_protocols_in_order() {
        let (cert, key) = self_signed();
        let config = server_config(cert.as_bytes(), key.as_bytes(), &DEFAULT_ALPN).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let error = server_config(cert.as_bytes(), other_key.as_bytes(), &DEFAULT_ALPN);
        assert!(matches!(error, Err(TlsError::Rejected(_))), "got {error:?}");
    }

    #[test]
    fn missing_and_malformed_parts_are_named() {
        let (cert, key) = self_signed();
        let check = |cert: &str, key: &str, alpn: &[Alpn]| {
            server_config(cert.as_bytes(), key.as_bytes(), alpn).unwrap_err()
        };
        assert_eq!(check("", &key, &DEFAULT_ALPN), TlsError::NoCertificate);
        assert_eq!(
            check("not pem at all", &key, &DEFAULT_ALPN),
            TlsError::NoCertificate
        );
        assert_eq!(check(&cert, "", &DEFAULT_ALPN), TlsError::NoKey);
        assert_eq!(check(&cert, &cert, &DEFAULT_ALPN), TlsError::NoKey);
        assert_eq!(check(&cert, &key, &[]), TlsError::NoProtocols);
        let truncated = cert.replace("-----END CERTIFICATE-----", "");
        assert!(matches!(
            check(&truncated, &key, &DEFAULT_ALPN),
            TlsError::BadCertificate(_)
        ));
        let garbled_key = key.replacen("MI", "!!", 1);
        assert!(matches!(
            check(&cert, &garbled_key, &DEFAULT_ALPN),
            TlsError::BadKey(_)
        ));
    }

    #[test]
    fn alpn_ids_round_trip() {
        for protocol in DEFAULT_ALPN {
            assert_eq!(Alpn::from_id(protocol.id()), Some(protocol));
        }
        assert_eq!(Alpn::from_id(b"spdy/3"), None);
    }
}
