//! NodeService: node daemons register and heartbeat; people list and drain.

use std::sync::Arc;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use crate::access::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::keys;
use crate::records::parse_node_id;
use crate::tasks::now;

type Rpc<T> = Result<Response<T>, Status>;

pub struct NodeApi {
    app: Arc<App>,
}

impl NodeApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// What still needs node `id`: pools placed on it, volumes attached there.
    async fn users_of(&self, id: &str) -> Result<Vec<String>, ApiError> {
        let mut users = Vec::new();
        for (_, p) in self.app.repo.list::<pb::Pool>(keys::POOLS, None, 0).await? {
            if p.value.node_ids.iter().any(|n| n == id) {
                users.push(format!("pool {}", p.value.name));
            }
        }
        for (_, v) in self.app.repo.list::<pb::Volume>(keys::VOLUMES, None, 0).await? {
            if v.value.attachment.as_ref().is_some_and(|a| a.node_id == id) {
                users.push(format!("volume {} (attached)", v.value.name));
            }
        }
        Ok(users)
    }

    /// The record as shown: its state computed from the last heartbeat.
    fn shown(&self, mut n: pb::Node) -> pb::Node {
        n.state = self.app.nodes.state(&n) as i32;
        n
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn register_node(&self, req: Request<pb::RegisterNodeRequest>) -> Rpc<pb::Node> {
        let caller = req.extensions().get::<Caller>().cloned();
        let r = req.into_inner();
        let id = parse_node_id(&r.node_id)?;
        let address = r.address.trim().to_owned();
        let scheme = if self.app.access.pki.is_some() { "https://" } else { "http://" };
        if !address.starts_with(scheme) || address.len() > 255 {
            return Err(ApiError::invalid(format!("node address {address:?} must be an {scheme} URL")).into());
        }
        address.parse::<tonic::transport::Uri>().map_err(|e| ApiError::invalid(format!("node address {address:?}: {e}")))?;
        let info = r.info.unwrap_or_default();
        let repo = &self.app.repo;
        let key = keys::node(&id);
        let node = repo
            .retry(|| async {
                // Checked in the transaction: a removal racing this wins.
                let enrolment = self.app.access.check_node(repo, caller.as_ref(), &id).await?;
                let existing = repo.get::<pb::Node>(&key).await?;
                let t = now();
                let node = pb::Node {
                    id: id.clone(),
                    hostname: info.hostname.clone(),
                    address: address.clone(),
                    version: info.version.clone(),
                    supported_kinds: info.supported_kinds.clone(),
                    state: pb::NodeState::Online as i32,
                    draining: existing.as_ref().is_some_and(|e| e.value.draining),
                    last_heartbeat_unix_seconds: t,
                    registered_unix_seconds: existing.as_ref().map(|e| e.value.registered_unix_seconds).unwrap_or(t),
                };
                let mut txn = crate::repo::Txn::new();
                match &existing {
                    Some(e) => txn.expect(&key, e.revision),
                    None => txn.expect_absent(&key),
                };
                txn.put(&key, &node);
                if let Some(revision) = enrolment {
                    txn.expect(keys::enrolment(&id), revision);
                }
                txn.commit(repo).await?;
                Ok(node)
            })
            .await?;
        self.app.nodes.heard_from(&id);
        tracing::info!(node = %node.id, hostname = %node.hostname, address = %node.address, "node registered");
        Ok(Response::new(node))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Rpc<pb::HeartbeatResponse> {
        let caller = req.extensions().get::<Caller>().cloned();
        let id = parse_node_id(&req.into_inner().node_id)?;
        self.app.access.check_node(&self.app.repo, caller.as_ref(), &id).await?;
        self.app.nodes.heard_from(&id);
        self.app
            .repo
            .update::<pb::Node>(&keys::node(&id), |n| {
                n.last_heartbeat_unix_seconds = now();
                n.state = pb::NodeState::Online as i32;
                Ok(())
            })
            .await
            .map_err(|e| if e.code() == tonic::Code::NotFound { ApiError::not_found(format!("node {id} is not registered; register it first")) } else { e })?;
        Ok(Response::new(pb::HeartbeatResponse { interval_seconds: self.app.nodes.heartbeat_interval.as_secs() as u32 }))
    }

    async fn list_nodes(&self, _: Request<pb::ListNodesRequest>) -> Rpc<pb::ListNodesResponse> {
        let nodes = self.app.repo.list::<pb::Node>(keys::NODES, None, 0).await?;
        Ok(Response::new(pb::ListNodesResponse { nodes: nodes.into_iter().map(|(_, n)| self.shown(n.value)).collect() }))
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> Rpc<pb::Node> {
        let id = parse_node_id(&req.into_inner().node_id)?;
        let node = self.app.nodes.get(&self.app.repo, &id).await?;
        Ok(Response::new(self.shown(node)))
    }

    async fn drain_node(&self, req: Request<pb::DrainNodeRequest>) -> Rpc<pb::Node> {
        let r = req.into_inner();
        let id = parse_node_id(&r.node_id)?;
        let node = self
            .app
            .repo
            .update::<pb::Node>(&keys::node(&id), |n| {
                n.draining = !r.undo;
                Ok(())
            })
            .await
            .map_err(|e| if e.code() == tonic::Code::NotFound { ApiError::not_found(format!("node {id} is not registered")) } else { e })?;
        Ok(Response::new(self.shown(node)))
    }

    async fn remove_node(&self, req: Request<pb::RemoveNodeRequest>) -> Rpc<pb::RemoveNodeResponse> {
        let r = req.into_inner();
        let id = parse_node_id(&r.node_id)?;
        let repo = &self.app.repo;
        // The node heartbeats while it is removed: re-read and decide again
        // when its write lands between our read and our commit.
        repo.retry(|| async {
            let node = repo.get::<pb::Node>(&keys::node(&id)).await?;
            let enrolment = repo.get::<crate::access::records::EnrolmentRecord>(&keys::enrolment(&id)).await?;
            if node.is_none() && enrolment.is_none() {
                return Err(ApiError::not_found(format!("node {id} is not registered")));
            }
            if !r.force {
                let users = self.users_of(&id).await?;
                if !users.is_empty() {
                    return Err(ApiError::precondition(format!(
                        "node {id} is still used by {}; move or delete those first, or force the removal (a node whose key leaked)",
                        users.join(", ")
                    )));
                }
            }
            let mut txn = crate::repo::Txn::new();
            if let Some(n) = &node {
                txn.expect(keys::node(&id), n.revision).delete(keys::node(&id));
            }
            if let Some(e) = &enrolment {
                txn.expect(keys::enrolment(&id), e.revision).delete(keys::enrolment(&id));
            }
            txn.commit(repo).await
        })
        .await?;
        self.app.nodes.forget(&id);
        tracing::warn!(node = %id, force = r.force, "node removed: its certificate is refused from now on");
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }
}
