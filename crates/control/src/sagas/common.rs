//! Step helpers shared by the volume sagas.

use limiquantix_api::v1 as pb;

use super::SagaCtx;
use crate::error::ApiResult;
use crate::keys;

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
