//! Snapshots of volumes a running VM has open (one volume, or every volume
//! of the VM at one instant), taken by the VM's node through its QEMU, with
//! the guest's filesystems frozen around them when asked.
//!
//! 0. reserve (API: a snapshot record per volume, each volume busy; undo:
//!    forget them)
//! 1. snapshot-through-vm (the node freezes, snapshots, thaws; the records
//!    get how: quiesced, frozen time; undo: the node deletes them)
//! 2. finish (each volume idle, its count refreshed)

use limiquantix_api::v1 as pb;
use serde::{Deserialize, Serialize};

use super::common::release_volume;
use super::snapshot::{SnapshotTarget, delete_on_node, recount_and_idle};
use super::{Saga, SagaCtx, Step, StepFuture};
use crate::keys;
use crate::repo::Txn;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub vm: String,
    pub node_id: String,
    pub name: String,
    pub quiesce: i32,
    /// One per volume, each with `domain` = `vm`.
    pub targets: Vec<SnapshotTarget>,
}

impl Saga for VmSnapshot {
    const KIND: &'static str = "snapshot.create-through-vm";
    fn steps() -> Vec<Step<Self>> {
        vec![
            Step::done_by_api("reserve", forget_reserved),
            Step { name: "snapshot-through-vm", action: snapshot_through_vm, undo: Some(delete_taken) },
            Step { name: "finish", action: finish, undo: None },
        ]
    }
}

fn forget_reserved<'a>(ctx: &'a SagaCtx, s: &'a mut VmSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let mut txn = Txn::new();
        for t in &s.targets {
            txn.delete(keys::snapshot(&t.volume_id, &t.name));
        }
        txn.commit(&ctx.app.repo).await?;
        for t in &s.targets {
            release_volume(ctx, &t.pool_id, &t.volume_id, t.volume_state).await?;
        }
        Ok(())
    })
}

fn snapshot_through_vm<'a>(ctx: &'a SagaCtx, s: &'a mut VmSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        let mut client = ctx.app.nodes.client(&ctx.app.repo, &s.node_id).await?;
        let req = pb::CreateDomainSnapshotRequest {
            domain: s.vm.clone(),
            volumes: s.targets.iter().map(|t| pb::DomainVolume { pool_id: t.pool_id.clone(), volume_id: t.volume_id.clone() }).collect(),
            name: s.name.clone(),
            quiesce: s.quiesce,
        };
        let taken = crate::nodes::call(&s.node_id, "snapshot the VM's volumes", ctx.app.nodes.deadlines.call, client.create_domain_snapshot(req)).await?;
        let mut txn = Txn::new();
        for t in &s.targets {
            let created = taken.snapshots.iter().find(|n| n.volume_id == t.volume_id).map_or(0, |n| n.created_unix_seconds);
            let record = pb::Snapshot {
                volume_id: t.volume_id.clone(),
                name: t.name.clone(),
                created_unix_seconds: created,
                vm: s.vm.clone(),
                quiesced: taken.quiesced,
                frozen_ms: taken.frozen_ms,
                not_quiesced_reason: taken.not_quiesced_reason.clone(),
            };
            txn.put(keys::snapshot(&t.volume_id, &t.name), &record);
        }
        txn.commit(&ctx.app.repo).await.map(drop)
    })
}

fn delete_taken<'a>(ctx: &'a SagaCtx, s: &'a mut VmSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        for t in &s.targets {
            delete_on_node(ctx, t).await?;
        }
        Ok(())
    })
}

fn finish<'a>(ctx: &'a SagaCtx, s: &'a mut VmSnapshot) -> StepFuture<'a> {
    Box::pin(async move {
        for t in &s.targets {
            recount_and_idle(ctx, t).await?;
        }
        Ok(())
    })
}
