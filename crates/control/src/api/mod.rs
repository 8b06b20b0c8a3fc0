//! The gRPC services. Every mutating call validates, reserves what it needs
//! in one compare-and-swap transaction together with its task and saga
//! records, and returns the task id at once; the saga does the rest.

pub mod access;
pub mod nodes;
pub mod pools;
pub mod tasks;
pub mod volumes;

use std::sync::Arc;

use limiquantix_api::v1 as pb;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Txn;
use crate::sagas::{Saga, SagaRecord};

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Adds the task `id` and its saga (same id; its step 0 completed by this
/// very transaction) to `txn`.
pub fn add_saga<S: Saga>(txn: &mut Txn, id: &str, state: &S, resource_id: &str) -> ApiResult<()> {
    let mut task = crate::tasks::new_task(id, S::KIND, resource_id);
    if let Some(step) = SagaRecord::first_step::<S>() {
        crate::tasks::show_step(&mut task, step, None);
    }
    txn.put_raw(keys::task_time(task.created_unix_seconds, id), id.as_bytes().to_vec());
    txn.put(keys::task(id), &task);
    txn.expect_absent(keys::saga(id)).put_raw(keys::saga(id), SagaRecord::new(id, id, state)?.encode());
    Ok(())
}

/// The volumes of an array-managed pool (an iSCSI target's LUNs in direct
/// mode) are made, grown and removed on the array only.
pub fn refuse_array_managed(pool: &pb::Pool, action: &str) -> ApiResult<()> {
    if pool.capabilities.as_ref().is_some_and(|c| c.array_managed) {
        return Err(ApiError::precondition(format!(
            "pool {}'s volumes are the LUNs of its storage array (iscsi, direct mode): {action} them on the array; they appear here by themselves",
            pool.name
        )));
    }
    Ok(())
}

/// Whether every node of the pool reaches the same volumes (Ceph, NFS,
/// iSCSI), as the nodes report for its kind; otherwise (a local pool) the
/// volumes live on the pool's one node.
pub fn is_shared(pool: &pb::Pool) -> bool {
    pool.capabilities.as_ref().is_some_and(|c| c.shared)
}

/// The node a new volume of `pool` is made on: an unshared pool's own node;
/// for a shared pool, an online node that is not draining and has the pool
/// ready.
pub async fn placement_node(app: &Arc<App>, pool: &pb::Pool) -> ApiResult<String> {
    let ready: Vec<&str> = pool
        .nodes
        .iter()
        .filter(|n| n.phase == pb::PoolPhase::Ready as i32)
        .map(|n| n.node_id.as_str())
        .collect();
    if !is_shared(pool) {
        let node_id = pool.node_ids.first().ok_or_else(|| ApiError::internal(format!("pool {} has no node", pool.id)))?;
        let node = app.nodes.online(&app.repo, node_id).await?;
        if node.draining {
            return Err(ApiError::precondition(format!(
                "pool {} lives on node {} ({}), which is draining; end the drain or use another pool",
                pool.name, node.id, node.hostname
            )));
        }
        return Ok(node.id);
    }
    let mut last_error = None;
    for node_id in ready {
        match app.nodes.online(&app.repo, node_id).await {
            Ok(n) if !n.draining => return Ok(n.id),
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        ApiError::unavailable(format!("pool {} is not ready on any online node that is not draining", pool.name))
    }))
}

/// The pool must be usable for new work.
pub fn ensure_pool_ready(pool: &pb::Pool) -> ApiResult<()> {
    if pool.state != pb::PoolState::Ready as i32 {
        let state = pb::PoolState::try_from(pool.state).map(|s| s.as_str_name()).unwrap_or("unknown");
        return Err(ApiError::precondition(format!(
            "pool {} is not ready ({state}{}{})",
            pool.name,
            if pool.message.is_empty() { "" } else { ": " },
            pool.message
        )));
    }
    Ok(())
}

/// The pool's overcommit ratio; 1 (none) when unset.
pub fn overcommit_ratio(pool: &pb::Pool) -> f64 {
    if pool.overcommit_ratio > 0.0 { pool.overcommit_ratio } else { 1.0 }
}

/// How many bytes a pool of `capacity_bytes` may provision at `ratio`.
pub fn provisioning_limit(capacity_bytes: u64, ratio: f64) -> u64 {
    (capacity_bytes as f64 * ratio) as u64
}

/// Checks that `extra` more bytes fit under the pool's provisioning limit.
pub fn ensure_room(pool: &pb::Pool, extra: u64) -> ApiResult<()> {
    let capacity = pool.capacity.unwrap_or_default().total_bytes;
    let ratio = overcommit_ratio(pool);
    let limit = provisioning_limit(capacity, ratio);
    let wanted = pool.provisioned_bytes.saturating_add(extra);
    if wanted > limit {
        return Err(ApiError::exhausted(format!(
            "pool {} cannot take {extra} more bytes: {} of its {limit} bytes are provisioned \
             (capacity {capacity} × overcommit {ratio}); free space, grow the pool or raise its overcommit",
            pool.name, pool.provisioned_bytes
        )));
    }
    Ok(())
}
