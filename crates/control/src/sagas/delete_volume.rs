//! Delete a volume, its snapshots included.
//!
//! ```text
//! 0. mark-deleting     — done by the API call (state deleting, busy).
//!                        undo: back to its previous state.
//! 1. delete-on-node    — the node deletes the volume with its snapshots, in
//!                        one go that it refuses as a whole (linked clones, a
//!                        VM holding it) before anything is gone; idempotent.
//! 2. forget            — the records (snapshots too) go and the pool gets
//!                        the space back.
//! ```
//!
//! A refusal at delete-on-node unwinds: the volume is back as it was, its
//! snapshots intact. From forget on the saga only moves forward.

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{self, release_volume};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::ApiError;
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteVolume {
    pub pool_id: String,
    pub volume_id: String,
    pub name: String,
    pub node_id: String,
    pub previous_state: i32,
}

impl Saga for DeleteVolume {
    const KIND: &'static str = "volume.delete";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark-deleting", restore),
            Step { name: "delete-on-node", action: delete_on_node, undo: None },
            Step { name: "forget", action: forget, undo: None },
        ]
    }

    fn point_of_no_return() -> usize {
        2
    }

    fn abandon<'a>(ctx: &'a SagaCtx, s: &'a mut Self, error: &'a ApiError) -> StepFuture<'a> {
        Box::pin(common::volume_in_error(ctx, &s.pool_id, &s.volume_id, error))
    }
}

fn restore<'a>(ctx: &'a SagaCtx, s: &'a mut DeleteVolume) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &s.pool_id, &s.volume_id, s.previous_state))
}

fn delete_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut DeleteVolume) -> StepFuture<'a> {
    Box::pin(common::delete_on_node(ctx, &s.node_id, &s.pool_id, &s.volume_id))
}

fn forget<'a>(ctx: &'a SagaCtx, s: &'a mut DeleteVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let vkey = keys::volume(&s.pool_id, &s.volume_id);
            let Some(v) = repo.get::<pb::Volume>(&vkey).await? else { return Ok(()) };
            let pkey = keys::pool(&s.pool_id);
            let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let mut pool = p.value;
            pool.provisioned_bytes = pool.provisioned_bytes.saturating_sub(v.value.size_bytes);
            let mut txn = Txn::new();
            for (key, _) in repo.list::<pb::Snapshot>(&keys::volume_snapshots(&s.volume_id), None, 0).await? {
                txn.delete(key);
            }
            txn.expect(&vkey, v.revision)
                .delete(&vkey)
                .delete(keys::volume_pool(&s.volume_id))
                .delete(keys::volume_name(&s.pool_id, &s.name))
                .expect(&pkey, p.revision)
                .put(&pkey, &pool);
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}
