//! Write an image over a storage array's volume (a direct-mode iSCSI LUN,
//! which the node cannot make: "import onto an unused LUN").
//!
//! ```text
//! 0. mark-writing    — done by the API call, after the caller confirmed
//!                      that everything on the volume is replaced (state
//!                      writing, busy). undo: back to its previous state.
//! 1. write-on-node   — the node inspects the image and writes it (streams
//!                      progress); a retry writes it again from the start.
//! 2. finish          — the volume is available again.
//! ```
//!
//! Once the node has started writing, the old content is gone: from step 1
//! on nothing is undone. A write that fails for good, or is cancelled, leaves
//! the volume in error saying it holds part of the image.

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{self, release_volume};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::error::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteImage {
    pub pool_id: String,
    pub volume_id: String,
    pub node_id: String,
    pub path: String,
    pub format: i32,
    pub previous_state: i32,
}

impl Saga for WriteImage {
    const KIND: &'static str = "volume.write_image";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark-writing", restore),
            Step { name: "write-on-node", action: write_on_node, undo: None },
            Step { name: "finish", action: finish, undo: None },
        ]
    }

    fn point_of_no_return() -> usize {
        1
    }

    fn abandon<'a>(ctx: &'a SagaCtx, s: &'a mut Self, error: &'a ApiError) -> StepFuture<'a> {
        Box::pin(async move {
            // The node refuses a bad image or a volume that changed before it writes a byte.
            if matches!(error.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::NotFound) {
                return release_volume(ctx, &s.pool_id, &s.volume_id, s.previous_state).await;
            }
            let partial = ApiError::new(
                error.code(),
                format!("{}; the image was written only in part: the volume's old content is gone, write the image again", error.message),
            );
            common::volume_in_error(ctx, &s.pool_id, &s.volume_id, &partial).await
        })
    }
}

fn restore<'a>(ctx: &'a SagaCtx, s: &'a mut WriteImage) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &s.pool_id, &s.volume_id, s.previous_state))
}

fn write_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut WriteImage) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let req = pb::NodeWriteImageRequest {
            pool_id: s.pool_id.clone(),
            volume_id: s.volume_id.clone(),
            path: s.path.clone(),
            format: s.format,
        };
        common::follow_node_operation(ctx, &s.node_id, "the image write", client.write_image(req)).await.map(drop)
    })
}

fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut WriteImage) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &s.pool_id, &s.volume_id, pb::VolumeState::Available as i32))
}
