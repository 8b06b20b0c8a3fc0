//! limiquantix-node: the storage daemon that runs on every hypervisor. It
//! serves NodeStorage over gRPC (with reflection and the standard health
//! service) on top of the storage engine's StorageManager.

pub mod config;
pub mod convert;
pub mod service;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use limiquantix_api::v1::FILE_DESCRIPTOR_SET;
use limiquantix_api::v1::node_storage_server::NodeStorageServer;
use limiquantix_storage::StorageManager;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use config::NodeConfig;
pub use service::NodeService;

/// Serves the node API on `listener` until `shutdown` completes; in-flight
/// calls are allowed to finish.
pub async fn serve(
    manager: Arc<StorageManager>,
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
        .add_service(NodeStorageServer::new(NodeService::new(manager)))
        // No Nagle: a streamed reply (headers, event, trailers) would otherwise
        // wait for the client's delayed ACK, 40 ms per call.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await?;
    Ok(())
}
