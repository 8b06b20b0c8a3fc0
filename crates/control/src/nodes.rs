//! The node daemons the control plane drives: their records (registration,
//! heartbeats), liveness, and gRPC clients to them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Repo;
use crate::tasks::now;

pub struct NodeRegistry {
    channels: Mutex<HashMap<String, (String, Channel)>>,
    pub heartbeat_interval: Duration,
    pub offline_after: Duration,
}

impl NodeRegistry {
    pub fn new(heartbeat_interval: Duration, offline_after: Duration) -> Self {
        Self { channels: Mutex::new(HashMap::new()), heartbeat_interval, offline_after }
    }

    /// Online = it heartbeated recently (whatever the record's state says:
    /// the monitor that flips it may not have run yet).
    pub fn is_online(&self, node: &pb::Node) -> bool {
        now() - node.last_heartbeat_unix_seconds <= self.offline_after.as_secs() as i64
    }

    pub async fn get(&self, repo: &Repo, node_id: &str) -> ApiResult<pb::Node> {
        repo.get::<pb::Node>(&keys::node(node_id))
            .await?
            .map(|v| v.value)
            .ok_or_else(|| ApiError::not_found(format!("node {node_id} is not registered")))
    }

    /// The node, if it is online; UNAVAILABLE naming it otherwise.
    pub async fn online(&self, repo: &Repo, node_id: &str) -> ApiResult<pb::Node> {
        let node = self.get(repo, node_id).await?;
        if !self.is_online(&node) {
            return Err(ApiError::unavailable(format!(
                "node {} ({}) is offline: no heartbeat for {} s; bring its limiquantix-node back or retry later",
                node.id,
                node.hostname,
                now() - node.last_heartbeat_unix_seconds
            )));
        }
        Ok(node)
    }

    /// A client of an online node.
    pub async fn client(&self, repo: &Repo, node_id: &str) -> ApiResult<NodeStorageClient<Channel>> {
        let node = self.online(repo, node_id).await?;
        Ok(NodeStorageClient::new(self.channel(&node)?).max_decoding_message_size(64 << 20))
    }

    fn channel(&self, node: &pb::Node) -> ApiResult<Channel> {
        let mut channels = self.channels.lock().expect("channel cache lock");
        if let Some((address, channel)) = channels.get(&node.id)
            && *address == node.address {
                return Ok(channel.clone());
            }
        let channel = Endpoint::from_shared(node.address.clone())
            .map_err(|e| ApiError::internal(format!("node {} has an invalid address {}: {e}", node.id, node.address)))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(node.id.clone(), (node.address.clone(), channel.clone()));
        Ok(channel)
    }
}

/// A node's error as the control plane reports it: which node, and
/// UNAVAILABLE when the node itself went away mid-call.
pub fn node_error(node_id: &str, status: tonic::Status) -> ApiError {
    let gone = matches!(status.code(), tonic::Code::Unavailable)
        || (status.code() == tonic::Code::Unknown
            && ["transport", "connection", "h2 protocol", "broken pipe"].iter().any(|w| status.message().contains(w)));
    if gone {
        ApiError::unavailable(format!("node {node_id} cannot be reached: {}", status.message()))
    } else {
        ApiError::from(status)
    }
}
