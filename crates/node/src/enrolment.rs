//! The node's certificate: received once, by enrolling with a join token,
//! and kept in `<state dir>/tls` (node.key 0600, node.crt, ca.crt). The key
//! is made here and never leaves the node; the token's CA hash tells the
//! node which control plane to trust before it sends anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::access_service_client::AccessServiceClient;
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::tokens::JoinToken;
use limiquantix_storage::fsutil::{atomic_write, create_private_dir};

/// How long enrolment keeps trying a control plane that cannot be reached.
const ENROL_PATIENCE: Duration = Duration::from_secs(60);

pub struct NodeTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub control_plane_name: String,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").field("control_plane_name", &self.control_plane_name).finish_non_exhaustive()
    }
}

impl NodeTls {
    /// For calls to the control plane.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        limiquantix_identity::tls::client(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)), &self.control_plane_name)
    }

    /// For this node's listener: callers need a certificate from the CA.
    pub fn server(&self) -> tonic::transport::ServerTlsConfig {
        limiquantix_identity::tls::server_requiring_client_certs(&self.cert_pem, &self.key_pem, &self.ca_pem)
    }
}

fn tls_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tls")
}

/// The certificate the node enrolled with, if it has one.
pub fn load(state_dir: &Path, control_plane_name: &str) -> anyhow::Result<Option<NodeTls>> {
    let dir = tls_dir(state_dir);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).with_context(|| format!("cannot read {}", dir.join(name).display()));
    if !dir.join("node.crt").exists() {
        return Ok(None);
    }
    Ok(Some(NodeTls {
        ca_pem: read("ca.crt")?,
        cert_pem: read("node.crt")?,
        key_pem: read("node.key")?,
        control_plane_name: control_plane_name.to_owned(),
    }))
}

/// Enrols node `node_id` with `token` at `control_plane` (an https URL) and
/// keeps the certificate. Fails at once on a refused token; retries a
/// control plane that cannot be reached for a minute.
pub async fn enrol(
    control_plane: &str,
    token: &str,
    node_id: &str,
    state_dir: &Path,
    control_plane_name: &str,
    timeout: Duration,
) -> anyhow::Result<NodeTls> {
    let token = JoinToken::parse(token)?;
    let host_port = control_plane
        .strip_prefix("https://")
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .filter(|hp| !hp.is_empty())
        .with_context(|| format!("the control plane address {control_plane} must be an https:// URL to enrol"))?;
    let dir = tls_dir(state_dir);
    let key_pem = enrolment_key(&dir)?;
    let deadline = tokio::time::Instant::now() + ENROL_PATIENCE;
    loop {
        match try_enrol(control_plane, host_port, &token, node_id, &key_pem, control_plane_name, timeout).await {
            Ok((ca_pem, cert_pem)) => {
                atomic_write(&dir.join("ca.crt"), ca_pem.as_bytes(), 0o644)?;
                // Last: its presence says enrolment is complete.
                atomic_write(&dir.join("node.crt"), cert_pem.as_bytes(), 0o644)?;
                tracing::info!(%control_plane, node = %node_id, "enrolled: the node has its certificate");
                return Ok(NodeTls { ca_pem, cert_pem, key_pem, control_plane_name: control_plane_name.to_owned() });
            }
            Err(Attempt::Refused(e)) => return Err(e.context(format!("enrolment with {control_plane} refused"))),
            Err(Attempt::Unreachable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%control_plane, error = format!("{e:#}"), "cannot enrol yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(Attempt::Unreachable(e)) => return Err(e.context(format!("cannot reach {control_plane} to enrol"))),
        }
    }
}

/// The key to enrol with: made and kept (0600) before anything is sent, so
/// a node killed before it kept its certificate asks again with the same
/// key, and the control plane gives the same certificate again.
fn enrolment_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node.key");
    match std::fs::read_to_string(&path) {
        Ok(key) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir)?;
            let key_pem = limiquantix_identity::ca::new_key_pem()?;
            atomic_write(&path, key_pem.as_bytes(), 0o600)?;
            Ok(key_pem)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

enum Attempt {
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
}

async fn try_enrol(
    control_plane: &str,
    host_port: &str,
    token: &JoinToken,
    node_id: &str,
    key_pem: &str,
    control_plane_name: &str,
    timeout: Duration,
) -> Result<(String, String), Attempt> {
    let unreachable = |e: anyhow::Error| Attempt::Unreachable(e);
    let refused = |e: anyhow::Error| Attempt::Refused(e);
    // A wrong CA is a refusal, not a network problem: never retried.
    use limiquantix_identity::pin::{PinError, fetch_pinned_ca};
    let ca_pem = match fetch_pinned_ca(host_port, control_plane_name, &token.ca_sha256, timeout).await {
        Ok(ca) => ca,
        Err(PinError::Unreachable(e)) => return Err(unreachable(e)),
        Err(PinError::Mismatch(e)) => return Err(refused(e)),
    };
    let channel = tonic::transport::Endpoint::from_shared(control_plane.to_owned())
        .map_err(|e| refused(e.into()))?
        .tls_config(limiquantix_identity::tls::client(&ca_pem, None, control_plane_name))
        .map_err(|e| refused(e.into()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| unreachable(e.into()))?;
    let who = PeerIdentity::Node(node_id.to_owned());
    let csr_pem = limiquantix_identity::ca::request_for_key(&who, key_pem).map_err(refused)?;
    let req = pb::EnrollNodeRequest { token: token.to_string(), node_id: node_id.to_owned(), csr_pem };
    let answer = match AccessServiceClient::new(channel).enroll_node(req).await {
        Ok(a) => a.into_inner(),
        Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
            return Err(unreachable(anyhow::anyhow!("{}", s.message())));
        }
        Err(s) => return Err(refused(anyhow::anyhow!("{:?}: {}", s.code(), s.message()))),
    };
    let der = limiquantix_identity::ca::first_cert_der(&answer.certificate_pem).map_err(refused)?;
    if limiquantix_identity::peer::identity(&der) != Some(who) {
        return Err(refused(anyhow::anyhow!("the control plane returned a certificate for another identity")));
    }
    let returned_ca = limiquantix_identity::ca::first_cert_der(&answer.ca_certificate_pem).map_err(refused)?;
    if limiquantix_identity::sha256_hex(&returned_ca) != token.ca_sha256 {
        return Err(refused(anyhow::anyhow!("the control plane returned another CA than the one its join token pins")));
    }
    Ok((ca_pem, answer.certificate_pem))
}
