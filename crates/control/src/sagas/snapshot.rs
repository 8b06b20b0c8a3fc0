//! Snapshots of a volume: create, revert, delete. Each holds the volume busy
//! for its duration (one operation per volume).
//!
//! create: 0. reserve (API: snapshot record, volume busy; undo: forget it)
//!         1. snapshot-on-node (undo: the node deletes it)
//!         2. finish (volume idle, count +1)
//! revert: 0. mark (API: busy; undo: idle)  1. revert-on-node  2. finish
//! delete: 0. mark (API: busy; undo: idle)  1. delete-on-node  2. forget
//!         (a refusal at 1 unwinds; from 2 on it only moves forward)

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::{delete_snapshot_on_node, release_volume, update_volume};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotTarget {
    pub pool_id: String,
    pub volume_id: String,
    pub node_id: String,
    pub name: String,
    pub volume_state: i32,
    /// The running VM that has the volume open: its snapshots are made and
    /// deleted through the VM's QEMU (on `node_id`, the VM's node).
    #[serde(default)]
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSnapshot(pub SnapshotTarget);
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevertSnapshot(pub SnapshotTarget);
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteSnapshot(pub SnapshotTarget);

impl Saga for CreateSnapshot {
    const KIND: &'static str = "snapshot.create";
    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", forget_reserved),
            Step { name: "snapshot-on-node", action: create_on_node, undo: Some(|c, s| delete_on_node(c, &s.0)) },
            Step { name: "finish", action: finish_create, undo: None },
        ]
    }
}

impl Saga for RevertSnapshot {
    const KIND: &'static str = "snapshot.revert";
    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark", |c, s| idle(c, &s.0)),
            Step { name: "revert-on-node", action: revert_on_node, undo: None },
            Step { name: "finish", action: |c, s| Box::pin(recount_and_idle(c, &s.0)), undo: None },
        ]
    }
}

impl Saga for DeleteSnapshot {
    const KIND: &'static str = "snapshot.delete";
    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("mark", |c, s| idle(c, &s.0)),
            Step { name: "delete-on-node", action: |c, s| delete_on_node(c, &s.0), undo: None },
            Step { name: "forget", action: forget_deleted, undo: None },
        ]
    }
    /// A refusal by the node changed nothing: it unwinds. Once the node has
    /// deleted the snapshot, the records must follow.
    fn point_of_no_return() -> usize {
        2
    }
    fn abandon<'a>(ctx: &'a SagaCtx, s: &'a mut Self, error: &'a crate::error::ApiError) -> StepFuture<'a> {
        Box::pin(super::common::volume_in_error(ctx, &s.0.pool_id, &s.0.volume_id, error))
    }
}

fn idle<'a>(ctx: &'a SagaCtx, t: &'a SnapshotTarget) -> StepFuture<'a> {
    Box::pin(release_volume(ctx, &t.pool_id, &t.volume_id, t.volume_state))
}

fn forget_reserved<'a>(ctx: &'a SagaCtx, s: &'a mut CreateSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let t = &s.0;
        let mut txn = Txn::new();
        txn.delete(keys::snapshot(&t.volume_id, &t.name));
        txn.commit(&ctx.app.repo).await?;
        release_volume(ctx, &t.pool_id, &t.volume_id, t.volume_state).await
    })
}

fn create_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut CreateSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let t = &s.0;
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &t.node_id).await?;
        let req = pb::CreateVolumeSnapshotRequest { pool_id: t.pool_id.clone(), volume_id: t.volume_id.clone(), name: t.name.clone() };
        let snap = crate::nodes::call(&t.node_id, "snapshot the volume", ctx.app.nodes.deadlines.call, client.create_volume_snapshot(req)).await?;
        let record = pb::Snapshot { volume_id: t.volume_id.clone(), name: t.name.clone(), created_unix_seconds: snap.created_unix_seconds, ..Default::default() };
        let mut txn = Txn::new();
        txn.put(keys::snapshot(&t.volume_id, &t.name), &record);
        txn.commit(&ctx.app.repo).await.map(drop)
    })
}

pub(super) fn delete_on_node<'a>(ctx: &'a SagaCtx, t: &'a SnapshotTarget) -> StepFuture<'a> {
    Box::pin(delete_snapshot_on_node(ctx, t))
}

fn finish_create<'a>(ctx: &'a SagaCtx, s: &'a mut CreateSnapshot) -> StepFuture<'a> {
    Box::pin(recount_and_idle(ctx, &s.0))
}

fn revert_on_node<'a>(ctx: &'a SagaCtx, s: &'a mut RevertSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let t = &s.0;
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &t.node_id).await?;
        let req = pb::RevertVolumeSnapshotRequest { pool_id: t.pool_id.clone(), volume_id: t.volume_id.clone(), name: t.name.clone() };
        crate::nodes::call(&t.node_id, "revert the snapshot", ctx.app.nodes.deadlines.call, client.revert_volume_snapshot(req)).await?;
        Ok(())
    })
}

fn forget_deleted<'a>(ctx: &'a SagaCtx, s: &'a mut DeleteSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let mut txn = Txn::new();
        txn.delete(keys::snapshot(&s.0.volume_id, &s.0.name));
        txn.commit(&ctx.app.repo).await?;
        recount_and_idle(ctx, &s.0).await
    })
}

/// Ends a snapshot operation: the volume's snapshot count from the store, and
/// the volume back to its state, idle.
pub(super) async fn recount_and_idle(ctx: &SagaCtx, t: &SnapshotTarget) -> crate::error::ApiResult<()> {
    let count = ctx.app.repo.count(&keys::volume_snapshots(&t.volume_id)).await?;
    let task = ctx.task_id.clone();
    update_volume(ctx, &t.pool_id, &t.volume_id, |v| {
        v.snapshot_count = count;
        if v.task_id == task {
            v.task_id.clear();
            v.state = t.volume_state;
        }
        Ok(())
    })
    .await
    .map(drop)
}
