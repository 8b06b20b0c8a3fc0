//! Step helpers shared by the sagas.

use limiquantix_api::v1 as pb;

use super::SagaCtx;
use crate::error::ApiResult;
use crate::keys;
use crate::repo::Txn;

/// Follows a node's operation stream (progress, then the volume) until it
/// ends; `what` names the operation in errors. The node reports at least
/// every 10 s while it works: silence means it hung. Cancelling the task
/// drops the stream, which makes the node stop and remove what it began.
pub async fn follow_node_operation(
    ctx: &SagaCtx,
    node: &str,
    what: &str,
    start: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<pb::VolumeOperationEvent>>, tonic::Status>>,
) -> ApiResult<pb::VolumeInfo> {
    let run = async {
        let silence = ctx.app.nodes.deadlines.silence;
        let mut stream = crate::nodes::call(node, &format!("start {what}"), ctx.app.nodes.deadlines.call, start).await?;
        loop {
            let next = tokio::time::timeout(silence, stream.message()).await.map_err(|_| crate::nodes::silent(node, what, silence))?;
            match next.map_err(|e| crate::nodes::node_error(node, e))? {
                Some(pb::VolumeOperationEvent { event: Some(pb::volume_operation_event::Event::Progress(p)) }) => ctx.progress(p).await,
                Some(pb::VolumeOperationEvent { event: Some(pb::volume_operation_event::Event::Volume(v)) }) => return Ok(v),
                Some(_) => {}
                None => return Err(crate::error::ApiError::unavailable(format!("node {node} ended {what} without a result"))),
            }
        }
    };
    tokio::select! {
        v = run => v,
        _ = ctx.cancelled() => Err(crate::error::ApiError::cancelled("cancelled on request")),
    }
}

/// Edits the volume record (compare-and-swap, retried).
pub async fn update_volume(
    ctx: &SagaCtx,
    pool_id: &str,
    volume_id: &str,
    change: impl Fn(&mut pb::Volume) -> ApiResult<()>,
) -> ApiResult<pb::Volume> {
    ctx.app.repo.update::<pb::Volume>(&keys::volume(pool_id, volume_id), change).await
}

/// Ends the operation this saga runs on the volume: back to `state`, no task.
pub async fn release_volume(ctx: &SagaCtx, pool_id: &str, volume_id: &str, state: i32) -> ApiResult<()> {
    finish_volume(ctx, pool_id, volume_id, state, |_| {}).await
}

/// Ends the operation with its outcome: `outcome` edits the record, which
/// goes to `state` with no task. Once only: a re-run finds the task gone.
pub async fn finish_volume(
    ctx: &SagaCtx,
    pool_id: &str,
    volume_id: &str,
    state: i32,
    outcome: impl Fn(&mut pb::Volume) + Send + Sync,
) -> ApiResult<()> {
    update_volume(ctx, pool_id, volume_id, |v| {
        if v.task_id == ctx.task_id {
            v.task_id.clear();
            v.state = state;
            outcome(v);
        }
        Ok(())
    })
    .await
    .map(drop)
}

/// Ends a saga that could not finish after its point of no return: the
/// volume leaves the operation in state error, with why, for the user to act on.
pub async fn volume_in_error(ctx: &SagaCtx, pool_id: &str, volume_id: &str, error: &crate::error::ApiError) -> ApiResult<()> {
    let message = error.message.clone();
    finish_volume(ctx, pool_id, volume_id, pb::VolumeState::Error as i32, move |v| v.message = message.clone()).await
}

/// Asks the node to unplug the volume from the VM; a VM that is gone has lost the disk too.
pub async fn detach_from_vm(ctx: &SagaCtx, node_id: &str, volume_id: &str, vm: &str) -> ApiResult<()> {
    let mut client = ctx.app.nodes.client(&ctx.app.repo, node_id).await?;
    let req = pb::NodeDetachVolumeRequest { volume_id: volume_id.to_owned(), domain: vm.to_owned(), timeout_seconds: 0 };
    match crate::nodes::call(node_id, "detach the volume", ctx.app.nodes.deadlines.attach, client.detach_volume(req)).await {
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        other => other.map(drop),
    }
}

/// Asks the node to delete the volume (idempotent there).
pub async fn delete_on_node(ctx: &SagaCtx, node_id: &str, pool_id: &str, volume_id: &str) -> ApiResult<()> {
    delete_mirror_destination_on_node(ctx, node_id, pool_id, volume_id, "").await
}

/// `delete_on_node` for the destination of a live move: a mirror of VM
/// `domain`'s disk onto it that a node restart left running is abandoned
/// first (the VM stays on its source).
pub async fn delete_mirror_destination_on_node(ctx: &SagaCtx, node_id: &str, pool_id: &str, volume_id: &str, domain: &str) -> ApiResult<()> {
    let mut client = ctx.app.nodes.client(&ctx.app.repo, node_id).await?;
    let req = pb::NodeDeleteVolumeRequest { pool_id: pool_id.to_owned(), volume_id: volume_id.to_owned(), mirroring_domain: domain.to_owned() };
    let call = crate::nodes::call(node_id, "delete the volume", ctx.app.nodes.deadlines.call, client.delete_volume(req));
    crate::pool_locks::with_lock(ctx, "delete-on-node", pool_id, call).await.map(drop)
}

/// Asks the node to delete one snapshot of the volume.
pub async fn delete_snapshot_on_node(ctx: &SagaCtx, t: &super::snapshot::SnapshotTarget) -> ApiResult<()> {
    let mut client = ctx.app.nodes.client(&ctx.app.repo, &t.node_id).await?;
    let req = pb::DeleteVolumeSnapshotRequest {
        pool_id: t.pool_id.clone(),
        volume_id: t.volume_id.clone(),
        name: t.name.clone(),
        domain: t.domain.clone(),
    };
    crate::nodes::call(&t.node_id, "delete the snapshot", ctx.app.nodes.deadlines.call, client.delete_volume_snapshot(req)).await.map(drop)
}

/// Every node in `nodes` forgets the pool (its data stays), last first; a node
/// leaves the list once done, so a re-run goes on where this one stopped.
pub async fn destroy_pool_on_nodes(ctx: &SagaCtx, pool_id: &str, nodes: &mut Vec<String>) -> ApiResult<()> {
    while let Some(node) = nodes.last().cloned() {
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &node).await?;
        let req = pb::DestroyStoragePoolRequest { pool_id: pool_id.to_owned() };
        crate::nodes::call(&node, "forget the pool", ctx.app.nodes.deadlines.call, client.destroy_storage_pool(req)).await?;
        nodes.pop();
    }
    Ok(())
}

/// Deletes the pool's records: the pool, its name, its secret and its history.
pub async fn forget_pool_records(ctx: &SagaCtx, pool_id: &str, name: &str) -> ApiResult<()> {
    let mut txn = Txn::new();
    txn.delete(keys::pool(pool_id)).delete(keys::pool_name(name)).delete(keys::pool_secret(pool_id)).delete(keys::pool_history(pool_id));
    txn.commit(&ctx.app.repo).await.map(drop)
}
