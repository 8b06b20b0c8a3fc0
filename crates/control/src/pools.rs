//! Pool helpers shared by the API and the sagas, and the leader's pool
//! watcher: it refreshes capacity from a node that has the pool ready, and
//! initialises shared pools on nodes that joined later.

use std::sync::Arc;

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::nodes::node_error;
use crate::repo::Repo;
use crate::tasks::now;

/// Secrets of a pool config, stored apart from the pool record.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PoolSecrets {
    pub ceph_key: String,
    pub chap_password: String,
}

pub fn kind_of(config: &pb::PoolConfig) -> pb::PoolKind {
    use pb::pool_config::Backend as B;
    match &config.backend {
        Some(B::Local(_)) => pb::PoolKind::Local,
        Some(B::Nfs(_)) => pb::PoolKind::Nfs,
        Some(B::Ceph(_)) => pb::PoolKind::Ceph,
        Some(B::Iscsi(_)) => pb::PoolKind::Iscsi,
        None => pb::PoolKind::Unspecified,
    }
}

/// The config without its secrets, and the secrets.
pub fn split_secrets(mut config: pb::PoolConfig) -> (pb::PoolConfig, PoolSecrets) {
    use pb::pool_config::Backend as B;
    let mut secrets = PoolSecrets::default();
    match config.backend.as_mut() {
        Some(B::Ceph(c)) => secrets.ceph_key = std::mem::take(&mut c.key),
        Some(B::Iscsi(i)) => secrets.chap_password = std::mem::take(&mut i.chap_password),
        _ => {}
    }
    (config, secrets)
}

/// The full config a node needs to initialise the pool (secrets put back).
pub async fn node_pool_config(repo: &Repo, pool_id: &str) -> ApiResult<pb::PoolConfig> {
    use pb::pool_config::Backend as B;
    let pool = repo
        .get::<pb::Pool>(&keys::pool(pool_id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pool {pool_id} does not exist")))?
        .value;
    let mut config = pool.config.unwrap_or_default();
    if let Some((bytes, _)) = repo.get_raw(&keys::pool_secret(pool_id)).await? {
        let secrets: PoolSecrets =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("pool secrets: {e}")))?;
        match config.backend.as_mut() {
            Some(B::Ceph(c)) => c.key = secrets.ceph_key,
            Some(B::Iscsi(i)) => i.chap_password = secrets.chap_password,
            _ => {}
        }
    }
    Ok(config)
}

pub fn pool_node_status(node_id: &str, info: &pb::PoolInfo) -> pb::PoolNodeStatus {
    pb::PoolNodeStatus { node_id: node_id.to_owned(), phase: info.phase, message: info.message.clone(), updated_unix_seconds: now() }
}

/// A node that could not initialise the pool, and why.
pub fn pool_node_error(node_id: &str, message: String) -> pb::PoolNodeStatus {
    pb::PoolNodeStatus { node_id: node_id.to_owned(), phase: pb::PoolPhase::Error as i32, message, updated_unix_seconds: now() }
}

/// Ready where at least one node has it ready.
pub fn summarize_state(pool: &mut pb::Pool) {
    if pool.state != pb::PoolState::Ready as i32 && pool.state != pb::PoolState::Error as i32 {
        return; // creating or deleting: the saga decides
    }
    let ready = pool.nodes.iter().any(|n| n.phase == pb::PoolPhase::Ready as i32);
    pool.state = if ready { pb::PoolState::Ready as i32 } else { pb::PoolState::Error as i32 };
    pool.message = if ready {
        String::new()
    } else {
        pool.nodes.iter().map(|n| format!("node {}: {}", n.node_id, n.message)).collect::<Vec<_>>().join("; ")
    };
}

/// One pass of the leader's pool watcher.
pub async fn refresh_all(app: &Arc<App>) -> ApiResult<()> {
    let pools = app.repo.list::<pb::Pool>(keys::POOLS, None, 0).await?;
    let nodes = app.repo.list::<pb::Node>(keys::NODES, None, 0).await?;
    for (_, pool) in pools {
        let pool = pool.value;
        if pool.state != pb::PoolState::Ready as i32 && pool.state != pb::PoolState::Error as i32 {
            continue;
        }
        let mut statuses = pool.nodes.clone();
        let mut targets: Vec<String> = statuses.iter().map(|s| s.node_id.clone()).collect();
        if pool.all_nodes {
            let kind = pool.kind;
            for (_, n) in &nodes {
                let n = &n.value;
                let supports = n.supported_kinds.iter().any(|k| k.kind == kind);
                if supports && !n.draining && !targets.contains(&n.id) {
                    targets.push(n.id.clone());
                }
            }
        }
        for node_id in targets {
            let Some((_, node)) = nodes.iter().find(|(_, n)| n.value.id == node_id) else { continue };
            // A starting node keeps the status it had: not an error, not called yet.
            if app.nodes.is_starting(&node_id) || !app.nodes.is_online(&node.value) {
                continue;
            }
            let known = statuses.iter().position(|s| s.node_id == node_id);
            let result = async {
                let mut client = app.nodes.client(&app.repo, &node_id).await?;
                let ready = known.is_some_and(|i| statuses[i].phase == pb::PoolPhase::Ready as i32);
                if ready {
                    let req = pb::GetStoragePoolInfoRequest { pool_id: pool.id.clone(), count_volumes: false };
                    match client.get_storage_pool_info(req).await {
                        Ok(info) => return Ok(info.into_inner()),
                        Err(e) if e.code() != tonic::Code::NotFound => return Err(node_error(&node_id, e)),
                        Err(_) => {} // the node forgot it (state lost): initialise again
                    }
                }
                let config = node_pool_config(&app.repo, &pool.id).await?;
                let req = pb::InitStoragePoolRequest { pool_id: pool.id.clone(), config: Some(config) };
                client.init_storage_pool(req).await.map(|r| r.into_inner()).map_err(|e| node_error(&node_id, e))
            }
            .await;
            let (status, capacity) = match result {
                Ok(info) => (pool_node_status(&node_id, &info), info.capacity),
                Err(e) => (pool_node_error(&node_id, e.message), None),
            };
            match known {
                Some(i) => statuses[i] = status,
                None => statuses.push(status),
            }
            let id = pool.id.clone();
            let statuses_now = statuses.clone();
            app.repo
                .update::<pb::Pool>(&keys::pool(&id), |p| {
                    p.nodes = statuses_now.clone();
                    if let Some(c) = capacity {
                        p.capacity = Some(c);
                    }
                    summarize_state(p);
                    Ok(())
                })
                .await?;
        }
    }
    Ok(())
}
