//! The control plane at scale: 100,000 volumes over 1,000 registered nodes
//! (simulated node and pool records, written straight into the store), then,
//! for redb and for etcd in one run: ListVolumes (first page of 100, one
//! pool) p50/p99, GetVolume p99, a create through the saga on a real embedded
//! node p50, and the process's resident memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::storage_pool_service_client::StoragePoolServiceClient;
use limiquantix_api::v1::task_service_client::TaskServiceClient;
use limiquantix_api::v1::volume_service_client::VolumeServiceClient;
use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig, keys};
use limiquantix_control::repo::Txn;
use limiquantix_node::{NodeConfig, RunningNode};
use limiquantix_testkit::Etcd;
use tonic::transport::Channel;

use crate::measure::{Stats, round, rss_bytes};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100_000)]
    volumes: usize,
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Only this store ("redb" or "etcd"); both by default.
    #[arg(long)]
    store: Option<String>,
}

/// etcd refuses transactions of more than 128 operations by default.
const OPS_PER_TXN: usize = 120;

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut results = serde_json::Map::new();
    for kind in ["redb", "etcd"] {
        if args.store.as_deref().is_some_and(|s| s != kind) {
            continue;
        }
        let work = tempfile::Builder::new().prefix("lq-cpbench-").tempdir()?;
        let etcd = if kind == "etcd" { Some(Etcd::start().context("starting etcd")?) } else { None };
        let store = match &etcd {
            Some(e) => StoreConfig::Etcd {
                endpoints: vec![e.endpoint()],
                root: "/lq-bench/".into(),
                timeout_secs: 10,
                tls: None,
                user: None,
                password_file: None,
            },
            None => StoreConfig::Redb { path: work.path().join("state.redb") },
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let figures = rt.block_on(measure(&args, store, work.path()))?;
        let mut figures = figures;
        if let Some(e) = &etcd {
            figures.insert("etcd_rss_mb".into(), serde_json::json!(round(rss_bytes(e.pid().context("etcd has exited")?)? as f64 / 1e6)));
        }
        eprintln!("{kind}: {}", serde_json::to_string_pretty(&figures)?);
        results.insert(kind.into(), serde_json::Value::Object(figures));
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}

async fn measure(args: &Args, store: StoreConfig, root: &std::path::Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut config = ControlConfig::default().without_security();
    config.listen = "127.0.0.1:0".parse()?;
    config.store = store;
    config.secrets_key = Some(root.join("secrets.key"));
    config.heartbeat_interval_secs = 1;
    let cp = ControlPlane::start(&config).await?;
    let mut node_config = NodeConfig::default().without_tls().with_data_dir(&root.join("node"));
    node_config.listen = "127.0.0.1:0".parse()?;
    node_config.control_plane = Some(cp.url());
    node_config.create_dirs()?;
    let node = RunningNode::start(&node_config).await?;
    let node_id = limiquantix_node::registration::node_id(&node_config.state_dir)?;

    let channel = Channel::from_shared(cp.url())?.connect().await?;
    let mut pools = StoragePoolServiceClient::new(channel.clone());
    let mut volumes = VolumeServiceClient::new(channel.clone());
    let mut tasks = TaskServiceClient::new(channel);

    // The embedded node registers; then a real pool on it for the creates.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cp.app.repo.get::<pb::Node>(&keys::node(&node_id)).await?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the embedded node did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = pb::PoolConfig {
        backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig {
            path: root.join("node/pools/real").display().to_string(),
        })),
    };
    let op = pools
        .create_pool(pb::CreatePoolRequest { name: "real".into(), config: Some(config), node_ids: vec![node_id.clone()], ..Default::default() })
        .await?
        .into_inner();
    wait(&mut tasks, &op.task_id).await?;

    let fill_start = Instant::now();
    let (pool_ids, volume_ids) = fill(&cp, args.nodes, args.volumes).await?;
    let fill_secs = fill_start.elapsed().as_secs_f64();

    // List: first page of 100, filtered by pool (pools hold volumes/nodes each).
    let mut list = Stats::default();
    for i in 0..200 {
        let pool = pool_ids[(i * 7919) % pool_ids.len()].clone();
        let req = pb::ListVolumesRequest { pool, page_size: 100, ..Default::default() };
        let start = Instant::now();
        let page = volumes.list_volumes(req).await?.into_inner().volumes.len();
        list.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(page > 0, "an empty page");
    }
    let mut get = Stats::default();
    for i in 0..2000 {
        let id = volume_ids[(i * 104_729) % volume_ids.len()].clone();
        let start = Instant::now();
        volumes.get_volume(pb::GetVolumeRequest { volume_id: id }).await?;
        get.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut create = Stats::default();
    for i in 0..25 {
        let req = pb::CreateVolumeRequest {
            pool: "real".into(),
            name: format!("bench{i}"),
            spec: Some(pb::VolumeSpec { size_bytes: 1 << 30, format: 0, provisioning: 0 }),
            ..Default::default()
        };
        let start = Instant::now();
        let op = volumes.create_volume(req).await?.into_inner();
        wait(&mut tasks, &op.task_id).await?;
        create.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let rss = rss_bytes(std::process::id())?;
    node.stop().await?;
    cp.stop_within(Duration::from_secs(5)).await?;

    let mut out = serde_json::Map::new();
    out.insert("volumes".into(), serde_json::json!(volume_ids.len()));
    out.insert("nodes".into(), serde_json::json!(args.nodes));
    out.insert("fill_seconds".into(), serde_json::json!(round(fill_secs)));
    out.insert("list_p50_ms".into(), serde_json::json!(round(list.median_ms())));
    out.insert("list_p99_ms".into(), serde_json::json!(round(list.p99_ms())));
    out.insert("get_p99_ms".into(), serde_json::json!(round(get.p99_ms())));
    out.insert("create_saga_p50_ms".into(), serde_json::json!(round(create.median_ms())));
    out.insert("rss_mb".into(), serde_json::json!(round(rss as f64 / 1e6)));
    Ok(out)
}

async fn wait(tasks: &mut TaskServiceClient<Channel>, task_id: &str) -> anyhow::Result<()> {
    loop {
        let t = tasks.get_task(pb::GetTaskRequest { task_id: task_id.into() }).await?.into_inner();
        match pb::TaskState::try_from(t.state) {
            Ok(pb::TaskState::Succeeded) => return Ok(()),
            Ok(pb::TaskState::Running) => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => anyhow::bail!("task {task_id} failed: {}", t.error),
        }
    }
}

/// Simulated nodes (one local pool each) and their volumes, written in
/// batches straight into the store, as the API would have written them.
async fn fill(cp: &ControlPlane, nodes: usize, volumes: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let repo = &cp.app.repo;
    let now = 1_795_000_000;
    let mut pool_ids = Vec::with_capacity(nodes);
    let mut txn = Txn::new();
    let mut ops = 0;
    for n in 0..nodes {
        let node_id = uuid::Uuid::new_v4().to_string();
        let pool_id = uuid::Uuid::new_v4().to_string();
        let node = pb::Node {
            id: node_id.clone(),
            hostname: format!("hv{n:04}"),
            address: format!("http://10.0.{}.{}:7701", n / 250, n % 250 + 1),
            version: "0.1.0".into(),
            state: pb::NodeState::Offline as i32,
            registered_unix_seconds: now,
            ..Default::default()
        };
        let pool = pb::Pool {
            id: pool_id.clone(),
            name: format!("local-hv{n:04}"),
            kind: pb::PoolKind::Local as i32,
            node_ids: vec![node_id.clone()],
            state: pb::PoolState::Ready as i32,
            overcommit_ratio: 1.0,
            ..Default::default()
        };
        txn.put(keys::node(&node_id), &node).put(keys::pool(&pool_id), &pool).put_raw(keys::pool_name(&pool.name), pool_id.clone().into_bytes());
        ops += 3;
        if ops >= OPS_PER_TXN - 3 {
            std::mem::take(&mut txn).commit(repo).await?;
            ops = 0;
        }
        pool_ids.push(pool_id);
    }
    let mut volume_ids = Vec::with_capacity(volumes);
    for v in 0..volumes {
        let pool_id = &pool_ids[v % pool_ids.len()];
        let id = uuid::Uuid::new_v4().to_string();
        let name = format!("vm{v:06}-disk0");
        let volume = pb::Volume {
            id: id.clone(),
            name: name.clone(),
            pool_id: pool_id.clone(),
            labels: [("app".to_owned(), format!("svc{}", v % 50))].into_iter().collect(),
            state: pb::VolumeState::Available as i32,
            size_bytes: 40 << 30,
            format: pb::VolumeFormat::Qcow2 as i32,
            created_unix_seconds: now,
            ..Default::default()
        };
        txn.put(keys::volume(pool_id, &id), &volume)
            .put_raw(keys::volume_pool(&id), pool_id.clone().into_bytes())
            .put_raw(keys::volume_name(pool_id, &name), id.clone().into_bytes());
        ops += 3;
        if ops >= OPS_PER_TXN - 3 {
            std::mem::take(&mut txn).commit(repo).await?;
            ops = 0;
        }
        volume_ids.push(id);
    }
    txn.commit(repo).await?;
    Ok((pool_ids, volume_ids))
}
