//! MoveVolume: the checks before a move and its reservation (see the
//! move_volume saga for the steps).

use super::*;
use crate::sagas::move_volume::MoveVolume;

impl VolumeApi {
    pub(super) async fn start_move(&self, r: pb::MoveVolumeRequest) -> ApiResult<pb::VolumeOperation> {
        let id = parse_volume_id(&r.volume_id)?;
        let asked: pb::VolumeFormat = known("format", r.format)?;
        let repo = &self.app.repo;
        let current = records::volume(repo, &id).await?.value;
        let from = records::pool(repo, &current.pool_id).await?.value;
        let to = records::pool(repo, &r.pool).await?.value;
        if to.id == from.id {
            return Err(ApiError::invalid(format!("volume {} is in pool {} already", current.name, to.name)));
        }
        crate::api::refuse_array_managed(&from, "move")?;
        crate::api::refuse_array_managed(&to, "move")?;
        ensure_pool_ready(&to)?;
        let live = live_domain(&current)?;
        refuse_if_dependents(&self.app, &current, "moved (it is the base of linked clones)").await?;
        // The node that serves the volume copies it when the target pool is
        // ready there (the VM's node for a live move); otherwise a node of
        // the target pool pulls it from the source's node.
        let serving = match current.attachment.as_ref().filter(|_| !live.is_empty()) {
            Some(a) => self.online_node(&a.node_id).await?.id,
            None => self.serving_node_in(&current, &from).await?,
        };
        let ready = |node: &str| to.nodes.iter().any(|s| s.node_id == node && s.phase == pb::PoolPhase::Ready as i32);
        let (node, source_node_id) = if ready(&serving) {
            (serving, String::new())
        } else if !live.is_empty() {
            return Err(ApiError::precondition(format!(
                "volume {} is attached to VM {live} on node {serving}, where pool {} is not ready: a running VM's disk moves within its node (detach it to move it to another node)",
                current.name, to.name
            )));
        } else {
            let mut target = None;
            for s in to.nodes.iter().filter(|s| s.phase == pb::PoolPhase::Ready as i32) {
                if self.online_node(&s.node_id).await.is_ok() {
                    target = Some(s.node_id.clone());
                    break;
                }
            }
            let target = target.ok_or_else(|| ApiError::precondition(format!("pool {} is ready on no online node", to.name)))?;
            (target, serving)
        };
        // Snapshots move with the volume where its file can be copied whole.
        let with_snapshots = current.snapshot_count > 0 && !r.drop_snapshots;
        if with_snapshots {
            let local = |p: &pb::Pool| p.kind == pb::PoolKind::Local as i32;
            let whole_file = live.is_empty()
                && source_node_id.is_empty()
                && local(&from)
                && local(&to)
                && current.format == pb::VolumeFormat::Qcow2 as i32
                && current.backing_volume_id.is_empty()
                && matches!(asked, pb::VolumeFormat::Unspecified | pb::VolumeFormat::Qcow2);
            if !whole_file {
                let snaps = repo.list::<pb::Snapshot>(&keys::volume_snapshots(&current.id), None, 0).await?;
                let names: Vec<String> = snaps.into_iter().map(|(_, s)| s.value.name).collect();
                return Err(ApiError::precondition(format!(
                    "volume {} has snapshots ({}) that cannot move with it (they do only for a detached, self-contained qcow2 volume between local pools of one node); delete them, or move it with drop_snapshots (lqctl: --drop-snapshots)",
                    current.name,
                    names.join(", ")
                )));
            }
        }
        let formats = to.capabilities.as_ref().map(|c| c.formats.clone()).unwrap_or_default();
        let format = match asked {
            pb::VolumeFormat::Unspecified if formats.contains(&current.format) => current.format,
            pb::VolumeFormat::Unspecified => *formats.first().ok_or_else(|| ApiError::internal(format!("pool {} reports no formats", to.name)))?,
            f if formats.contains(&(f as i32)) => f as i32,
            f => return Err(ApiError::invalid(format!("pool {} does not store {} volumes", to.name, f.as_str_name()))),
        };
        let op = repo
            .retry(|| async {
                let vv = records::volume(repo, &id).await?;
                let mut v = vv.value;
                ensure_idle(&v)?;
                if live_domain(&v)? != live {
                    return Err(ApiError::precondition(format!("volume {} was attached or detached meanwhile; look again", v.name)));
                }
                if v.pool_id != from.id || v.snapshot_count != current.snapshot_count {
                    return Err(ApiError::precondition(format!("volume {} changed meanwhile; look again", v.name)));
                }
                if repo.get_raw(&keys::volume_name(&to.id, &v.name)).await?.is_some() {
                    return Err(ApiError::already_exists(format!("pool {} has a volume named {} already", to.name, v.name)));
                }
                let tkey = keys::pool(&to.id);
                let p = repo.get::<pb::Pool>(&tkey).await?.ok_or_else(|| ApiError::not_found("the target pool was deleted"))?;
                ensure_room(&p.value, v.size_bytes)?;
                let mut target = p.value;
                target.provisioned_bytes += v.size_bytes;
                let task_id = new_id();
                let saga = MoveVolume {
                    volume_id: v.id.clone(),
                    name: v.name.clone(),
                    from_pool_id: from.id.clone(),
                    to_pool_id: to.id.clone(),
                    node_id: node.clone(),
                    size_bytes: v.size_bytes,
                    format,
                    previous_state: v.state,
                    to_local: !is_shared(&to),
                    copy: None,
                    live_domain: live.clone(),
                    source_node_id: source_node_id.clone(),
                    export: None,
                    with_snapshots,
                };
                v.task_id = task_id.clone();
                v.state = pb::VolumeState::Moving as i32;
                let vkey = keys::volume(&v.pool_id, &v.id);
                let mut txn = Txn::new();
                txn.expect(&vkey, vv.revision).put(&vkey, &v).expect(&tkey, p.revision).put(&tkey, &target);
                add_saga(&mut txn, &task_id, &saga, &v.id)?;
                txn.commit(repo).await?;
                Ok(pb::VolumeOperation { volume: Some(v), task_id })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(op)
    }
}

/// The VM a move mirrors the volume for ("" when it is not attached): an
/// attached volume moves live, read-write attachments only.
fn live_domain(v: &pb::Volume) -> ApiResult<String> {
    match (pb::VolumeState::try_from(v.state), &v.attachment) {
        (Ok(pb::VolumeState::Available), _) => Ok(String::new()),
        (Ok(pb::VolumeState::Attached), Some(a)) if a.read_only => Err(ApiError::precondition(format!(
            "volume {} is attached read-only to VM {}; detach it to move it",
            v.name, a.vm
        ))),
        (Ok(pb::VolumeState::Attached), Some(a)) => Ok(a.vm.clone()),
        _ => Err(ApiError::precondition(format!("volume {} is {}; only an available or attached volume is moved", v.name, state_name(v.state)))),
    }
}
