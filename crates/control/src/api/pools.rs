//! StoragePoolService.

use std::collections::BTreeMap;
use std::sync::Arc;

use limiquantix_api::short_name;
use limiquantix_api::v1 as pb;
use limiquantix_api::v1::storage_pool_service_server::StoragePoolService;
use tonic::{Request, Response, Status};

use super::{add_saga, new_id, overcommit_ratio, provisioning_limit};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::pools::split_secrets;
use crate::records::{self, check_labels, parse_pool_id, state_name};
use crate::repo::Txn;
use crate::sagas::create_pool::CreatePool;
use crate::sagas::delete_pool::DeletePool;
use crate::tasks::now;

type Rpc<T> = Result<Response<T>, Status>;

pub struct PoolApi {
    app: Arc<App>,
}

impl PoolApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The nodes a new pool goes on, and the capabilities they report for its
    /// kind: a pool that is not shared lives on the one node given; a shared
    /// pool on the listed nodes, or every online node. Each must be online,
    /// not draining, and serve the kind.
    async fn target_nodes(&self, kind: pb::PoolKind, requested: &[String]) -> ApiResult<(Vec<String>, bool, pb::PoolCapabilities)> {
        let repo = &self.app.repo;
        let all_nodes = requested.is_empty();
        let ids: Vec<String> = if all_nodes {
            let nodes = repo.list::<pb::Node>(keys::NODES, None, 0).await?;
            nodes.into_iter().map(|(_, n)| n.value).filter(|n| self.app.nodes.is_online(n) && !n.draining).map(|n| n.id).collect()
        } else {
            requested.iter().map(|n| records::parse_node_id(n)).collect::<ApiResult<_>>()?
        };
        if ids.is_empty() {
            return Err(ApiError::unavailable("no node is online to create the pool on; start a limiquantix-node"));
        }
        let kind_name = short_name(&kind, pb::PoolKind::as_str_name);
        let mut capabilities = None;
        for id in &ids {
            let node = self.app.nodes.online(repo, id).await?;
            if node.draining {
                return Err(ApiError::precondition(format!("node {} ({}) is draining", node.id, node.hostname)));
            }
            let Some(support) = node.supported_kinds.iter().find(|k| k.kind == kind as i32) else {
                let served: Vec<String> = node
                    .supported_kinds
                    .iter()
                    .map(|k| short_name(&pb::PoolKind::try_from(k.kind).unwrap_or_default(), pb::PoolKind::as_str_name))
                    .collect();
                return Err(ApiError::new(
                    tonic::Code::Unimplemented,
                    format!("{kind_name} pools are not supported by node {} ({}); it serves: {}", node.id, node.hostname, served.join(", ")),
                ));
            };
            capabilities.get_or_insert_with(|| support.capabilities.clone().unwrap_or_default());
        }
        let capabilities = capabilities.unwrap_or_default();
        if !capabilities.shared && (all_nodes || ids.len() != 1) {
            return Err(ApiError::invalid(format!("a {kind_name} pool lives on exactly one node: give its node id")));
        }
        Ok((ids, all_nodes, capabilities))
    }
}

fn check_ratio(r: f64) -> ApiResult<f64> {
    if r == 0.0 {
        return Ok(1.0);
    }
    if !(r.is_finite() && (0.1..=100.0).contains(&r)) {
        return Err(ApiError::invalid(format!("overcommit ratio {r} must be between 0.1 and 100")));
    }
    Ok(r)
}

#[tonic::async_trait]
impl StoragePoolService for PoolApi {
    async fn create_pool(&self, req: Request<pb::CreatePoolRequest>) -> Rpc<pb::PoolOperation> {
        let r = req.into_inner();
        let repo = &self.app.repo;
        let name = crate::records::parse_new_name("pool", &r.name)?;
        check_labels(&r.labels)?;
        let ratio = check_ratio(r.overcommit_ratio)?;
        if r.description.len() > 1024 {
            return Err(ApiError::invalid("the description is longer than 1024 characters").into());
        }
        let config = r.config.ok_or_else(|| ApiError::invalid("config is missing: give a local, nfs, ceph or iscsi config"))?;
        let kind = config.kind();
        if kind == pb::PoolKind::Unspecified {
            return Err(ApiError::invalid("config has no backend: give a local, nfs, ceph or iscsi config").into());
        }
        let id = if r.pool_id.is_empty() { new_id() } else { parse_pool_id(&r.pool_id)? };
        if let Some(existing) = repo.get::<pb::Pool>(&keys::pool(&id)).await? {
            if existing.value.name == name {
                return Ok(Response::new(pb::PoolOperation { pool: Some(existing.value), task_id: String::new() }));
            }
            return Err(ApiError::already_exists(format!("pool id {id} is taken by pool {}", existing.value.name)).into());
        }
        let (nodes, all_nodes, capabilities) = self.target_nodes(kind, &r.node_ids).await?;
        let (public_config, secrets) = split_secrets(config);
        let sealed = self.app.secrets.seal(&keys::pool_secret(&id), &serde_json::to_vec(&secrets).expect("secrets serialize"));
        let op = repo
            .retry(|| async {
                if repo.get_raw(&keys::pool_name(&name)).await?.is_some() {
                    return Err(ApiError::already_exists(format!("a pool named {name} already exists")));
                }
                let task_id = new_id();
                let pool = pb::Pool {
                    id: id.clone(),
                    name: name.clone(),
                    description: r.description.clone(),
                    labels: r.labels.clone(),
                    kind: kind as i32,
                    config: Some(public_config.clone()),
                    node_ids: nodes.clone(),
                    all_nodes,
                    state: pb::PoolState::Creating as i32,
                    overcommit_ratio: ratio,
                    capabilities: Some(capabilities.clone()),
                    created_unix_seconds: now(),
                    ..Default::default()
                };
                let saga = CreatePool { pool_id: id.clone(), name: name.clone(), nodes: nodes.clone(), initialised: vec![], info: None };
                let mut txn = Txn::new();
                txn.expect_absent(keys::pool(&id))
                    .put(keys::pool(&id), &pool)
                    .expect_absent(keys::pool_name(&name))
                    .put_raw(keys::pool_name(&name), id.clone().into_bytes())
                    .put_raw(keys::pool_secret(&id), sealed.clone());
                add_saga(&mut txn, &task_id, &saga, &id)?;
                txn.commit(repo).await?;
                Ok(pb::PoolOperation { pool: Some(pool), task_id })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(Response::new(op))
    }

    async fn get_pool(&self, req: Request<pb::GetPoolRequest>) -> Rpc<pb::Pool> {
        Ok(Response::new(records::pool(&self.app.repo, &req.into_inner().pool).await?.value))
    }

    async fn list_pools(&self, req: Request<pb::ListPoolsRequest>) -> Rpc<pb::ListPoolsResponse> {
        let r = req.into_inner();
        let pools = self.app.repo.list::<pb::Pool>(keys::POOLS, None, 0).await?;
        let pools = pools
            .into_iter()
            .map(|(_, p)| p.value)
            .filter(|p| r.kind == 0 || p.kind == r.kind)
            .filter(|p| r.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .collect();
        Ok(Response::new(pb::ListPoolsResponse { pools }))
    }

    async fn update_pool(&self, req: Request<pb::UpdatePoolRequest>) -> Rpc<pb::Pool> {
        let r = req.into_inner();
        let pool = records::pool(&self.app.repo, &r.pool).await?.value;
        check_labels(&r.labels)?;
        let ratio = r.overcommit_ratio.map(check_ratio).transpose()?;
        if r.description.as_ref().is_some_and(|d| d.len() > 1024) {
            return Err(ApiError::invalid("the description is longer than 1024 characters").into());
        }
        let updated = self
            .app
            .repo
            .update::<pb::Pool>(&keys::pool(&pool.id), |p| {
                if let Some(d) = &r.description {
                    p.description = d.clone();
                }
                for (k, v) in &r.labels {
                    if v.is_empty() {
                        p.labels.remove(k);
                    } else {
                        p.labels.insert(k.clone(), v.clone());
                    }
                }
                if let Some(ratio) = ratio {
                    if ratio < p.overcommit_ratio {
                        let limit = provisioning_limit(p.capacity.unwrap_or_default().total_bytes, ratio);
                        if p.provisioned_bytes > limit {
                            return Err(ApiError::precondition(format!(
                                "overcommit {ratio} would allow {limit} bytes, but {} are already provisioned",
                                p.provisioned_bytes
                            )));
                        }
                    }
                    p.overcommit_ratio = ratio;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(updated))
    }

    async fn delete_pool(&self, req: Request<pb::DeletePoolRequest>) -> Rpc<pb::PoolOperation> {
        let repo = &self.app.repo;
        let pool = records::pool(repo, &req.into_inner().pool).await?;
        let op = repo
            .retry(|| async {
                let current = records::pool(repo, &pool.value.id).await?;
                let mut p = current.value;
                // Counted inside the retry: a volume created meanwhile changed
                // the pool record (its provisioned bytes), so the CAS below fails.
                let mut txn = Txn::new();
                let array_managed = p.capabilities.as_ref().is_some_and(|c| c.array_managed);
                if array_managed {
                    // The array's LUNs are not ours to delete: their records
                    // go with the pool, unless a VM or a task uses one.
                    for (key, v) in repo.list::<pb::Volume>(&keys::pool_volumes(&p.id), None, 0).await? {
                        if v.value.attachment.is_some() || !v.value.task_id.is_empty() {
                            return Err(ApiError::precondition(format!("pool {}'s volume {} is in use; detach it first", p.name, v.value.name)));
                        }
                        txn.expect(&key, v.revision).delete(&key);
                        txn.delete(keys::volume_pool(&v.value.id)).delete(keys::volume_name(&p.id, &v.value.name));
                    }
                } else {
                    let volumes = repo.count(&keys::pool_volumes(&p.id)).await?;
                    if volumes > 0 {
                        return Err(ApiError::precondition(format!("pool {} still has {volumes} volume(s); delete them first", p.name)));
                    }
                }
                if p.state == pb::PoolState::Creating as i32 || p.state == pb::PoolState::Deleting as i32 {
                    return Err(ApiError::precondition(format!("pool {} is busy (being created or deleted)", p.name)));
                }
                let task_id = new_id();
                let nodes: Vec<String> = p.nodes.iter().map(|n| n.node_id.clone()).collect();
                let saga = DeletePool { pool_id: p.id.clone(), name: p.name.clone(), nodes, previous_state: p.state };
                p.state = pb::PoolState::Deleting as i32;
                let pkey = keys::pool(&p.id);
                txn.expect(&pkey, current.revision).put(&pkey, &p);
                add_saga(&mut txn, &task_id, &saga, &p.id)?;
                txn.commit(repo).await?;
                Ok(pb::PoolOperation { pool: Some(p), task_id })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(Response::new(op))
    }

    async fn get_pool_metrics(&self, req: Request<pb::GetPoolMetricsRequest>) -> Rpc<pb::PoolMetrics> {
        let pool = records::pool(&self.app.repo, &req.into_inner().pool).await?.value;
        let volumes = self.app.repo.list::<pb::Volume>(&keys::pool_volumes(&pool.id), None, 0).await?;
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for (_, v) in &volumes {
            *by_state.entry(state_name(v.value.state).to_owned()).or_default() += 1;
        }
        let capacity = pool.capacity.unwrap_or_default();
        Ok(Response::new(pb::PoolMetrics {
            pool_id: pool.id.clone(),
            capacity: Some(capacity),
            provisioned_bytes: pool.provisioned_bytes,
            provisioning_limit_bytes: provisioning_limit(capacity.total_bytes, overcommit_ratio(&pool)),
            volume_count: volumes.len() as u64,
            volumes_by_state: by_state.into_iter().collect(),
            history: crate::capacity_history::of(&self.app, &pool.id).await?,
            nodes: pool.nodes,
        }))
    }
}
