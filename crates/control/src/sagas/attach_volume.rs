//! Attach a volume to a running VM.
//!
//! ```text
//! 0. reserve          — done by the API call (volume busy).
//!                       undo: idle again.
//! 1. attach-on-node   — the node hot-plugs the disk (idempotent).
//!                       undo: the node unplugs it.
//! 2. finish           — state attached, with the VM, node and target.
//! ```

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{detach_from_vm, finish_volume, release_volume};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::tasks::now;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachVolume {
    pub pool_id: String,
    pub volume_id: String,
    pub node_id: String,
    pub vm: String,
    pub bus: i32,
    pub target_dev: Option<String>,
    /// The VM only reads it (`<readonly/>`).
    #[serde(default)]
    pub read_only: bool,
}

impl Saga for AttachVolume {
    const KIND: &'static str = "volume.attach";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", idle),
            Step { name: "attach-on-node", action: attach_on_node, undo: Some(detach_on_node) },
            Step { name: "finish", action: finish, undo: None },
        ]
    }
}

fn idle<'a>(ctx: &'a SagaCtx, s: &'a mut AttachVolume) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &s.pool_id, &s.volume_id, pb::VolumeState::Available as i32))
}

fn attach_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut AttachVolume) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let req = pb::NodeAttachVolumeRequest {
            pool_id: s.pool_id.clone(),
            volume_id: s.volume_id.clone(),
            domain: s.vm.clone(),
            bus: s.bus,
            read_only: s.read_only,
        };
        let resp = crate::nodes::call(&s.node_id, "attach the volume", ctx.app.nodes.deadlines.attach, client.attach_volume(req)).await?;
        s.target_dev = Some(resp.target_dev);
        Ok(())
    })
}

fn detach_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut AttachVolume) -> StepFuture<'a> {
    Box::pin(detach_from_vm(ctx, &s.node_id, &s.volume_id, &s.vm))
}

fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut AttachVolume) -> StepFuture<'a> {
    let attachment = pb::Attachment {
        vm: s.vm.clone(),
        node_id: s.node_id.clone(),
        target_dev: s.target_dev.clone().unwrap_or_default(),
        attached_unix_seconds: now(),
        read_only: s.read_only,
    };
    Box::pin(finish_volume(ctx, &s.pool_id, &s.volume_id, pb::VolumeState::Attached as i32, move |v| {
        v.attachment = Some(attachment.clone())
    }))
}
