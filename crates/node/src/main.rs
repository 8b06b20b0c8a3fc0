//! limiquantix-node: the storage daemon of one hypervisor.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use limiquantix_node::{NodeConfig, RunningNode, shutdown_signal};

/// The LimiQuantix node storage daemon (gRPC NodeStorage).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; without it, defaults apply (see README).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Keep state, local pools and importable images under this one directory
    /// (state/, pools/, images/), overriding the config's directories.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The control plane to register with, overriding the config.
    #[arg(long)]
    control_plane: Option<String>,
    /// A one-time join token (`lqctl node join-token create`) to enrol with
    /// at first start, overriding the config. Prefer the environment
    /// variable: arguments are visible to every user of the machine.
    #[arg(long, env = "LQ_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Listen address, overriding the config.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// State directory, overriding the config.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A directory local pools may live in (repeatable), replacing the config's list.
    #[arg(long = "local-pool-root")]
    local_pool_roots: Vec<PathBuf>,
    /// A directory images may be imported from (repeatable), replacing the config's list.
    #[arg(long = "import-dir")]
    import_dirs: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    limiquantix_node::init_logging();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config = config.with_data_dir(dir);
        config.create_dirs()?;
    }
    if let Some(cp) = args.control_plane {
        config.control_plane = Some(cp);
    }
    if let Some(token) = args.join_token {
        config.join_token = Some(token);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if !args.local_pool_roots.is_empty() {
        config.local_pool_roots = args.local_pool_roots;
    }
    if !args.import_dirs.is_empty() {
        config.import_dirs = args.import_dirs;
    }

    let node = RunningNode::start(&config).await?;
    tracing::info!(listen = %node.addr, state_dir = %config.state_dir.display(), "limiquantix-node serving");
    node.serve_until(shutdown_signal(), Duration::from_secs(config.shutdown_grace_secs)).await?;
    tracing::info!("limiquantix-node stopped");
    Ok(())
}
