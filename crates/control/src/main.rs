//! limiquantix-controlplane: the cluster's storage control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use limiquantix_api::v1 as pb;
use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig};
use limiquantix_node::{NodeConfig, RunningNode, shutdown_signal};

/// The pool `--dev` creates, with a fixed id so restarts find it again.
const DEV_POOL_ID: &str = "0d0d0d0d-0000-4000-8000-000000000001";

#[derive(Debug, Parser)]
#[command(version, about = "LimiQuantix storage control plane")]
struct Args {
    /// TOML config file; without it, defaults apply (see README).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address (gRPC API, /metrics), overriding the config.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// All in one, on 127.0.0.1: the embedded store, an embedded node daemon
    /// and a local pool "default", all under --data-dir.
    #[arg(long)]
    dev: bool,
    /// With --dev: where everything is kept.
    #[arg(long, default_value = "lq-data")]
    data_dir: PathBuf,
    /// With --dev: the embedded node daemon's listen address.
    #[arg(long, default_value = "127.0.0.1:7701", requires = "dev")]
    node_listen: SocketAddr,
    /// With --dev: the embedded node's settings (a limiquantix-node TOML
    /// file, e.g. [limits] copy_mib_per_sec); its listen address and
    /// directories are --dev's.
    #[arg(long, requires = "dev")]
    node_config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    limiquantix_node::init_logging();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => ControlConfig::load(path)?,
        None => ControlConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.dev {
        let node = match &args.node_config {
            Some(path) => NodeConfig::load(path)?,
            None => NodeConfig::default(),
        };
        return dev(config, &args.data_dir, args.node_listen, node).await;
    }
    let cp = ControlPlane::start(&config).await?;
    tracing::info!(listen = %cp.addr, store = cp.app.repo.store().kind(), "limiquantix-controlplane serving");
    cp.serve_until(shutdown_signal(), Duration::from_secs(30)).await?;
    tracing::info!("limiquantix-controlplane stopped");
    Ok(())
}

async fn dev(mut config: ControlConfig, data_dir: &std::path::Path, node_listen: SocketAddr, node_config: NodeConfig) -> anyhow::Result<()> {
    for listen in [config.listen, node_listen] {
        if !listen.ip().is_loopback() {
            bail!("--dev only listens on 127.0.0.1; {listen} is not a loopback address");
        }
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    config.store = StoreConfig::Redb { path: data_dir.join("control/state.redb") };
    // Where lqctl looks when run from the directory that holds lq-data.
    config.auth.admin_credentials = Some(data_dir.join("lqctl.toml"));
    let cp = ControlPlane::start(&config).await?;

    // The node enrols like any other: with a join token, over TLS.
    let mut node_config = node_config.with_data_dir(&data_dir.join("node"));
    node_config.listen = node_listen;
    node_config.control_plane = Some(cp.url());
    node_config.create_dirs()?;
    if limiquantix_node::enrolment::load(&node_config.state_dir, &node_config.tls.control_plane_name)?.is_none() {
        let token = limiquantix_control::api::access::create_join_token(&cp.app, Duration::from_secs(600))
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.status().message()))?;
        node_config.join_token = Some(token.token);
    }
    let node = RunningNode::start(&node_config).await?;
    let node_id = limiquantix_node::registration::node_id(&node_config.state_dir)?;

    let pool_path = data_dir.join("node/pools/default");
    ensure_dev_pool(&cp, &node_id, &pool_path).await?;
    eprintln!(
        "\nLimiQuantix (dev) is running: control plane {} (redb in {}), node {} ({}), pool \"default\" in {}.\n\
         Web UI: {}/ (sign in with the token in {}).\n\
         lqctl finds its admin credentials in {} when run from {} (elsewhere: export LQCTL_CREDENTIALS={}).\n\
         Try: lqctl pool list; lqctl volume create --pool default --name disk1 --size 10G\n",
        cp.url(),
        data_dir.join("control").display(),
        node.url(),
        node_id,
        pool_path.display(),
        cp.url(),
        data_dir.join("lqctl.toml").display(),
        limiquantix_identity::credentials::DEV_PATH,
        data_dir.parent().unwrap_or(&data_dir).display(),
        data_dir.join("lqctl.toml").display(),
    );
    let signal = shutdown_signal();
    cp.serve_until(signal, Duration::from_secs(10)).await?;
    node.stop_within(Duration::from_secs(10)).await?;
    Ok(())
}

/// Waits for the embedded node to register, then creates the dev pool once.
async fn ensure_dev_pool(cp: &ControlPlane, node_id: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use limiquantix_api::v1::storage_pool_service_server::StoragePoolService;
    use limiquantix_control::keys;
    let repo = &cp.app.repo;
    let status = |e: limiquantix_control::error::ApiError| anyhow::anyhow!("{}", e.status().message());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while repo.get::<pb::Node>(&keys::node(node_id)).await.map_err(status)?.is_none() {
        if tokio::time::Instant::now() > deadline {
            bail!("the embedded node did not register");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if repo.get::<pb::Pool>(&keys::pool(DEV_POOL_ID)).await.map_err(status)?.is_some() {
        return Ok(());
    }
    let config = pb::PoolConfig {
        backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: path.display().to_string() })),
    };
    let pools = limiquantix_control::api::pools::PoolApi::new(cp.app.clone());
    let op = pools
        .create_pool(tonic::Request::new(pb::CreatePoolRequest {
            pool_id: DEV_POOL_ID.into(),
            name: "default".into(),
            description: "local pool of the --dev node".into(),
            config: Some(config),
            node_ids: vec![node_id.to_owned()],
            ..Default::default()
        }))
        .await?
        .into_inner();
    loop {
        let task = repo.get::<pb::Task>(&keys::task(&op.task_id)).await.map_err(status)?.map(|t| t.value).unwrap_or_default();
        match pb::TaskState::try_from(task.state) {
            Ok(pb::TaskState::Succeeded) => return Ok(()),
            Ok(pb::TaskState::Running | pb::TaskState::Unspecified) | Err(_) => {}
            Ok(_) => bail!("creating the dev pool failed: {}", task.error),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("creating the dev pool did not finish");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
