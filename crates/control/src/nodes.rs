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
    pub deadlines: Deadlines,
    /// When this control plane started, and the nodes it has heard from
    /// since (registration or heartbeat): the others are "starting" for
    /// `offline_after`, neither judged nor called.
    started: std::time::Instant,
    heard: Mutex<std::collections::HashSet<String>>,
    heard_news: tokio::sync::Notify,
    /// With TLS, nodes are called with mutual TLS (see `ControlPki::node_client`).
    tls: Option<std::sync::Arc<crate::access::ControlPki>>,
}

/// How long an operation waits for a starting node's first heartbeat.
const STARTING_WAIT: Duration = Duration::from_secs(10);

/// How long each kind of node call may take (see `NodeCallDeadlines`).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub call: Duration,
    pub attach: Duration,
    pub silence: Duration,
    pub refresh: Duration,
}

impl From<crate::config::NodeCallDeadlines> for Deadlines {
    fn from(c: crate::config::NodeCallDeadlines) -> Self {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Self { call: secs(c.call_secs), attach: secs(c.attach_secs), silence: secs(c.silence_secs), refresh: secs(c.refresh_secs) }
    }
}

/// A call to a node within `deadline`: a node that does not answer in time
/// (hung, stopped) gives UNAVAILABLE naming it, like one that is down.
pub async fn call<T>(
    node_id: &str,
    what: &str,
    deadline: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> ApiResult<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(answer) => answer.map(tonic::Response::into_inner).map_err(|e| node_error(node_id, e)),
        Err(_) => Err(silent(node_id, what, deadline)),
    }
}

/// The error of a node that said nothing for `deadline` while it should have.
pub fn silent(node_id: &str, what: &str, deadline: Duration) -> ApiError {
    ApiError::unavailable(format!("node {node_id} did not answer ({what}) within {} s", deadline.as_secs()))
}

impl NodeRegistry {
    pub fn new(
        heartbeat_interval: Duration,
        offline_after: Duration,
        deadlines: Deadlines,
        tls: Option<std::sync::Arc<crate::access::ControlPki>>,
    ) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            heartbeat_interval,
            offline_after,
            deadlines,
            started: std::time::Instant::now(),
            heard: Mutex::new(Default::default()),
            heard_news: tokio::sync::Notify::new(),
            tls,
        }
    }

    /// The node registered or heartbeated.
    pub fn heard_from(&self, node_id: &str) {
        if self.heard.lock().expect("heard lock").insert(node_id.to_owned()) {
            self.heard_news.notify_waiters();
        }
    }

    /// Not heard from since this control plane started, and that was less
    /// than `offline_after` ago.
    pub fn is_starting(&self, node_id: &str) -> bool {
        self.started.elapsed() < self.offline_after && !self.heard.lock().expect("heard lock").contains(node_id)
    }

    /// The state a node is shown in.
    pub fn state(&self, node: &pb::Node) -> pb::NodeState {
        if self.is_starting(&node.id) {
            pb::NodeState::Starting
        } else if self.is_online(node) {
            pb::NodeState::Online
        } else {
            pb::NodeState::Offline
        }
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

    /// The node, if it is online; UNAVAILABLE naming it otherwise. A node
    /// still starting is waited for briefly.
    pub async fn online(&self, repo: &Repo, node_id: &str) -> ApiResult<pb::Node> {
        self.get(repo, node_id).await?;
        if self.is_starting(node_id) {
            let waited = tokio::time::timeout(STARTING_WAIT, async {
                while self.is_starting(node_id) {
                    let news = self.heard_news.notified();
                    tokio::pin!(news);
                    news.as_mut().enable();
                    if !self.is_starting(node_id) {
                        break;
                    }
                    // Also wake when the grace period ends.
                    tokio::select! {
                        _ = news => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            })
            .await;
            if waited.is_err() {
                return Err(ApiError::unavailable(format!(
                    "node {node_id} is starting: the control plane started {} s ago and has not heard from it yet; retry in a moment",
                    self.started.elapsed().as_secs()
                )));
            }
        }
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

    /// Forgets the connection to a node (removed from the cluster).
    pub fn forget(&self, node_id: &str) {
        self.channels.lock().expect("channel cache lock").remove(node_id);
        self.heard.lock().expect("heard lock").remove(node_id);
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
        let mut endpoint = Endpoint::from_shared(node.address.clone())
            .map_err(|e| ApiError::internal(format!("node {} has an invalid address {}: {e}", node.id, node.address)))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(pki) = &self.tls {
            endpoint = endpoint
                .tls_config(pki.node_client(&node.id))
                .map_err(|e| ApiError::internal(format!("TLS settings for node {}: {e}", node.id)))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(node.id.clone(), (node.address.clone(), channel.clone()));
        Ok(channel)
    }
}

/// A node's error as the control plane reports it: which node, and
/// UNAVAILABLE when the node itself went away mid-call. An UNAVAILABLE the
/// node answered (its storage cannot be reached: a dead NFS server) says
/// so, not that the node is gone; only an answer carries response headers.
pub fn node_error(node_id: &str, status: tonic::Status) -> ApiError {
    let answered = status.metadata().contains_key("content-type");
    let gone = !answered
        && (matches!(status.code(), tonic::Code::Unavailable)
            || (status.code() == tonic::Code::Unknown
                && ["transport", "connection", "h2 protocol", "broken pipe"].iter().any(|w| status.message().contains(w))));
    if gone {
        ApiError::unavailable(format!("node {node_id} cannot be reached: {}", status.message()))
    } else if status.code() == tonic::Code::Unavailable {
        ApiError::unavailable(format!("on node {node_id}: {}", status.message()))
    } else {
        ApiError::from(status)
    }
}
