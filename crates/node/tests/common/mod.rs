//! An in-process node daemon on 127.0.0.1 (free port) over temp dirs, and a
//! gRPC client for it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use limiquantix_node::{NodeConfig, RunningNode};
use tonic::transport::Channel;

pub struct TestNode {
    pub root: PathBuf,
    pub addr: std::net::SocketAddr,
    pub client: NodeStorageClient<Channel>,
    node: RunningNode,
}

impl TestNode {
    /// Starts a node whose state, pools and images live under `root`.
    pub async fn start(root: &Path) -> Self {
        Self::start_with(root, |_| {}).await
    }

    /// As [`TestNode::start`], with the config adjusted by `adjust`.
    pub async fn start_with(root: &Path, adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        let mut cfg = NodeConfig::default().without_tls().with_data_dir(root);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut cfg);
        cfg.create_dirs().unwrap();
        let node = RunningNode::start(&cfg).await.unwrap();
        let client = NodeStorageClient::connect(node.url()).await.unwrap();
        Self { root: root.to_owned(), addr: node.addr, client, node }
    }

    pub async fn stop(self) {
        self.node.stop().await.unwrap();
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
) -> (Vec<pb::Progress>, Result<pb::VolumeInfo, tonic::Status>) {
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
