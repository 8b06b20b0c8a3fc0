//! Create a volume (empty, clone, from a snapshot, or an imported image).
//!
//! ```text
//! 0. reserve          — done by the API call: the volume record (creating),
//!                       its name, its size counted against the pool, and
//!                       a hold on the source of a clone or copy.
//!                       undo: forget them, give the space and the source back.
//! 1. create-on-node   — an import is inspected by the node first: its
//!                       virtual size is reserved (refused beyond the pool's
//!                       limit) and becomes the size the node must make. Then
//!                       the node makes it (streams progress; cancellable),
//!                       and in one write the record takes the node's facts,
//!                       becomes available, the source is released and the
//!                       saga ends. A crash before that write re-runs the
//!                       step: the node's create is idempotent.
//!                       undo: the node deletes it (idempotent).
//! ```
//!
//! The reservation is the volume record's size while it is created: every
//! step that changes it does so in the same transaction as the pool's count.

use limiquantix_api::v1 as pb;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::common;
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateVolume {
    pub pool_id: String,
    pub volume_id: String,
    pub name: String,
    pub node_id: String,
    /// The NodeCreateVolumeRequest, protobuf-encoded.
    pub node_request: Vec<u8>,
    /// The volume this one is cloned or copied from: held (see
    /// `Volume.held_by_task_ids`) from the reservation until the saga ends.
    #[serde(default)]
    pub source_volume_id: Option<String>,
}


impl Saga for CreateVolume {
    const KIND: &'static str = "volume.create";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", release),
            Step { name: "create-on-node", action: create_on_node, undo: Some(delete_on_node) },
        ]
    }
}

/// Forgets the reserved record and gives the pool its space back.
fn release<'a>(ctx: &'a SagaCtx, s: &'a mut CreateVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let vkey = keys::volume(&s.pool_id, &s.volume_id);
            let mut txn = Txn::new();
            let Some(v) = repo.get::<pb::Volume>(&vkey).await? else {
                return Ok(()); // already released
            };
            txn.expect(&vkey, v.revision).delete(&vkey);
            txn.delete(keys::volume_pool(&s.volume_id)).delete(keys::volume_name(&s.pool_id, &s.name));
            if let Some(p) = repo.get::<pb::Pool>(&keys::pool(&s.pool_id)).await? {
                let mut pool = p.value;
                pool.provisioned_bytes = pool.provisioned_bytes.saturating_sub(v.value.size_bytes);
                txn.expect(keys::pool(&s.pool_id), p.revision).put(keys::pool(&s.pool_id), &pool);
            }
            release_source(ctx, s, &mut txn).await?;
            txn.commit(repo).await.map(drop)
        })
        .await
    })
}

/// Adds to `txn` the end of this saga's hold on its source, if it has one.
async fn release_source(ctx: &SagaCtx, s: &CreateVolume, txn: &mut Txn) -> crate::error::ApiResult<()> {
    let Some(src_id) = &s.source_volume_id else { return Ok(()) };
    let Some(src) = ctx.app.repo.get::<pb::Volume>(&keys::volume(&s.pool_id, src_id)).await? else { return Ok(()) };
    if !src.value.held_by_task_ids.contains(&ctx.task_id) {
        return Ok(());
    }
    let mut holder = src.value;
    holder.held_by_task_ids.retain(|t| *t != ctx.task_id);
    let key = keys::volume(&s.pool_id, src_id);
    txn.expect(&key, src.revision).put(&key, &holder);
    Ok(())
}

/// An import reserves the image's virtual size before anything is copied
/// (idempotent: a re-run finds it reserved).
async fn reserve_image(ctx: &SagaCtx, s: &mut CreateVolume) -> ApiResult<()> {
    {
        let mut req = pb::NodeCreateVolumeRequest::decode(s.node_request.as_slice())
            .map_err(|e| ApiError::internal(format!("saga request: {e}")))?;
        let Some(pb::volume_source::Source::Image(image)) = req.source.as_ref().and_then(|src| src.source.clone()) else {
            return Ok(());
        };
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let inspect = pb::InspectImageRequest { path: image.path, format: image.format };
        let inspected = crate::nodes::call(&s.node_id, "inspect the image", ctx.app.nodes.deadlines.call, client.inspect_image(inspect)).await?;
        let spec = req.spec.get_or_insert_with(Default::default);
        let virtual_size = inspected.virtual_size_bytes;
        if spec.size_bytes != 0 && spec.size_bytes < virtual_size {
            return Err(ApiError::invalid(format!(
                "the image is {virtual_size} bytes, more than the {} bytes asked for; volumes never shrink",
                spec.size_bytes
            )));
        }
        let size = spec.size_bytes.max(virtual_size);
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let (vkey, pkey) = (keys::volume(&s.pool_id, &s.volume_id), keys::pool(&s.pool_id));
            let v = repo.get::<pb::Volume>(&vkey).await?.ok_or_else(|| ApiError::internal("volume record vanished"))?;
            let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let (mut volume, mut pool) = (v.value, p.value);
            if volume.size_bytes >= size {
                return Ok(()); // reserved already (a re-run), or asked for more
            }
            let extra = size - volume.size_bytes;
            crate::api::ensure_room(&pool, extra).map_err(|e| e.context(format!("the image is {size} bytes")))?;
            pool.provisioned_bytes += extra;
            volume.size_bytes = size;
            let mut txn = Txn::new();
            txn.expect(&vkey, v.revision).put(&vkey, &volume).expect(&pkey, p.revision).put(&pkey, &pool);
            txn.commit(repo).await.map(drop)
        })
        .await?;
        // The node makes exactly this size: an image that grew since is refused.
        spec.size_bytes = size;
        s.node_request = req.encode_to_vec();
        Ok(())
    }
}

fn create_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut CreateVolume) -> StepFuture<'a> {
    Box::pin(async move {
        reserve_image(ctx, s).await?;
        let req = pb::NodeCreateVolumeRequest::decode(s.node_request.as_slice())
            .map_err(|e| ApiError::internal(format!("saga request: {e}")))?;
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let start = client.create_volume(req);
        let v = crate::pool_locks::with_lock(ctx, "create-on-node", &s.pool_id, common::follow_node_operation(ctx, &s.node_id, "the create", start))
            .await?;
        make_available(ctx, s, &v).await
    })
}

fn delete_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut CreateVolume) -> StepFuture<'a> {
    Box::pin(common::delete_on_node(ctx, &s.node_id, &s.pool_id, &s.volume_id))
}

/// The volume takes the node's facts and becomes available as the saga ends.
async fn make_available(ctx: &SagaCtx, s: &CreateVolume, created: &pb::VolumeInfo) -> ApiResult<()> {
    {
        let repo = &ctx.app.repo;
        repo.retry(|| async {
            let vkey = keys::volume(&s.pool_id, &s.volume_id);
            let pkey = keys::pool(&s.pool_id);
            let v = repo.get::<pb::Volume>(&vkey).await?.ok_or_else(|| ApiError::internal("volume record vanished"))?;
            let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::internal("pool record vanished"))?;
            let mut volume = v.value;
            if volume.state == pb::VolumeState::Available as i32 {
                return Ok(()); // a resumed saga finds it done
            }
            // What the node made replaces the reservation (they differ only if
            // the node grew a clone to a size asked for).
            let mut pool = p.value;
            pool.provisioned_bytes = pool.provisioned_bytes.saturating_sub(volume.size_bytes) + created.size_bytes;
            volume.state = pb::VolumeState::Available as i32;
            volume.task_id.clear();
            volume.size_bytes = created.size_bytes;
            volume.allocated_bytes = created.allocated_bytes;
            volume.format = created.format;
            volume.backing_volume_id = created.backing_volume_id.clone();
            let mut txn = Txn::new();
            txn.expect(&vkey, v.revision).put(&vkey, &volume).expect(&pkey, p.revision).put(&pkey, &pool);
            release_source(ctx, s, &mut txn).await?;
            // The last step: the volume becomes available as the saga ends.
            ctx.commit_ending(txn).await
        })
        .await
    }
}
