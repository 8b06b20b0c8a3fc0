//! A cluster on loopback for control-plane tests: a control plane (in this
//! process, or a child process for crash tests) with its redb store in a temp
//! dir, and a real node daemon registered to it.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_service_client::NodeServiceClient;
use limiquantix_api::v1::storage_pool_service_client::StoragePoolServiceClient;
use limiquantix_api::v1::task_service_client::TaskServiceClient;
use limiquantix_api::v1::volume_service_client::VolumeServiceClient;
use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig};
use limiquantix_node::{NodeConfig, RunningNode};
use tonic::transport::Channel;

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

#[derive(Clone)]
pub struct Clients {
    pub pools: StoragePoolServiceClient<Channel>,
    pub volumes: VolumeServiceClient<Channel>,
    pub tasks: TaskServiceClient<Channel>,
    pub nodes: NodeServiceClient<Channel>,
}

impl Clients {
    pub async fn connect(url: &str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = loop {
            match Channel::from_shared(url.to_owned()).unwrap().connect().await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("control plane at {url} unreachable: {e}"),
            }
        };
        Self {
            pools: StoragePoolServiceClient::new(channel.clone()),
            volumes: VolumeServiceClient::new(channel.clone()),
            tasks: TaskServiceClient::new(channel.clone()),
            nodes: NodeServiceClient::new(channel),
        }
    }

    /// Waits for a task to end and returns it.
    pub async fn wait(&mut self, task_id: &str) -> pb::Task {
        assert!(!task_id.is_empty(), "no task to wait for");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let t = self.tasks.get_task(pb::GetTaskRequest { task_id: task_id.into() }).await.unwrap().into_inner();
            if t.state != pb::TaskState::Running as i32 {
                return t;
            }
            assert!(Instant::now() < deadline, "task {task_id} still running: {t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ok(&mut self, task_id: &str) -> pb::Task {
        let t = self.wait(task_id).await;
        assert_eq!(t.state, pb::TaskState::Succeeded as i32, "task failed: {t:?}");
        t
    }

    pub async fn volume(&mut self, id: &str) -> Result<pb::Volume, tonic::Status> {
        self.volumes.get_volume(pb::GetVolumeRequest { volume_id: id.into() }).await.map(|r| r.into_inner())
    }

    pub async fn local_pool(&mut self, name: &str, node_id: &str, path: &Path) -> pb::Pool {
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: path.display().to_string() })),
        };
        let req = pb::CreatePoolRequest {
            name: name.into(),
            config: Some(config),
            node_ids: vec![node_id.into()],
            ..Default::default()
        };
        let op = self.pools.create_pool(req).await.unwrap().into_inner();
        self.wait_ok(&op.task_id).await;
        self.pools.get_pool(pb::GetPoolRequest { pool: name.into() }).await.unwrap().into_inner()
    }

    /// A Ceph pool on the test cluster's TEST_POOL, on every node.
    pub async fn ceph_pool(&mut self, name: &str, ceph: &limiquantix_testkit::Ceph) -> pb::Pool {
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Ceph(pb::CephPoolConfig {
                monitors: vec![ceph.monitor()],
                ceph_pool: limiquantix_testkit::ceph::TEST_POOL.into(),
                client_id: "admin".into(),
                key: ceph.admin_key().into(),
                ..Default::default()
            })),
        };
        let req = pb::CreatePoolRequest { name: name.into(), config: Some(config), ..Default::default() };
        let op = self.pools.create_pool(req).await.unwrap().into_inner();
        self.wait_ok(&op.task_id).await;
        self.pools.get_pool(pb::GetPoolRequest { pool: name.into() }).await.unwrap().into_inner()
    }

    pub async fn create_volume(&mut self, pool: &str, name: &str, size: u64) -> pb::Volume {
        let op = self.volumes.create_volume(create_req(pool, name, size)).await.unwrap().into_inner();
        self.wait_ok(&op.task_id).await;
        self.volume(&op.volume.unwrap().id).await.unwrap()
    }

    pub async fn wait_node_online(&mut self, node_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(n) = self.nodes.get_node(pb::GetNodeRequest { node_id: node_id.into() }).await
                && n.into_inner().state == pb::NodeState::Online as i32 {
                    return;
                }
            assert!(Instant::now() < deadline, "node {node_id} never came online");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn create_req(pool: &str, name: &str, size: u64) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        pool: pool.into(),
        name: name.into(),
        spec: Some(pb::VolumeSpec { size_bytes: size, format: 0, provisioning: 0 }),
        ..Default::default()
    }
}

/// Short intervals so tests see heartbeats, offline nodes and retries quickly.
pub fn control_config(root: &Path) -> ControlConfig {
    let mut c = ControlConfig::default().without_security();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.store = StoreConfig::Redb { path: root.join("control/state.redb") };
    c.heartbeat_interval_secs = 1;
    c.offline_after_secs = 3;
    c.saga_retry_secs = 3;
    c
}

/// A node daemon under `root/name`, registering with `control_plane`; its id.
pub async fn start_node(root: &Path, name: &str, control_plane: &str, adjust: impl FnOnce(&mut NodeConfig)) -> (limiquantix_node::RunningNode, String) {
    let mut cfg = node_config(&root.join(name), control_plane);
    adjust(&mut cfg);
    let node = limiquantix_node::RunningNode::start(&cfg).await.unwrap();
    let id = limiquantix_node::registration::node_id(&cfg.state_dir).unwrap();
    (node, id)
}

pub fn node_config(root: &Path, control_plane: &str) -> NodeConfig {
    let mut n = NodeConfig::default().without_tls().with_data_dir(&root.join("node"));
    n.listen = "127.0.0.1:0".parse().unwrap();
    n.control_plane = Some(control_plane.to_owned());
    n.create_dirs().unwrap();
    n
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub cp: Option<ControlPlane>,
    pub node: Option<RunningNode>,
    pub node_id: String,
    pub c: Clients,
    pub pool: pb::Pool,
}

impl Cluster {
    /// A control plane, a node, and a local pool "p1" on it.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    pub async fn start_with(adjust_cp: impl FnOnce(&mut ControlConfig), adjust_node: impl FnOnce(&mut NodeConfig)) -> Self {
        let root = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = control_config(root.path());
        adjust_cp(&mut cfg);
        let cp = ControlPlane::start(&cfg).await.unwrap();
        let mut ncfg = node_config(root.path(), &cp.url());
        adjust_node(&mut ncfg);
        let node = RunningNode::start(&ncfg).await.unwrap();
        let node_id = limiquantix_node::registration::node_id(&ncfg.state_dir).unwrap();
        let mut c = Clients::connect(&cp.url()).await;
        c.wait_node_online(&node_id).await;
        let pool = c.local_pool("p1", &node_id, &root.path().join("node/pools/p1")).await;
        Self { root, cp: Some(cp), node: Some(node), node_id, c, pool }
    }

    pub fn pool_dir(&self) -> PathBuf {
        self.root.path().join("node/pools/p1")
    }

    /// The volume files on the node's disk (lq-<id>.*).
    pub fn files(&self) -> Vec<String> {
        file_names(&self.pool_dir())
    }

    pub fn node_addr(&self) -> SocketAddr {
        self.node.as_ref().unwrap().addr
    }
}

/// A plain HTTP/1.1 GET over a TCP socket (no HTTP client dependency).
pub async fn http_get(url: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// The names in `dir`, sorted; none when it does not exist.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    names
}

/// The command lines of `programs` (e.g. qemu-img, qemu-nbd) running on
/// files under `root`: what a test's daemons must not leave behind.
pub fn tools_running_on(root: &Path, programs: &[&str]) -> Vec<String> {
    let needle = root.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| programs.iter().any(|p| c.starts_with(p)) && c.contains(&needle))
        .collect()
}
