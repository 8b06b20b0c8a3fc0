//! limiquantix-node: the storage daemon that runs on every hypervisor. It
//! serves NodeStorage over gRPC (with reflection and the standard health
//! service) on top of the storage engine's StorageManager.

pub mod config;
pub mod convert;
#[cfg(feature = "libvirt")]
pub mod domain_snapshot;
pub mod enrolment;
#[cfg(feature = "libvirt")]
pub mod guest_agent;
pub mod registration;
#[cfg(feature = "libvirt")]
pub mod block_job;
#[cfg(feature = "libvirt")]
pub mod libvirt;
#[cfg(feature = "libvirt")]
pub mod qmp;
pub mod service;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use limiquantix_api::v1::FILE_DESCRIPTOR_SET;
use limiquantix_api::v1::node_storage_server::NodeStorageServer;
use limiquantix_storage::StorageManager;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use config::NodeConfig;
pub use service::NodeService;

/// Logs to stderr (colours only on a terminal); RUST_LOG filters, info by default.
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Completes on SIGTERM or SIGINT: the daemons' cue to stop gracefully.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight calls");
}

/// Serves the node API on `listener` until `shutdown` completes; in-flight
/// calls are allowed to finish.
pub async fn serve(
    manager: Arc<StorageManager>,
    hypervisor: service::Hypervisor,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<NodeStorageServer<NodeService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = NodeStorageServer::new(NodeService::new(manager, hypervisor));
    let mut builder = tonic::transport::Server::builder();
    let secured = tls.is_some();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder.add_service(health).add_service(reflection);
    let router = if secured {
        router.add_service(tonic::service::interceptor::InterceptedService::new(service, only_control_plane_or_admin))
    } else {
        router.add_service(service)
    };
    router
        // No Nagle: a streamed reply (headers, event, trailers) would otherwise
        // wait for the client's delayed ACK, 40 ms per call.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await?;
    Ok(())
}

/// A node obeys the control plane, and admins calling it directly: not other
/// nodes, nor anyone else the CA knows.
fn only_control_plane_or_admin(req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    use limiquantix_identity::PeerIdentity;
    let who = req.peer_certs().and_then(|certs| certs.first().and_then(|der| limiquantix_identity::peer::identity(der)));
    match who {
        Some(PeerIdentity::Control | PeerIdentity::Admin) => Ok(req),
        Some(other) => Err(tonic::Status::permission_denied(format!("{other} may not call a node daemon"))),
        None => Err(tonic::Status::unauthenticated("a node daemon answers only the control plane and admins (client certificate)")),
    }
}

/// A node daemon running inside this process (tests, benchmarks, and the
/// control plane's all-in-one dev mode).
pub struct RunningNode {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    registration: Option<tokio::task::JoinHandle<()>>,
    tls: bool,
}

/// The node's certificate with TLS on: the one it enrolled with, or one it
/// enrols for now with its join token. None with TLS off (loopback only).
async fn node_tls(config: &NodeConfig) -> anyhow::Result<Option<enrolment::NodeTls>> {
    if !config.tls.enabled {
        config::check_plaintext_listen("limiquantix-node", config.listen, config.insecure)?;
        return Ok(None);
    }
    let name = &config.tls.control_plane_name;
    if let Some(tls) = enrolment::load(&config.state_dir, name)? {
        return Ok(Some(tls));
    }
    let (Some(cp), Some(token)) = (&config.control_plane, &config.join_token) else {
        anyhow::bail!(
            "limiquantix-node has no certificate yet: give it the control plane (https://...) and a join token \
             (`lqctl node join-token create`) to enrol, or turn TLS off ([tls] enabled = false) for a node on loopback"
        );
    };
    let id = registration::node_id(&config.state_dir)?;
    let timeout = Duration::from_secs(config.control_plane_timeout_secs.max(1));
    Ok(Some(enrolment::enrol(cp, token, &id, &config.state_dir, name, timeout).await?))
}

impl RunningNode {
    /// Opens the node state and serves on `config.listen` (port 0 picks a free one).
    pub async fn start(config: &NodeConfig) -> anyhow::Result<Self> {
        let manager = Arc::new(
            StorageManager::open(config.engine())
                .await
                .with_context(|| format!("cannot open the node state in {}", config.state_dir.display()))?,
        );
        let tls = node_tls(config).await?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let hypervisor = service::Hypervisor::from_config(config);
        let registration = match &config.control_plane {
            Some(cp) => {
                let id = registration::node_id(&config.state_dir)?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                let address = config.advertise_address.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
                let info = service::node_info(&manager);
                let timeout = Duration::from_secs(config.control_plane_timeout_secs.max(1));
                let client_tls = tls.as_ref().map(enrolment::NodeTls::client);
                Some(tokio::spawn(registration::run(cp.clone(), id, address, info, timeout, client_tls)))
            }
            None => None,
        };
        let server_tls = tls.as_ref().map(enrolment::NodeTls::server);
        let task = tokio::spawn(serve(manager, hypervisor, listener, server_tls, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop: Some(stop), task, registration, tls: tls.is_some() })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until `signal` completes, then stops (see [`RunningNode::stop_within`]).
    pub async fn serve_until(mut self, signal: impl Future<Output = ()>, grace: Duration) -> anyhow::Result<()> {
        tokio::select! {
            result = &mut self.task => return result.context("node server task")?,
            _ = signal => {}
        }
        self.stop_within(grace).await
    }

    /// Stops accepting calls and gives running ones `grace` to finish; after
    /// that the server is dropped (an idle client cannot hold the daemon up).
    pub async fn stop_within(mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(r) = self.registration.take() {
            r.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(result) => result.context("node server task")?,
            Err(_) => {
                tracing::warn!(?grace, "calls still running after the grace period; stopping anyway");
                self.task.abort();
                Ok(())
            }
        }
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_within(Duration::from_secs(3600)).await
    }
}
