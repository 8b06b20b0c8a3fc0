//! Joining the control plane: the node keeps a stable id in its state dir,
//! registers (id, address, what it can do) and heartbeats at the interval
//! the control plane asks for. A control plane that is down is retried.

use std::path::Path;
use std::time::Duration;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_service_client::NodeServiceClient;
use limiquantix_storage::fsutil::{atomic_write, create_private_dir};

/// The node's id: read from `<state_dir>/node-id`, created on first start.
pub fn node_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) => {
            let id = id.trim().to_owned();
            uuid_check(&id).map(|_| id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // It will hold pool secrets (0600 files) and client keys.
            create_private_dir(state_dir)?;
            let id = uuid::Uuid::new_v4().to_string();
            atomic_write(&path, id.as_bytes(), 0o644)?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

fn uuid_check(id: &str) -> anyhow::Result<()> {
    uuid::Uuid::try_parse(id).map(drop).map_err(|e| anyhow::anyhow!("not a node id: {e}"))
}

/// Registers, then heartbeats until the process ends.
pub async fn run(
    control_plane: String,
    node_id: String,
    address: String,
    info: pb::NodeInfo,
    timeout: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match register_and_beat(&control_plane, &node_id, &address, &info, timeout, tls.clone()).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(%control_plane, error = format!("{e:#}"), "cannot reach the control plane; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Returns when the control plane forgot this node (to register again) or
/// an error when it cannot be reached.
async fn register_and_beat(
    control_plane: &str,
    node_id: &str,
    address: &str,
    info: &pb::NodeInfo,
    timeout: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<()> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(control_plane.to_owned())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    // Every call has a deadline: a hung control plane is retried like a dead one.
    let channel = endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = NodeServiceClient::new(channel);
    let req = pb::RegisterNodeRequest { node_id: node_id.to_owned(), address: address.to_owned(), info: Some(info.clone()) };
    client.register_node(req).await?;
    tracing::info!(%control_plane, %node_id, "registered with the control plane");
    loop {
        match client.heartbeat(pb::HeartbeatRequest { node_id: node_id.to_owned() }).await {
            Ok(r) => {
                let every = r.into_inner().interval_seconds.max(1);
                tokio::time::sleep(Duration::from_secs(every.into())).await;
            }
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(s) => return Err(s.into()),
        }
    }
}
