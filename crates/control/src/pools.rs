//! Pool helpers shared by the API and the sagas, and the leader's pool
//! watcher: it refreshes capacity from a node that has the pool ready, and
//! initialises shared pools on nodes that joined later.

use std::sync::Arc;

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::tasks::now;

/// Secrets of a pool config by field name (see `PoolConfig::take_secrets`),
/// stored sealed apart from the pool record.
pub type PoolSecrets = std::collections::BTreeMap<String, String>;

/// The config without its secrets, and the secrets.
pub fn split_secrets(mut config: pb::PoolConfig) -> (pb::PoolConfig, PoolSecrets) {
    let secrets = config.take_secrets();
    (config, secrets)
}

/// The full config a node needs to initialise the pool (secrets put back).
pub async fn node_pool_config(app: &App, pool_id: &str) -> ApiResult<pb::PoolConfig> {
    let repo = &app.repo;
    let pool = repo
        .get::<pb::Pool>(&keys::pool(pool_id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pool {pool_id} does not exist")))?
        .value;
    let mut config = pool.config.unwrap_or_default();
    let secret_key = keys::pool_secret(pool_id);
    if let Some((stored, _)) = repo.get_raw(&secret_key).await? {
        let bytes = app.secrets.open(&secret_key, &stored)?;
        let secrets: PoolSecrets =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("pool secrets: {e}")))?;
        config.put_secrets(&secrets);
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

/// Calls the pool watcher makes at once.
const REFRESH_CONCURRENCY: usize = 8;

/// What one node said about one pool.
struct NodeAnswer {
    pool_id: String,
    node_id: String,
    result: ApiResult<pb::PoolInfo>,
    /// The node was (re)initialised, not just asked.
    initialised: bool,
}

/// One pass of the leader's pool watcher: every (pool, node) pair is asked
/// at once, at most REFRESH_CONCURRENCY together, each within the refresh
/// deadline: a hung node delays only its own answers, never offline
/// detection or the other nodes' pools. With `allocations`, each pool's
/// volumes' allocations are recorded too (from one node that answered).
pub async fn refresh_all(app: &Arc<App>, allocations: bool) -> ApiResult<()> {
    use futures::StreamExt;
    let pools = app.repo.list::<pb::Pool>(keys::POOLS, None, 0).await?;
    let nodes = app.repo.list::<pb::Node>(keys::NODES, None, 0).await?;
    let mut work = Vec::new();
    for (_, pool) in &pools {
        let pool = &pool.value;
        if pool.state != pb::PoolState::Ready as i32 && pool.state != pb::PoolState::Error as i32 {
            continue;
        }
        let mut targets: Vec<String> = pool.nodes.iter().map(|s| s.node_id.clone()).collect();
        if pool.all_nodes {
            for (_, n) in &nodes {
                let n = &n.value;
                let supports = n.supported_kinds.iter().any(|k| k.kind == pool.kind);
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
            let ready = pool.nodes.iter().any(|s| s.node_id == node_id && s.phase == pb::PoolPhase::Ready as i32);
            work.push((pool.id.clone(), node_id, ready));
        }
    }
    let answers: Vec<NodeAnswer> = futures::stream::iter(work)
        .map(|(pool_id, node_id, ready)| async move {
            let (result, initialised) = ask_node(app, &pool_id, &node_id, ready).await;
            NodeAnswer { pool_id, node_id, result, initialised }
        })
        .buffer_unordered(REFRESH_CONCURRENCY)
        .collect()
        .await;
    let mut by_pool: std::collections::BTreeMap<String, Vec<NodeAnswer>> = Default::default();
    for answer in answers {
        by_pool.entry(answer.pool_id.clone()).or_default().push(answer);
    }
    for (pool_id, answers) in by_pool {
        let gone = std::sync::atomic::AtomicBool::new(false);
        let updated = app
            .repo
            .update::<pb::Pool>(&keys::pool(&pool_id), |p| {
                // Deleted (or being deleted) meanwhile: nothing to record.
                let deleting = p.state != pb::PoolState::Ready as i32 && p.state != pb::PoolState::Error as i32;
                gone.store(deleting, std::sync::atomic::Ordering::Relaxed);
                if deleting {
                    return Ok(());
                }
                for a in &answers {
                    let status = match &a.result {
                        Ok(info) => pool_node_status(&a.node_id, info),
                        Err(e) => pool_node_error(&a.node_id, e.message.clone()),
                    };
                    match p.nodes.iter_mut().find(|s| s.node_id == a.node_id) {
                        Some(s) => *s = status,
                        None => p.nodes.push(status),
                    }
                    if let Some(c) = a.result.as_ref().ok().and_then(|i| i.capacity) {
                        p.capacity = Some(c);
                    }
                }
                summarize_state(p);
                Ok(())
            })
            .await;
        if updated.as_ref().is_err_and(|e| e.code() == tonic::Code::NotFound) {
            gone.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            let pool = updated?;
            if !gone.load(std::sync::atomic::Ordering::Relaxed)
                && let Err(e) = crate::capacity_history::sample(app, &pool, crate::tasks::now(), app.config.capacity_history).await
            {
                tracing::warn!(pool = %pool_id, error = %e, "cannot record the pool's capacity");
            }
        }
        if gone.into_inner() {
            // A delete raced this pass: a node this pass initialised forgets it again.
            for a in answers.iter().filter(|a| a.initialised && a.result.is_ok()) {
                forget_on_node(app, &pool_id, &a.node_id).await;
            }
            continue;
        }
        let array_managed = pools
            .iter()
            .any(|(_, p)| p.value.id == pool_id && p.value.capabilities.as_ref().is_some_and(|c| c.array_managed));
        let Some(ready) = answers.iter().find(|a| a.result.is_ok()) else { continue };
        if array_managed {
            if let Err(e) = crate::array_volumes::reconcile(app, &pool_id, &ready.node_id).await {
                tracing::warn!(pool = %pool_id, node = %ready.node_id, error = %e, "cannot take in the storage array's volumes");
            }
        } else if allocations && let Err(e) = crate::allocations::refresh(app, &pool_id, &ready.node_id).await {
            tracing::warn!(pool = %pool_id, node = %ready.node_id, error = %e, "cannot measure the pool's volumes");
        }
    }
    Ok(())
}

/// The pool's status on one node: asked if the node has it ready,
/// initialised otherwise (or if the node lost it). Whether it initialised.
async fn ask_node(app: &App, pool_id: &str, node_id: &str, ready: bool) -> (ApiResult<pb::PoolInfo>, bool) {
    let deadline = app.nodes.deadlines.refresh;
    let mut client = match app.nodes.client(&app.repo, node_id).await {
        Ok(c) => c,
        Err(e) => return (Err(e), false),
    };
    if ready {
        let req = pb::GetStoragePoolInfoRequest { pool_id: pool_id.to_owned(), count_volumes: false };
        match crate::nodes::call(node_id, "report the pool", deadline, client.get_storage_pool_info(req)).await {
            Err(e) if e.code() == tonic::Code::NotFound => {} // the node forgot it (state lost): initialise again
            other => return (other, false),
        }
    }
    let config = match node_pool_config(app, pool_id).await {
        Ok(c) => c,
        Err(e) => return (Err(e), false),
    };
    let req = pb::InitStoragePoolRequest { pool_id: pool_id.to_owned(), config: Some(config) };
    (crate::nodes::call(node_id, "initialise the pool", app.nodes.deadlines.call, client.init_storage_pool(req)).await, true)
}

async fn forget_on_node(app: &App, pool_id: &str, node_id: &str) {
    let forgot = async {
        let mut client = app.nodes.client(&app.repo, node_id).await?;
        let req = pb::DestroyStoragePoolRequest { pool_id: pool_id.to_owned() };
        crate::nodes::call(node_id, "forget the pool", app.nodes.deadlines.call, client.destroy_storage_pool(req)).await
    }
    .await;
    if let Err(e) = forgot {
        tracing::warn!(pool = pool_id, node = node_id, error = %e, "cannot undo a pool initialisation that raced its delete");
    }
}
