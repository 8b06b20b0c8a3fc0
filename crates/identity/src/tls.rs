//! TLS settings from PEM material, for tonic clients and servers and for the
//! control plane's own listener.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client of `server_name` (a cluster identity's name, or the name in an
/// operator's certificate) that trusts only the cluster CA, presenting
/// `identity` (certificate, key) when given.
pub fn client(ca_pem: &str, identity: Option<(&str, &str)>, server_name: &str) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(server_name);
    if let Some((cert, key)) = identity {
        c = c.identity(Identity::from_pem(cert, key));
    }
    c
}

/// A tonic server that accepts only clients with a certificate from the CA.
pub fn server_requiring_client_certs(cert_pem: &str, key_pem: &str, ca_pem: &str) -> ServerTlsConfig {
    ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)).client_ca_root(Certificate::from_pem(ca_pem))
}

/// A rustls server that asks for a client certificate from the CA but also
/// serves clients without one (they authenticate with a bearer token), for
/// HTTP/2 (gRPC) and HTTP/1.1 (metrics, gRPC-Web).
pub fn server_optional_client_certs(cert_chain_pem: &str, key_pem: &str, ca_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the server certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the server key is not a PEM private key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.context("the CA certificate is not PEM")?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate does not match its key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
