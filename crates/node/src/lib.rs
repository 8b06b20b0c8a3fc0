//! limiquantix-node: the storage daemon that runs on every hypervisor. It
//! serves NodeStorage over gRPC (with reflection and the standard health
//! service) on top of the storage engine's StorageManager.

pub mod config;
pub mod convert;
pub mod registration;
#[cfg(feature = "libvirt")]
pub mod libvirt;
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<NodeStorageServer<NodeService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(NodeStorageServer::new(NodeService::new(manager, hypervisor)))
        // No Nagle: a streamed reply (headers, event, trailers) would otherwise
        // wait for the client's delayed ACK, 40 ms per call.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await?;
    Ok(())
}

/// A node daemon running inside this process (tests, benchmarks, and the
/// control plane's all-in-one dev mode).
pub struct RunningNode {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    registration: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Opens the node state and serves on `config.listen` (port 0 picks a free one).
    pub async fn start(config: &NodeConfig) -> anyhow::Result<Self> {
        let manager = Arc::new(
            StorageManager::open(config.engine())
                .await
                .with_context(|| format!("cannot open the node state in {}", config.state_dir.display()))?,
        );
        config::check_plaintext_listen("limiquantix-node", config.listen, config.insecure)?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let hypervisor = service::Hypervisor::from_config(config);
        let registration = match &config.control_plane {
            Some(cp) => {
                let id = registration::node_id(&config.state_dir)?;
                let address = config.advertise_address.clone().unwrap_or_else(|| format!("http://{addr}"));
                let info = service::node_info(&manager);
                let timeout = Duration::from_secs(config.control_plane_timeout_secs.max(1));
                Some(tokio::spawn(registration::run(cp.clone(), id, address, info, timeout)))
            }
            None => None,
        };
        let task = tokio::spawn(serve(manager, hypervisor, listener, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop: Some(stop), task, registration })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
