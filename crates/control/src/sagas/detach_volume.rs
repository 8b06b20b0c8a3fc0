//! Detach a volume from its VM.
//!
//! ```text
//! 0. mark             — done by the API call (volume busy).
//!                       undo: idle again, still attached.
//! 1. detach-on-node   — the node unplugs it and waits until QEMU released it.
//! 2. finish           — state available, no attachment.
//! ```

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{detach_from_vm, finish_volume, release_volume};
use super::{Saga, SagaCtx, Step, StepFuture};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachVolume {
    pub pool_id: String,
    pub volume_id: String,
    pub node_id: String,
    pub vm: String,
}

impl Saga for DetachVolume {
    const KIND: &'static str = "volume.detach";

    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark", still_attached),
            Step { name: "detach-on-node", action: detach_on_node, undo: None },
            Step { name: "finish", action: finish, undo: None },
        ]
    }
}

fn still_attached<'a>(ctx: &'a SagaCtx, s: &'a mut DetachVolume) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &s.pool_id, &s.volume_id, pb::VolumeState::Attached as i32))
}

fn detach_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut DetachVolume) -> StepFuture<'a> {
    Box::pin(detach_from_vm(ctx, &s.node_id, &s.volume_id, &s.vm))
}

fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut DetachVolume) -> StepFuture<'a> {
    Box::pin(finish_volume(ctx, &s.pool_id, &s.volume_id, pb::VolumeState::Available as i32, |v| v.attachment = None))
}
