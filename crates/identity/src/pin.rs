//! kubeadm-style discovery: a joining node knows only the SHA-256 of the
//! cluster CA (from its join token). It takes the CA from the control
//! plane's TLS handshake, checks it against that hash and that it signed
//! the server's certificate, and only then trusts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls::provider;

#[derive(Debug)]
pub enum PinError {
    /// No TLS handshake happened (down, refused, timed out): worth retrying.
    Unreachable(anyhow::Error),
    /// The server is not the pinned cluster's: never retried.
    Mismatch(anyhow::Error),
}

/// Connects to `host_port`, and returns the CA certificate (PEM) whose
/// SHA-256 is `ca_sha256`, provided it is in the chain the server presents
/// and the server's certificate for `server_name` verifies against it.
pub async fn fetch_pinned_ca(host_port: &str, server_name: &str, ca_sha256: &str, timeout: Duration) -> Result<String, PinError> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| PinError::Mismatch(anyhow::anyhow!("invalid server name: {e}")))?;
    let chain = handshake_chain(host_port, name, timeout).await.map_err(PinError::Unreachable)?;
    check_pinned(&chain, host_port, server_name, ca_sha256).map_err(PinError::Mismatch)
}

/// The certificate chain the server at `host_port` presents.
async fn handshake_chain(host_port: &str, name: ServerName<'static>, timeout: Duration) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let seen = Arc::new(Recorder { provider: provider(), chain: Mutex::new(Vec::new()) });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(timeout, async {
        let tcp = tokio::net::TcpStream::connect(host_port).await?;
        connector.connect(name, tcp).await
    })
    .await
    .with_context(|| format!("{host_port} did not complete a TLS handshake within {} s", timeout.as_secs()))?
    .with_context(|| format!("TLS handshake with {host_port}"))?;
    let chain = seen.chain.lock().expect("chain lock").clone();
    Ok(chain)
}

fn check_pinned(chain: &[CertificateDer<'static>], host_port: &str, server_name: &str, ca_sha256: &str) -> anyhow::Result<String> {
    if chain.is_empty() {
        bail!("{host_port} presented no certificate");
    }
    let Some(ca) = chain.iter().skip(1).find(|c| crate::sha256_hex(c).eq_ignore_ascii_case(ca_sha256)) else {
        bail!(
            "the control plane at {host_port} does not present the CA this join token was made for (sha256 {ca_sha256}): \
             this is not the expected control plane, or the token is from another cluster"
        );
    };
    // The pinned CA must have signed the server's certificate for this name.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &ServerName::try_from(server_name.to_owned())?, &[], UnixTime::now())
        .with_context(|| format!("the control plane's certificate is not signed by the pinned CA for {server_name}"))?;
    Ok(pem("CERTIFICATE", ca))
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Accepts any chain during the handshake and keeps it; the checks that
/// matter run after, against the pinned hash.
#[derive(Debug)]
struct Recorder {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().expect("chain lock") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
