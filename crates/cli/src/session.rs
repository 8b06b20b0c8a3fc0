//! Where lqctl connects and as whom: the server, the cluster CA and the
//! bearer token from the credentials file (see `Credentials::find`), with
//! `--server` / $LQ_SERVER taking precedence for the address.

use std::path::{Path, PathBuf};

use limiquantix_identity::PeerIdentity;
use limiquantix_identity::credentials::Credentials;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Where a control plane listens when nothing says otherwise (`--dev`).
const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// A channel to the control plane that sends the caller's token.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub struct Session {
    credentials: Option<(PathBuf, Credentials)>,
}

impl Session {
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self { credentials: Credentials::find(explicit)? })
    }

    /// A plaintext call to a TLS listener ends in a bare "operation was
    /// canceled": say what is likely wrong.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(status) = e.downcast_ref::<Status>() else { return e };
        let garbled = matches!(status.code(), tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Internal)
            && ["canceled", "h2 protocol", "connection", "frame"].iter().any(|w| status.message().contains(w));
        if !garbled || self.credentials.is_some() {
            return e;
        }
        Status::unavailable(format!(
            "{}: the server did not speak plaintext gRPC; it probably uses TLS, and lqctl found no credentials file \
             (--credentials, ${}, {}, ./{})",
            status.message(),
            limiquantix_identity::credentials::ENV,
            limiquantix_identity::credentials::user_config_path().map(|p| p.display().to_string()).unwrap_or_default(),
            limiquantix_identity::credentials::DEV_PATH
        ))
        .into()
    }

    fn creds(&self) -> Option<&Credentials> {
        self.credentials.as_ref().map(|(_, c)| c)
    }

    /// The control plane's address: `server` (flag or $LQ_SERVER), else the
    /// credentials file's, else the local default.
    pub fn server(&self, server: Option<&str>) -> String {
        server.map(str::to_owned).or_else(|| self.creds().map(|c| c.server.clone())).unwrap_or_else(|| DEFAULT_SERVER.to_owned())
    }

    pub async fn control_plane(&self, server: Option<&str>) -> Result<Conn, Status> {
        let addr = self.server(server);
        let creds = self.creds();
        let name = creds
            .map(|c| c.server_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| limiquantix_identity::CONTROL_NAME.to_owned());
        let channel = self.connect(&addr, "the control plane", " (is limiquantix-controlplane running?)", None, &name).await?;
        // The token goes only where the credentials say, or to a server that
        // proves it is the cluster's (TLS with the cluster CA): never in
        // clear text to some other address given on the command line.
        let trusted = addr.starts_with("https://") || creds.is_some_and(|c| c.server == addr);
        let token = match creds.filter(|_| trusted).map(|c| c.token.trim()).filter(|t| !t.is_empty()) {
            Some(t) => Some(
                format!("Bearer {t}").parse().map_err(|_| Status::invalid_argument("the credentials file's token is not valid text"))?,
            ),
            None => None,
        };
        Ok(InterceptedService::new(channel, Bearer(token)))
    }

    /// A channel to the node daemon at `addr`. Over https, lqctl shows the
    /// admin certificate and checks the node's certificate names `node_id`.
    pub async fn node(&self, addr: &str, node_id: Option<&str>) -> Result<Channel, Status> {
        let name = match node_id {
            Some(id) => PeerIdentity::Node(id.to_owned()).dns_name(),
            None if addr.starts_with("https://") => {
                return Err(Status::invalid_argument("an https node address needs --node-id (see `lqctl node list`)"));
            }
            None => String::new(),
        };
        let identity = self.creds().filter(|c| !c.client_certificate.is_empty()).map(|c| (c.client_certificate.as_str(), c.client_key.as_str()));
        self.connect(addr, "the node daemon", "", identity, &name).await
    }

    async fn connect(&self, addr: &str, server: &str, hint: &str, identity: Option<(&str, &str)>, name: &str) -> Result<Channel, Status> {
        let mut endpoint = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| Status::invalid_argument(format!("invalid address {addr} for {server}: {e}")))?;
        if addr.starts_with("https://") {
            let ca = self.creds().map(|c| c.ca_certificate.as_str()).filter(|ca| !ca.is_empty()).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "{addr} uses TLS and no credentials file gives the cluster CA: pass --credentials FILE or set ${}",
                    limiquantix_identity::credentials::ENV
                ))
            })?;
            endpoint = endpoint
                .tls_config(limiquantix_identity::tls::client(ca, identity, name))
                .map_err(|e| Status::invalid_argument(format!("TLS settings for {addr}: {:#}", anyhow::Error::new(e))))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach {server} at {addr}{hint}: {:#}", anyhow::Error::new(e))))
    }
}
