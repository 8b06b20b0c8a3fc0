//! Attaching volumes to running VMs and detaching them.

use super::*;

impl VolumeApi {
    /// Hot-plugs the volume into a running VM on its node (read-only for a
    /// template or a base of linked clones).
    pub(super) async fn attach(&self, r: pb::AttachVolumeRequest) -> ApiResult<pb::VolumeOperation> {
        check_vm_name(&r.vm)?;
        known::<pb::DiskBus>("bus", r.bus)?;
        let current = records::volume(&self.app.repo, &r.volume_id).await?.value;
        let pool = records::pool(&self.app.repo, &current.pool_id).await?.value;
        let node_id = if r.node_id.is_empty() { current.node_id.clone() } else { records::parse_node_id(&r.node_id)? };
        if !is_shared(&pool) && node_id != current.node_id {
            return Err(ApiError::precondition(format!(
                "volume {} is on node {}'s local pool; the VM must run on that node",
                current.name, current.node_id
            )));
        }
        let node = self.online_node(&node_id).await?;
        if node.draining {
            return Err(ApiError::precondition(format!("node {} ({}) is draining", node.id, node.hostname)));
        }
        let op = self
            .start(
                &current.id,
                (!r.read_only).then_some(Change::Write("attached read-write (attach it read-only)")),
                |v| match (pb::VolumeState::try_from(v.state), &v.attachment) {
                    (Ok(pb::VolumeState::Available), _) => Ok(()),
                    (Ok(pb::VolumeState::Attached), Some(a)) => Err(ApiError::precondition(format!(
                        "volume {} is already attached to VM {} on node {}; detach it first",
                        v.name, a.vm, a.node_id
                    ))),
                    _ => Err(ApiError::precondition(format!("volume {} is {}", v.name, state_name(v.state)))),
                },
                |v| {
                    let saga = AttachVolume {
                        pool_id: v.pool_id.clone(),
                        volume_id: v.id.clone(),
                        node_id: node_id.clone(),
                        vm: r.vm.clone(),
                        bus: r.bus,
                        target_dev: None,
                        read_only: r.read_only,
                    };
                    Ok((saga, v.state))
                },
                None,
            )
            .await?;
        Ok(op)
    }

    pub(super) async fn detach(&self, volume_id: &str) -> ApiResult<pb::VolumeOperation> {
        let current = records::volume(&self.app.repo, volume_id).await?.value;
        let Some(attachment) = current.attachment.clone().filter(|_| current.state == pb::VolumeState::Attached as i32) else {
            return Err(ApiError::precondition(format!("volume {} is not attached", current.name)));
        };
        self.online_node(&attachment.node_id).await?;
        let op = self
            .start(
                &current.id,
                None,
                |v| {
                    if v.state != pb::VolumeState::Attached as i32 {
                        return Err(ApiError::precondition(format!("volume {} is not attached", v.name)));
                    }
                    Ok(())
                },
                |v| {
                    let saga = DetachVolume {
                        pool_id: v.pool_id.clone(),
                        volume_id: v.id.clone(),
                        node_id: attachment.node_id.clone(),
                        vm: attachment.vm.clone(),
                    };
                    Ok((saga, v.state))
                },
                None,
            )
            .await?;
        Ok(op)
    }
}

pub(super) fn check_vm_name(vm: &str) -> ApiResult<()> {
    if !limiquantix_node::service::is_domain_name(vm) {
        return Err(ApiError::invalid(format!("{vm:?} is not a valid VM name")));
    }
    Ok(())
}
