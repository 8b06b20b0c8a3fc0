//! Step helpers shared by the volume sagas.

use limiquantix_api::v1 as pb;

use super::SagaCtx;
use crate::error::ApiResult;
use crate::keys;
use crate::nodes::node_error;

/// Edits the volume record (compare-and-swap, retried).
pub async fn update_volume(
    ctx: &SagaCtx,
    pool_id: &str,
    volume_id: &str,
    change: impl FnMut(&mut pb::Volume) -> ApiResult<()>,
) -> ApiResult<pb::Volume> {
    let (v, ()) = ctx.app.repo.update::<pb::Volume, ()>(&keys::volume(pool_id, volume_id), change).await?;
    Ok(v)
}

/// Ends the operation this saga runs on the volume: back to `state`, no task.
pub async fn release_volume(ctx: &SagaCtx, pool_id: &str, volume_id: &str, state: i32) -> ApiResult<()> {
    let task = ctx.task_id.clone();
    update_volume(ctx, pool_id, volume_id, |v| {
        if v.task_id == task {
            v.task_id.clear();
            v.state = state;
        }
        Ok(())
    })
    .await
    .map(drop)
}

/// Asks the node to unplug the volume from the VM; a VM that is gone has lost the disk too.
pub async fn detach_from_vm(ctx: &SagaCtx, node_id: &str, volume_id: &str, vm: &str) -> ApiResult<()> {
    let mut client = ctx.app.nodes.client(&ctx.app.repo, node_id).await?;
    let req = pb::NodeDetachVolumeRequest { volume_id: volume_id.to_owned(), domain: vm.to_owned(), timeout_seconds: 0 };
    match client.detach_volume(req).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(node_error(node_id, e)),
    }
}
