//! An in-process node daemon and the gRPC calls the benchmark makes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use limiquantix_node::{NodeConfig, RunningNode};
use limiquantix_storage::VolumeId;
use limiquantix_storage::backends::local::volume_file_name;
use limiquantix_storage::model::VolumeFormat;
use tonic::transport::Channel;

pub struct BenchNode {
    root: PathBuf,
    pub addr: SocketAddr,
    client: NodeStorageClient<Channel>,
    node: Option<RunningNode>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl BenchNode {
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        Self::start_with(root, |_| {}).await
    }

    pub async fn start_with(root: &Path, adjust: impl FnOnce(&mut NodeConfig)) -> anyhow::Result<Self> {
        let mut cfg = NodeConfig::default().without_tls().with_data_dir(root);
        cfg.listen = "127.0.0.1:0".parse()?;
        adjust(&mut cfg);
        cfg.create_dirs()?;
        let node = RunningNode::start(&cfg).await?;
        let client = NodeStorageClient::connect(node.url()).await?;
        Ok(Self { root: root.to_owned(), addr: node.addr, client, node: Some(node) })
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.node.take() {
            Some(node) => node.stop().await,
            None => Ok(()),
        }
    }

    pub async fn init_pool(&mut self, dir_name: &str) -> anyhow::Result<String> {
        let path = self.root.join("pools").join(dir_name).display().to_string();
        self.init_pool_with(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path })).await
    }

    pub async fn init_pool_with(&mut self, backend: pb::pool_config::Backend) -> anyhow::Result<String> {
        let id = new_id();
        let config = pb::PoolConfig { backend: Some(backend) };
        self.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: id.clone(), config: Some(config) }).await?;
        Ok(id)
    }

    /// A new handle on the node's gRPC client.
    pub fn client(&self) -> NodeStorageClient<Channel> {
        self.client.clone()
    }

    /// The volume an operation's stream ends with.
    pub async fn finish(&self, mut stream: tonic::Streaming<pb::VolumeOperationEvent>) -> anyhow::Result<pb::VolumeInfo> {
        while let Some(e) = stream.message().await? {
            if let Some(pb::volume_operation_event::Event::Volume(v)) = e.event {
                return Ok(v);
            }
        }
        bail!("operation ended without a volume")
    }

    pub async fn create(&mut self, pool: &str, size: u64) -> anyhow::Result<pb::VolumeInfo> {
        self.create_as(pool, size, pb::VolumeFormat::Qcow2).await
    }

    pub async fn create_as(&mut self, pool: &str, size: u64, format: pb::VolumeFormat) -> anyhow::Result<pb::VolumeInfo> {
        let req = pb::NodeCreateVolumeRequest {
            pool_id: pool.into(),
            volume_id: new_id(),
            spec: Some(pb::VolumeSpec { size_bytes: size, format: format as i32, provisioning: 0 }),
            source: None,
        };
        let stream = self.client.create_volume(req).await?.into_inner();
        self.finish(stream).await
    }

    async fn clone(&mut self, pool: &str, source: &pb::VolumeInfo, mode: pb::CloneMode) -> anyhow::Result<pb::VolumeInfo> {
        let req = pb::NodeCloneVolumeRequest {
            pool_id: pool.into(),
            source_volume_id: source.volume_id.clone(),
            volume_id: new_id(),
            mode: mode as i32,
            spec: None,
        };
        let stream = self.client.clone_volume(req).await?.into_inner();
        self.finish(stream).await
    }

    pub async fn linked_clone(&mut self, pool: &str, source: &pb::VolumeInfo) -> anyhow::Result<pb::VolumeInfo> {
        self.clone(pool, source, pb::CloneMode::Linked).await
    }

    pub async fn full_clone(&mut self, pool: &str, source: &pb::VolumeInfo) -> anyhow::Result<pb::VolumeInfo> {
        self.clone(pool, source, pb::CloneMode::Full).await
    }

    pub async fn delete(&mut self, pool: &str, volume: &pb::VolumeInfo) -> anyhow::Result<()> {
        let req = pb::NodeDeleteVolumeRequest { pool_id: pool.into(), volume_id: volume.volume_id.clone(), ..Default::default() };
        self.client.delete_volume(req).await?;
        Ok(())
    }

    /// Fills a pool with `count` small qcow2 volumes (copies of one made by
    /// the node, so every file is a real volume); returns their ids.
    pub async fn fill_pool(&mut self, pool: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let template = self.create(pool, 1 << 30).await?;
        let dir = Path::new(&template.location).parent().context("volume path")?.to_owned();
        let mut ids = vec![template.volume_id.clone()];
        for _ in 1..count {
            let id = VolumeId::new_random();
            std::fs::copy(&template.location, dir.join(volume_file_name(id, VolumeFormat::Qcow2)))?;
            ids.push(id.to_string());
        }
        let listed = self.pool_info(pool, true).await?.capacity.context("the pool reports no capacity")?.volume_count;
        if listed != Some(count as u64) {
            bail!("pool holds {listed:?} volumes, expected {count}");
        }
        Ok(ids)
    }

    pub async fn get(&mut self, pool: &str, id: &str) -> anyhow::Result<pb::VolumeInfo> {
        Ok(self.client.get_volume(pb::NodeGetVolumeRequest { pool_id: pool.into(), volume_id: id.into() }).await?.into_inner())
    }

    /// The first page of 100 volumes.
    pub async fn list_first_page(&mut self, pool: &str) -> anyhow::Result<Vec<pb::VolumeInfo>> {
        let req = pb::NodeListVolumesRequest { pool_id: pool.into(), page_size: 100, page_token: String::new() };
        Ok(self.client.list_volumes(req).await?.into_inner().volumes)
    }

    /// The pool's capacity report: what periodic polls ask (O(1)), or with
    /// every volume counted.
    pub async fn pool_info(&mut self, pool: &str, count_volumes: bool) -> anyhow::Result<pb::PoolInfo> {
        let req = pb::GetStoragePoolInfoRequest { pool_id: pool.into(), count_volumes };
        Ok(self.client.get_storage_pool_info(req).await?.into_inner())
    }
}

/// A control plane (embedded redb store) with one node daemon registered to
/// it, in this process: the path users take, `lqctl` through the control plane.
pub struct BenchCluster {
    cp: limiquantix_control::ControlPlane,
    node: RunningNode,
    pub node_id: String,
    credentials: Option<std::path::PathBuf>,
    root: std::path::PathBuf,
}

impl BenchCluster {
    /// With `secure`, the defaults outside --dev: TLS with the cluster CA,
    /// token authentication, and a node enrolled with a join token.
    pub async fn start(root: &Path, secure: bool) -> anyhow::Result<Self> {
        let mut config = limiquantix_control::ControlConfig::default();
        if !secure {
            config = config.without_security();
        }
        config.listen = "127.0.0.1:0".parse()?;
        config.store = limiquantix_control::StoreConfig::Redb { path: root.join("control/state.redb") };
        config.heartbeat_interval_secs = 1;
        let cp = limiquantix_control::ControlPlane::start(&config).await?;
        let mut n = NodeConfig::default().with_data_dir(&root.join("node"));
        if secure {
            let token = limiquantix_control::api::access::create_join_token(&cp.app, std::time::Duration::from_secs(600))
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.status().message()))?;
            n.join_token = Some(token.token);
        } else {
            n = n.without_tls();
        }
        n.listen = "127.0.0.1:0".parse()?;
        n.control_plane = Some(cp.url());
        n.create_dirs()?;
        let node_id = limiquantix_node::registration::node_id(&n.state_dir)?;
        let node = RunningNode::start(&n).await?;
        let credentials = secure.then(|| config.admin_credentials_path());
        Ok(Self { cp, node, node_id, credentials, root: root.to_owned() })
    }

    /// The admin's lqctl credentials file (secure clusters).
    pub fn credentials(&self) -> Option<&Path> {
        self.credentials.as_deref()
    }

    pub fn url(&self) -> String {
        self.cp.url()
    }

    /// The node's data directory (pools/, images/, state/).
    pub fn node_root(&self) -> std::path::PathBuf {
        self.root.join("node")
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.node.stop().await?;
        self.cp.stop_within(std::time::Duration::from_secs(5)).await
    }
}
