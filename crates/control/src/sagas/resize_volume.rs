//! Grow a volume; through libvirt when it is attached, so the guest sees it.
//!
//! ```text
//! 0. reserve         — done by the API call (state resizing, busy, the
//!                      growth counted against the pool).
//!                      undo: back to the previous state, space given back.
//! 1. resize-on-node  — the node grows it (live if attached).
//! 2. finish          — the record takes the new size; previous state.
//! ```

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::ApiError;
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResizeVolume {
    pub pool_id: String,
    pub volume_id: String,
    pub node_id: String,
    pub old_size_bytes: u64,
    pub new_size_bytes: u64,
    /// The domain it is attached to, if any.
    pub live_domain: String,
    pub previous_state: i32,
    /// The size the node made: more than asked where storage rounds up (LVM extents).
    #[serde(default)]
    pub made_size_bytes: Option<u64>,
}

impl Saga for ResizeVolume {
    const KIND: &'static str = "volume.resize";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", release),
            Step { name: "resize-on-node", action: resize_on_node, undo: None },
            Step { name: "finish", action: finish, undo: None },
        ]
    }
}

/// One transaction, so a re-run after a crash cannot give the space back twice.
fn release<'a>(ctx: &'a SagaCtx, s: &'a mut ResizeVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let (vkey, pkey) = (keys::volume(&s.pool_id, &s.volume_id), keys::pool(&s.pool_id));
            let Some(v) = repo.get::<pb::Volume>(&vkey).await? else { return Ok(()) };
            if v.value.task_id != ctx.task_id {
                return Ok(()); // released already
            }
            let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let (mut volume, mut pool) = (v.value, p.value);
            volume.task_id.clear();
            volume.state = s.previous_state;
            pool.provisioned_bytes = pool.provisioned_bytes.saturating_sub(s.new_size_bytes - s.old_size_bytes);
            let mut txn = Txn::new();
            txn.expect(&vkey, v.revision).put(&vkey, &volume).expect(&pkey, p.revision).put(&pkey, &pool);
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}

fn resize_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut ResizeVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let req = pb::NodeResizeVolumeRequest {
            pool_id: s.pool_id.clone(),
            volume_id: s.volume_id.clone(),
            new_size_bytes: s.new_size_bytes,
            live_domain: s.live_domain.clone(),
        };
        // A live resize goes through QEMU: it gets hot-plug's deadline.
        let deadline = if s.live_domain.is_empty() { ctx.app.nodes.deadlines.call } else { ctx.app.nodes.deadlines.attach };
        let call = crate::nodes::call(&s.node_id, "resize the volume", deadline, client.resize_volume(req));
        let made = crate::pool_locks::with_lock(ctx, "resize-on-node", &s.pool_id, call).await?;
        s.made_size_bytes = Some(made.size_bytes.max(s.new_size_bytes));
        Ok(())
    })
}

/// The record takes the size the node made, and the pool counts what
/// rounding added, in one transaction.
fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut ResizeVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let made = s.made_size_bytes.unwrap_or(s.new_size_bytes);
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let (vkey, pkey) = (keys::volume(&s.pool_id, &s.volume_id), keys::pool(&s.pool_id));
            let v = repo.get::<pb::Volume>(&vkey).await?.ok_or_else(|| ApiError::internal("volume record vanished"))?;
            if v.value.task_id != ctx.task_id {
                return Ok(()); // finished already
            }
            let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let (mut volume, mut pool) = (v.value, p.value);
            volume.task_id.clear();
            volume.state = s.previous_state;
            volume.size_bytes = made;
            pool.provisioned_bytes += made - s.new_size_bytes;
            let mut txn = Txn::new();
            txn.expect(&vkey, v.revision).put(&vkey, &volume).expect(&pkey, p.revision).put(&pkey, &pool);
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}
