//! The control plane's TLS material: the cluster CA (made on first start,
//! or the operator's), and this replica's certificate, issued by the CA at
//! every start for `control.limiquantix` and the names it is reached by.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::ca::ClusterCa;

use crate::config::ControlConfig;
use crate::private_files;

pub struct ControlPki {
    pub ca: ClusterCa,
    /// The API listener's certificate followed by the CA (joining nodes
    /// find the CA in the handshake and check it against their token).
    server_chain_pem: String,
    server_key_pem: String,
    /// What this replica presents when it calls nodes.
    client: limiquantix_identity::ca::IssuedCert,
}

impl ControlPki {
    pub fn load_or_create(config: &ControlConfig) -> anyhow::Result<Self> {
        let ca = match (&config.tls.ca_cert, &config.tls.ca_key) {
            (Some(cert), Some(key)) => load_ca(cert, key)?,
            _ => load_or_make_ca(&config.pki_dir())?,
        };
        let client = ca.issue(&PeerIdentity::Control, &[])?;
        let (server_chain_pem, server_key_pem) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
                let key_pem = private_files::read(key, "the control plane's TLS key")?
                    .with_context(|| format!("{} does not exist", key.display()))?;
                (format!("{cert_pem}\n{}", ca.cert_pem()), key_pem)
            }
            _ => {
                let mut names = config.tls.names.clone();
                names.extend(["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]);
                if !config.listen.ip().is_unspecified() {
                    names.push(config.listen.ip().to_string());
                }
                names.sort();
                names.dedup();
                let issued = ca.issue(&PeerIdentity::Control, &names)?;
                (format!("{}{}", issued.cert_pem, ca.cert_pem()), issued.key_pem)
            }
        };
        Ok(Self { ca, server_chain_pem, server_key_pem, client })
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    pub fn listener_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        limiquantix_identity::tls::server_optional_client_certs(&self.server_chain_pem, &self.server_key_pem, self.ca_pem())
    }

    /// TLS to node `node_id`: only its own certificate is accepted, and this
    /// replica shows its control-plane certificate.
    pub fn node_client(&self, node_id: &str) -> tonic::transport::ClientTlsConfig {
        limiquantix_identity::tls::client(
            self.ca_pem(),
            Some((&self.client.cert_pem, &self.client.key_pem)),
            &PeerIdentity::Node(node_id.to_owned()).dns_name(),
        )
    }
}

fn load_ca(cert: &Path, key: &Path) -> anyhow::Result<ClusterCa> {
    let cert_pem = std::fs::read_to_string(cert).with_context(|| format!("cannot read the CA certificate {}", cert.display()))?;
    let key_pem =
        private_files::read(key, "the cluster CA key")?.with_context(|| format!("the CA key {} does not exist", key.display()))?;
    ClusterCa::from_pem(&cert_pem, &key_pem).with_context(|| format!("{} and {}", cert.display(), key.display()))
}

/// The CA in `dir` (ca.crt, ca.key), made there if there is none.
fn load_or_make_ca(dir: &Path) -> anyhow::Result<ClusterCa> {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if key.exists() {
        return load_ca(&cert, &key);
    }
    // A certificate without its key is what a crash between the two writes
    // leaves: useless, and in the way.
    match std::fs::remove_file(&cert) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("cannot remove {}", cert.display())),
        _ => {}
    }
    let (ca, key_pem) = ClusterCa::generate()?;
    private_files::create(&cert, ca.cert_pem().as_bytes())?;
    if !private_files::create(&key, key_pem.as_bytes())? {
        // Another replica made the CA at the same moment: use theirs.
        return load_ca(&cert, &key);
    }
    tracing::info!(dir = %dir.display(), sha256 = %ca.sha256(), "created the cluster CA; give every control-plane replica a copy of ca.crt and ca.key");
    Ok(ca)
}
