//! VolumeService: volumes, their snapshots, attachments.

use std::sync::Arc;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::volume_service_server::VolumeService;
use limiquantix_node::convert;
use limiquantix_storage::model::{VolumeFeature, validate_size};
use tonic::{Request, Response, Status};

use super::{add_saga, ensure_pool_ready, ensure_room, is_shared, new_id, placement_node};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::records::{self, check_labels, ensure_idle, ensure_no_task, known, parse_name, parse_volume_id, state_name};
use crate::repo::Txn;
use crate::sagas::attach_volume::AttachVolume;
use crate::sagas::create_volume::CreateVolume;
use crate::sagas::delete_volume::DeleteVolume;
use crate::sagas::detach_volume::DetachVolume;
use crate::sagas::resize_volume::ResizeVolume;
use crate::sagas::snapshot::{CreateSnapshot, DeleteSnapshot, RevertSnapshot, SnapshotTarget};
use crate::tasks::now;

mod attach;
mod create;
mod listing;
mod move_volume;
mod rules;
mod vm_snapshot;
mod write_image;

use create::NewVolume;
use rules::{Change, refuse_change, refuse_if_dependents, require_available, require_feature};

type Rpc<T> = Result<Response<T>, Status>;

pub struct VolumeApi {
    app: Arc<App>,
}

impl VolumeApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}


impl VolumeApi {
    /// Marks `v` busy with a new saga in one transaction (the CAS on the
    /// volume's revision makes exactly one of racing operations win). An
    /// operation that writes or removes the volume says so in `change`; it is
    /// checked against templates and linked clones after the read the CAS
    /// guards (a clone ending meanwhile changes the revision).
    async fn start<S: crate::sagas::Saga>(
        &self,
        volume_id: &str,
        change: Option<Change<'_>>,
        check: impl Fn(&pb::Volume) -> ApiResult<()>,
        build: impl Fn(&pb::Volume) -> ApiResult<(S, i32)>,
        create: Option<(String, &pb::Snapshot)>,
    ) -> ApiResult<pb::VolumeOperation> {
        let repo = &self.app.repo;
        let op = repo
            .retry(|| async {
                let current = records::volume(repo, volume_id).await?;
                let mut v = current.value;
                ensure_idle(&v)?;
                check(&v)?;
                if let Some(change) = change {
                    refuse_change(&self.app, &v, change).await?;
                }
                if let Some((key, snap)) = &create
                    && repo.get_raw(key).await?.is_some() {
                        return Err(ApiError::already_exists(format!("volume {} already has a snapshot named {}", v.name, snap.name)));
                    }
                let (saga, new_state) = build(&v)?;
                let task_id = new_id();
                v.task_id = task_id.clone();
                v.state = new_state;
                let vkey = keys::volume(&v.pool_id, &v.id);
                let mut txn = Txn::new();
                txn.expect(&vkey, current.revision).put(&vkey, &v);
                if let Some((key, snap)) = &create {
                    txn.expect_absent(key).put(key, *snap);
                }
                add_saga(&mut txn, &task_id, &saga, &v.id)?;
                txn.commit(repo).await?;
                Ok(pb::VolumeOperation { volume: Some(v), task_id })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(op)
    }

    async fn online_node(&self, node_id: &str) -> ApiResult<pb::Node> {
        self.app.nodes.online(&self.app.repo, node_id).await
    }

    /// The node that works on an existing volume: a local pool's own node
    /// (which must be online); for a shared pool, any online node that has
    /// the pool ready.
    async fn serving_node(&self, v: &pb::Volume) -> ApiResult<String> {
        let pool = records::pool(&self.app.repo, &v.pool_id).await?.value;
        self.serving_node_in(v, &pool).await
    }

    /// `serving_node` for a volume of `pool`, which the caller has loaded.
    async fn serving_node_in(&self, v: &pb::Volume, pool: &pb::Pool) -> ApiResult<String> {
        if !is_shared(pool) {
            return Ok(self.online_node(&v.node_id).await?.id);
        }
        placement_node(&self.app, pool).await
    }
}

#[tonic::async_trait]
impl VolumeService for VolumeApi {
    async fn create_volume(&self, req: Request<pb::CreateVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        let r = req.into_inner();
        if let Some(pb::volume_source::Source::Image(_)) = r.source.as_ref().and_then(|s| s.source.as_ref()) {
            return Err(ApiError::invalid("images are imported with ImportVolume").into());
        }
        let new = NewVolume {
            volume_id: Some(r.volume_id),
            pool: r.pool,
            name: r.name,
            labels: r.labels,
            spec: r.spec.unwrap_or_default(),
            source: r.source,
            node_id: None,
        };
        Ok(Response::new(self.create(new).await?))
    }

    async fn clone_volume(&self, req: Request<pb::CloneVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        let r = req.into_inner();
        let src = records::volume(&self.app.repo, &r.source_volume_id).await?.value;
        known::<pb::CloneMode>("clone mode", r.mode)?;
        let source = pb::VolumeSource {
            source: Some(pb::volume_source::Source::Clone(pb::CloneSource { source_volume_id: src.id.clone(), mode: r.mode })),
        };
        let new = NewVolume {
            volume_id: Some(r.volume_id),
            pool: src.pool_id.clone(),
            name: r.name,
            labels: r.labels,
            spec: r.spec.unwrap_or_default(),
            source: Some(source),
            node_id: None,
        };
        Ok(Response::new(self.create(new).await?))
    }

    async fn import_volume(&self, req: Request<pb::ImportVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        let r = req.into_inner();
        let format: pb::ImageFormat = known("image format", r.format)?;
        if format == pb::ImageFormat::Unspecified {
            return Err(ApiError::invalid("say the image's format: qcow2, raw, vmdk, vhdx or vdi").into());
        }
        if !r.onto_volume_id.is_empty() {
            return Ok(Response::new(self.write_image_onto(r, format).await?));
        }
        let source = pb::VolumeSource {
            source: Some(pb::volume_source::Source::Image(pb::ImageSource { path: r.path, format: r.format })),
        };
        let new = NewVolume {
            volume_id: Some(r.volume_id),
            pool: r.pool,
            name: r.name,
            labels: r.labels,
            spec: r.spec.unwrap_or_default(),
            source: Some(source),
            node_id: Some(r.node_id),
        };
        Ok(Response::new(self.create(new).await?))
    }

    async fn get_volume(&self, req: Request<pb::GetVolumeRequest>) -> Rpc<pb::Volume> {
        Ok(Response::new(records::volume(&self.app.repo, &req.into_inner().volume_id).await?.value))
    }

    async fn list_volumes(&self, req: Request<pb::ListVolumesRequest>) -> Rpc<pb::ListVolumesResponse> {
        let r = req.into_inner();
        let repo = &self.app.repo;
        let page_size = match r.page_size {
            0 => 100,
            n if n > 1000 => return Err(ApiError::invalid(format!("page size {n} is above 1000")).into()),
            n => n as usize,
        };
        let state: pb::VolumeState = known("state", r.state)?;
        let order: pb::VolumeOrder = known("order", r.order_by)?;
        let prefix = if r.pool.is_empty() { keys::VOLUMES.to_owned() } else { keys::pool_volumes(&records::pool(repo, &r.pool).await?.value.id) };
        let filter = listing::Filter { state, name_prefix: &r.name_prefix, labels: &r.labels };
        let (volumes, next) = if order == pb::VolumeOrder::Unspecified && !r.descending {
            listing::by_id(repo, &prefix, &filter, page_size, &r.page_token).await?
        } else {
            listing::sorted(repo, &prefix, &filter, order, r.descending, page_size, &r.page_token).await?
        };
        Ok(Response::new(pb::ListVolumesResponse { volumes, next_page_token: next }))
    }

    async fn move_volume(&self, req: Request<pb::MoveVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        Ok(Response::new(self.start_move(req.into_inner()).await?))
    }

    async fn resize_volume(&self, req: Request<pb::ResizeVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        let r = req.into_inner();
        validate_size("new size", r.new_size_bytes).map_err(ApiError::from)?;
        let current = records::volume(&self.app.repo, &r.volume_id).await?.value;
        crate::api::refuse_array_managed(&records::pool(&self.app.repo, &current.pool_id).await?.value, "grow")?;
        if r.new_size_bytes < current.size_bytes {
            return Err(ApiError::invalid(format!(
                "volume {} is {} bytes; shrinking it to {} bytes is not supported (it would destroy data)",
                current.name, current.size_bytes, r.new_size_bytes
            ))
            .into());
        }
        if r.new_size_bytes == current.size_bytes {
            return Ok(Response::new(pb::VolumeOperation { volume: Some(current), task_id: String::new() }));
        }
        let attached = current.state == pb::VolumeState::Attached as i32;
        let node = match (&current.attachment, attached) {
            (Some(a), true) => self.online_node(&a.node_id).await?.id,
            _ => self.serving_node(&current).await?,
        };
        let repo = &self.app.repo;
        let delta = r.new_size_bytes - current.size_bytes;
        // The volume's and the pool's CAS in one transaction: exactly one of
        // racing operations wins, and the pool is charged for the growth.
        let op = repo
            .retry(|| async {
                let vv = records::volume(repo, &current.id).await?;
                let mut v = vv.value;
                ensure_idle(&v)?;
                if v.state != pb::VolumeState::Available as i32 && v.state != pb::VolumeState::Attached as i32 {
                    return Err(ApiError::precondition(format!("volume {} is {}", v.name, state_name(v.state))));
                }
                if v.size_bytes != current.size_bytes {
                    return Err(ApiError::precondition(format!("volume {} was resized meanwhile; look again", v.name)));
                }
                refuse_change(&self.app, &v, Change::Write("resized")).await?;
                let pkey = keys::pool(&v.pool_id);
                let p = repo.get::<pb::Pool>(&pkey).await?.ok_or_else(|| ApiError::not_found("the pool was deleted"))?;
                ensure_room(&p.value, delta)?;
                let mut pool = p.value;
                pool.provisioned_bytes += delta;
                let task_id = new_id();
                let saga = ResizeVolume {
                    pool_id: v.pool_id.clone(),
                    volume_id: v.id.clone(),
                    node_id: node.clone(),
                    old_size_bytes: v.size_bytes,
                    new_size_bytes: r.new_size_bytes,
                    live_domain: v.attachment.as_ref().filter(|_| attached).map(|a| a.vm.clone()).unwrap_or_default(),
                    previous_state: v.state,
                    made_size_bytes: None,
                };
                v.task_id = task_id.clone();
                v.state = pb::VolumeState::Resizing as i32;
                let vkey = keys::volume(&v.pool_id, &v.id);
                let mut txn = Txn::new();
                txn.expect(&vkey, vv.revision).put(&vkey, &v).expect(&pkey, p.revision).put(&pkey, &pool);
                add_saga(&mut txn, &task_id, &saga, &v.id)?;
                txn.commit(repo).await?;
                Ok(pb::VolumeOperation { volume: Some(v), task_id })
            })
            .await?;
        crate::sagas::runner::start(&self.app, &op.task_id);
        Ok(Response::new(op))
    }

    async fn delete_volume(&self, req: Request<pb::DeleteVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        let id = parse_volume_id(&req.into_inner().volume_id)?;
        let current = records::volume(&self.app.repo, &id).await?.value;
        crate::api::refuse_array_managed(&records::pool(&self.app.repo, &current.pool_id).await?.value, "remove")?;
        if let Some(a) = current.attachment.as_ref().filter(|_| current.state == pb::VolumeState::Attached as i32) {
            return Err(ApiError::precondition(format!(
                "volume {} is attached to VM {} on node {}; detach it first",
                current.name, a.vm, a.node_id
            ))
            .into());
        }
        let node = self.serving_node(&current).await?;
        let op = self
            .start(
                &id,
                Some(Change::Delete),
                |v| {
                    if v.state == pb::VolumeState::Attached as i32 {
                        return Err(ApiError::precondition(format!("volume {} is attached; detach it first", v.name)));
                    }
                    Ok(())
                },
                |v| {
                    let saga = DeleteVolume {
                        pool_id: v.pool_id.clone(),
                        volume_id: v.id.clone(),
                        name: v.name.clone(),
                        node_id: node.clone(),
                        previous_state: v.state,
                    };
                    Ok((saga, pb::VolumeState::Deleting as i32))
                },
                None,
            )
            .await?;
        Ok(Response::new(op))
    }

    async fn create_snapshot(&self, req: Request<pb::CreateSnapshotRequest>) -> Rpc<pb::SnapshotOperation> {
        let r = req.into_inner();
        let name = records::parse_new_snapshot_name(&r.name)?;
        let quiesce: pb::Quiesce = known("quiesce", r.quiesce)?;
        if !r.vm.is_empty() {
            if !r.volume_id.is_empty() {
                return Err(ApiError::invalid("give a volume or a VM to snapshot, not both").into());
            }
            attach::check_vm_name(&r.vm)?;
            return Ok(Response::new(self.start_vm_snapshot(&r.vm, None, &name, quiesce).await?));
        }
        let current = records::volume(&self.app.repo, &r.volume_id).await?.value;
        let pool = records::pool(&self.app.repo, &current.pool_id).await?.value;
        require_feature(&pool, &current, VolumeFeature::Snapshot)?;
        // A running VM has it open: only its QEMU may snapshot it.
        if let Some((vm, _)) = vm_snapshot::open_by(&current) {
            return Ok(Response::new(self.start_vm_snapshot(vm, Some(&current), &name, quiesce).await?));
        }
        if quiesce == pb::Quiesce::Required {
            return Err(ApiError::precondition(format!(
                "volume {} is not attached to a running VM: there is no guest to quiesce (a detached volume is snapshotted as it was left)",
                current.name
            ))
            .into());
        }
        let node = self.serving_node_in(&current, &pool).await?;
        let snap = pb::Snapshot { volume_id: current.id.clone(), name: name.clone(), ..Default::default() };
        let op = self
            .start(
                &current.id,
                Some(Change::Write("snapshotted")),
                |v| require_available(v, "snapshots of a volume attached read-only are taken once it is detached"),
                |v| Ok((CreateSnapshot(target(v, &name, &node)), v.state)),
                Some((keys::snapshot(&current.id, &name), &snap)),
            )
            .await?;
        Ok(Response::new(pb::SnapshotOperation { snapshot: Some(snap.clone()), task_id: op.task_id, snapshots: vec![snap] }))
    }

    async fn list_snapshots(&self, req: Request<pb::ListSnapshotsRequest>) -> Rpc<pb::ListSnapshotsResponse> {
        let v = records::volume(&self.app.repo, &req.into_inner().volume_id).await?.value;
        let snaps = self.app.repo.list::<pb::Snapshot>(&keys::volume_snapshots(&v.id), None, 0).await?;
        Ok(Response::new(pb::ListSnapshotsResponse { snapshots: snaps.into_iter().map(|(_, s)| s.value).collect() }))
    }

    async fn revert_snapshot(&self, req: Request<pb::RevertSnapshotRequest>) -> Rpc<pb::VolumeOperation> {
        let r = req.into_inner();
        let name = parse_name("snapshot", &r.name)?;
        let current = records::volume(&self.app.repo, &r.volume_id).await?.value;
        records::snapshot(&self.app.repo, &current, &name).await?;
        let node = self.serving_node(&current).await?;
        let op = self
            .start(
                &current.id,
                Some(Change::Write("reverted")),
                |v| require_available(v, "detach it before reverting"),
                |v| Ok((RevertSnapshot(target(v, &name, &node)), v.state)),
                None,
            )
            .await?;
        Ok(Response::new(op))
    }

    async fn delete_snapshot(&self, req: Request<pb::DeleteSnapshotRequest>) -> Rpc<pb::SnapshotOperation> {
        let r = req.into_inner();
        let name = parse_name("snapshot", &r.name)?;
        let current = records::volume(&self.app.repo, &r.volume_id).await?.value;
        let snap = records::snapshot(&self.app.repo, &current, &name).await?;
        // A running VM that has it open deletes it through its QEMU, on its node.
        let open = vm_snapshot::open_by(&current).map(|(vm, node)| (vm.to_owned(), node.to_owned()));
        let node = match &open {
            Some((_, node)) => self.online_node(node).await?.id,
            None => self.serving_node(&current).await?,
        };
        let op = self
            .start(
                &current.id,
                None,
                |v| match vm_snapshot::open_by(v) {
                    found if found.map(|(vm, n)| (vm.to_owned(), n.to_owned())) != open => {
                        Err(ApiError::precondition(format!("volume {} was attached or detached meanwhile; look again", v.name)))
                    }
                    _ if v.attachment.as_ref().is_some_and(|a| a.read_only) => Err(ApiError::precondition(format!(
                        "volume {} is attached read-only to VM {}; its snapshots are deleted once it is detached",
                        v.name,
                        v.attachment.as_ref().map_or("", |a| a.vm.as_str())
                    ))),
                    _ => Ok(()),
                },
                |v| {
                    let mut t = target(v, &name, &node);
                    t.domain = open.as_ref().map(|(vm, _)| vm.clone()).unwrap_or_default();
                    Ok((DeleteSnapshot(t), v.state))
                },
                None,
            )
            .await?;
        Ok(Response::new(pb::SnapshotOperation { snapshot: Some(snap.value.clone()), task_id: op.task_id, snapshots: vec![snap.value] }))
    }

    async fn attach_volume(&self, req: Request<pb::AttachVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        Ok(Response::new(self.attach(req.into_inner()).await?))
    }

    /// A template for good: no node work, one CAS on the record.
    async fn mark_template(&self, req: Request<pb::MarkTemplateRequest>) -> Rpc<pb::Volume> {
        let id = parse_volume_id(&req.into_inner().volume_id)?;
        let repo = &self.app.repo;
        let v = repo
            .retry(|| async {
                let current = records::volume(repo, &id).await?;
                let mut v = current.value;
                if v.template {
                    return Ok(v);
                }
                ensure_idle(&v)?;
                require_available(&v, "a template is made of an available (detached) volume")?;
                v.template = true;
                let key = keys::volume(&v.pool_id, &v.id);
                let mut txn = Txn::new();
                txn.expect(&key, current.revision).put(&key, &v);
                txn.commit(repo).await?;
                Ok(v)
            })
            .await?;
        Ok(Response::new(v))
    }

    async fn detach_volume(&self, req: Request<pb::DetachVolumeRequest>) -> Rpc<pb::VolumeOperation> {
        Ok(Response::new(self.detach(&req.into_inner().volume_id).await?))
    }
}

fn target(v: &pb::Volume, name: &str, node: &str) -> SnapshotTarget {
    SnapshotTarget {
        pool_id: v.pool_id.clone(),
        volume_id: v.id.clone(),
        node_id: node.to_owned(),
        name: name.to_owned(),
        volume_state: v.state,
        domain: String::new(),
    }
}
