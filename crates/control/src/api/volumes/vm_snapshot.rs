//! Snapshots through a running VM: of one attached volume, or of every
//! volume attached read-write to a VM at one instant (see the vm_snapshot
//! saga), optionally quiesced through the guest agent.

use super::*;
use crate::sagas::vm_snapshot::VmSnapshot;

/// The VM and node that have `v` open read-write, if any.
pub(super) fn open_by(v: &pb::Volume) -> Option<(&str, &str)> {
    match &v.attachment {
        Some(a) if v.state == pb::VolumeState::Attached as i32 && !a.read_only => Some((&a.vm, &a.node_id)),
        _ => None,
    }
}

impl VolumeApi {
    /// Reserves snapshot `name` of `only` (attached to `vm`) or of every
    /// volume `vm` has open read-write, and starts the saga.
    pub(super) async fn start_vm_snapshot(&self, vm: &str, only: Option<&pb::Volume>, name: &str, quiesce: pb::Quiesce) -> ApiResult<pb::SnapshotOperation> {
        let repo = &self.app.repo;
        let volumes: Vec<pb::Volume> = match only {
            Some(v) => vec![v.clone()],
            None => {
                let all = repo.list::<pb::Volume>(keys::VOLUMES, None, 0).await?;
                all.into_iter().map(|(_, v)| v.value).filter(|v| open_by(v).is_some_and(|(on, _)| on == vm)).collect()
            }
        };
        let Some(first) = volumes.first() else {
            return Err(ApiError::not_found(format!("no volume is attached read-write to VM {vm}")));
        };
        let node = open_by(first).map(|(_, n)| n.to_owned()).unwrap_or_default();
        if let Some(other) = volumes.iter().find(|v| open_by(v).map(|(_, n)| n) != Some(node.as_str())) {
            return Err(ApiError::precondition(format!(
                "VMs named {vm} run on more than one node (volumes {} and {}): snapshot their volumes one by one",
                first.name, other.name
            )));
        }
        self.online_node(&node).await?;
        for v in &volumes {
            let pool = records::pool(repo, &v.pool_id).await?.value;
            require_feature(&pool, v, VolumeFeature::Snapshot)?;
        }
        let op = repo
            .retry(|| async {
                let task_id = new_id();
                let mut txn = Txn::new();
                let (mut targets, mut snapshots) = (Vec::new(), Vec::new());
                for planned in &volumes {
                    let current = records::volume(repo, &planned.id).await?;
                    let mut v = current.value;
                    ensure_idle(&v)?;
                    if open_by(&v) != Some((vm, node.as_str())) {
                        return Err(ApiError::precondition(format!("volume {} was detached or moved meanwhile; look again", v.name)));
                    }
                    refuse_change(&self.app, &v, Change::Write("snapshotted")).await?;
                    let skey = keys::snapshot(&v.id, name);
                    if repo.get_raw(&skey).await?.is_some() {
                        return Err(ApiError::already_exists(format!("volume {} already has a snapshot named {name}", v.name)));
                    }
                    targets.push(SnapshotTarget {
                        pool_id: v.pool_id.clone(),
                        volume_id: v.id.clone(),
                        node_id: node.clone(),
                        name: name.to_owned(),
                        volume_state: v.state,
                        domain: vm.to_owned(),
                    });
                    let snap = pb::Snapshot { volume_id: v.id.clone(), name: name.to_owned(), vm: vm.to_owned(), ..Default::default() };
                    txn.expect_absent(&skey).put(&skey, &snap);
                    snapshots.push(snap);
                    v.task_id = task_id.clone();
                    let vkey = keys::volume(&v.pool_id, &v.id);
                    txn.expect(&vkey, current.revision).put(&vkey, &v);
                }
                let resource = targets[0].volume_id.clone();
                let saga = VmSnapshot { vm: vm.to_owned(), node_id: node.clone(), name: name.to_owned(), quiesce: quiesce as i32, targets };
                add_saga(&mut txn, &task_id, &saga, &resource)?;
                txn.commit(repo).await?;
                Ok(pb::SnapshotOperation { snapshot: snapshots.first().cloned(), task_id, snapshots })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(op)
    }
}
