//! An in-process node daemon on 127.0.0.1 (free port) over temp dirs, and a
//! gRPC client for it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use limiquantix_node::NodeConfig;
use limiquantix_storage::StorageManager;
use tonic::transport::Channel;

pub struct TestNode {
    pub root: PathBuf,
    pub addr: SocketAddr,
    pub client: NodeStorageClient<Channel>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn node_config(root: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.state_dir = root.join("state");
    cfg.local_pool_roots = vec![root.join("pools")];
    cfg.import_dirs = vec![root.join("images")];
    cfg
}

impl TestNode {
    /// Starts a node whose pools and images live under `root`.
    pub async fn start(root: &Path) -> Self {
        for d in ["pools", "images"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let cfg = node_config(root);
        let manager = Arc::new(StorageManager::open(cfg.engine()).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(limiquantix_node::serve(manager, listener, async {
            let _ = rx.await;
        }));
        let client = NodeStorageClient::connect(format!("http://{addr}")).await.unwrap();
        Self { root: root.to_owned(), addr, client, shutdown: Some(tx), server: Some(server) }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn init_local_pool(&mut self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig {
                path: self.root.join("pools").join(name).display().to_string(),
            })),
        };
        self.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: id.clone(), config: Some(config) }).await.unwrap();
        id
    }
}

/// Drains a volume operation stream: (progress events, final result).
pub async fn finish(
    resp: Result<tonic::Response<tonic::Streaming<pb::VolumeOperationEvent>>, tonic::Status>,
) -> (Vec<pb::Progress>, Result<pb::Volume, tonic::Status>) {
    let mut stream = match resp {
        Ok(r) => r.into_inner(),
        Err(s) => return (vec![], Err(s)),
    };
    let mut progress = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(pb::VolumeOperationEvent { event: Some(pb::volume_operation_event::Event::Progress(p)) })) => progress.push(p),
            Ok(Some(pb::VolumeOperationEvent { event: Some(pb::volume_operation_event::Event::Volume(v)) })) => {
                return (progress, Ok(v));
            }
            Ok(Some(_)) => {}
            Ok(None) => return (progress, Err(tonic::Status::internal("stream ended without a volume"))),
            Err(s) => return (progress, Err(s)),
        }
    }
}

pub fn spec(size_bytes: u64) -> Option<pb::VolumeSpec> {
    Some(pb::VolumeSpec { size_bytes, format: 0, provisioning: 0 })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
