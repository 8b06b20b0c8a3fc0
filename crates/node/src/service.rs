//! The NodeStorage gRPC service over the StorageManager.

use std::pin::Pin;
use std::sync::Arc;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_server::NodeStorage;
use limiquantix_storage::model::{DiskBus, Progress, VolumeInfo, VolumeSource};
#[cfg(feature = "libvirt")]
use limiquantix_storage::xml::disk_with_serial;
use limiquantix_storage::{PoolId, Result as StorageResult, StorageManager, VolumeId};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::status::to_status;

type Rpc<T> = Result<Response<T>, Status>;
/// The snapshots a VM took, and how (none when they were there already).
type LiveSnapshotResult = (Vec<limiquantix_storage::model::SnapshotInfo>, Option<limiquantix_storage::LiveSnapshotOutcome>);
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::VolumeOperationEvent, Status>> + Send>>;

/// Progress events that may queue up for a slow client before newer ones are dropped.
const PROGRESS_BUFFER: usize = 64;
/// A long operation reports at least this often, even when nothing moved
/// (an inspection, a flush): its caller tells a working node from a hung one.
const PROGRESS_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long an export lives unless its caller says otherwise or ends it.
const DEFAULT_EXPORT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
/// A live mirror that moves no byte for this long is abandoned.
#[cfg(feature = "libvirt")]
const MIRROR_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The node's hypervisor connection for hot-plug; absent without the
/// `libvirt` feature, and then the hot-plug calls answer UNIMPLEMENTED.
pub struct Hypervisor {
    #[cfg(feature = "libvirt")]
    libvirt: crate::libvirt::Libvirt,
    detach_timeout: std::time::Duration,
    /// The longest a guest agent may take to freeze or thaw.
    #[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
    agent_timeout: std::time::Duration,
    /// The node's copy limit, applied to live mirrors too.
    #[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
    copy_bytes_per_sec: Option<u64>,
    /// Where exports to other nodes listen (None: the node cannot export).
    export_bind: Option<std::net::IpAddr>,
    /// One hot-plug at a time per domain: two would pick the same target.
    domain_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Hypervisor {
    pub fn from_config(config: &crate::NodeConfig) -> Self {
        Self {
            #[cfg(feature = "libvirt")]
            libvirt: crate::libvirt::Libvirt::new(&config.libvirt_uri, std::time::Duration::from_secs(config.libvirt_timeout_secs)),
            detach_timeout: std::time::Duration::from_secs(config.detach_timeout_secs),
            agent_timeout: std::time::Duration::from_secs(config.agent_timeout_secs.max(1)),
            copy_bytes_per_sec: Some(config.limits.copy_mib_per_sec << 20).filter(|r| *r > 0),
            domain_locks: Default::default(),
            export_bind: config.export_address.or(Some(config.listen.ip()).filter(|ip| !ip.is_unspecified())),
        }
    }

    fn domain_lock(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.domain_locks.lock().expect("domain lock table poisoned");
        locks.entry(domain.to_owned()).or_default().clone()
    }
}

/// Grows an attached volume through libvirt so the guest sees the new size.
#[cfg(feature = "libvirt")]
struct LiveDomain<'a> {
    libvirt: &'a crate::libvirt::Libvirt,
    domain: &'a str,
}

#[cfg(feature = "libvirt")]
#[tonic::async_trait]
impl limiquantix_storage::LiveResize for LiveDomain<'_> {
    async fn grow(&self, volume: &VolumeInfo, new_size_bytes: u64) -> StorageResult<()> {
        let live = self.libvirt.domain_xml(self.domain).await?;
        let disk = limiquantix_storage::xml::disk_with_serial(&live, &volume.id.to_string())?.ok_or_else(|| {
            limiquantix_storage::StorageError::precondition(format!("volume {} is not attached to VM {}", volume.id, self.domain))
        })?;
        self.libvirt.block_resize(self.domain, &disk.target_dev, new_size_bytes).await
    }
}

/// Mirrors a disk of a running VM onto a new volume and pivots the VM onto
/// it (see `LiveMirror`). A job this node started and did not finish is
/// abandoned when the mirror is dropped: the VM stays on its source.
#[cfg(feature = "libvirt")]
struct DomainMirror {
    libvirt: crate::libvirt::Libvirt,
    domain: String,
    copy_bytes_per_sec: Option<u64>,
    /// How long the copy may make no progress before it is abandoned.
    stall: std::time::Duration,
}

#[cfg(feature = "libvirt")]
struct AbandonOnDrop {
    libvirt: crate::libvirt::Libvirt,
    domain: String,
    target: String,
    armed: bool,
}

#[cfg(feature = "libvirt")]
impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (libvirt, domain, target) = (self.libvirt.clone(), self.domain.clone(), self.target.clone());
            tokio::spawn(async move {
                if let Err(e) = libvirt.end_block_job(&domain, &target, false).await {
                    tracing::warn!(%domain, %target, error = %e, "cannot abandon a block copy; the VM still runs on its source");
                }
            });
        }
    }
}

#[cfg(feature = "libvirt")]
#[tonic::async_trait]
impl limiquantix_storage::LiveMirror for DomainMirror {
    async fn mirror(&self, volume: VolumeId, destination_xml: &str, progress: limiquantix_storage::model::ProgressSink<'_>) -> StorageResult<()> {
        use limiquantix_storage::StorageError;
        let (libvirt, domain) = (&self.libvirt, self.domain.as_str());
        let live = libvirt.domain_xml(domain).await?;
        let before = disk_with_serial(&live, &volume.to_string())?
            .ok_or_else(|| StorageError::precondition(format!("volume {volume} is not attached to VM {domain}")))?;
        let target = before.target_dev.clone();
        libvirt.start_block_copy(domain, &target, destination_xml).await?;
        let mut job = AbandonOnDrop { libvirt: libvirt.clone(), domain: domain.to_owned(), target: target.clone(), armed: true };
        if let Some(rate) = self.copy_bytes_per_sec {
            libvirt.limit_block_job(domain, &target, rate).await?;
        }
        let mut moved = (0, std::time::Instant::now());
        loop {
            let Some(p) = libvirt.block_job(domain, &target).await? else {
                return Err(StorageError::Internal(format!("the block copy of volume {volume} on VM {domain} ended before it was complete")));
            };
            progress(Progress { phase: "mirroring", done_bytes: p.cur, total_bytes: p.end });
            if p.ready() {
                break;
            }
            if p.cur != moved.0 {
                moved = (p.cur, std::time::Instant::now());
            } else if moved.1.elapsed() > self.stall {
                return Err(StorageError::Unavailable(format!(
                    "the block copy of volume {volume} made no progress for {} s; the VM stays on its source",
                    self.stall.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        libvirt.end_block_job(domain, &target, true).await?;
        job.armed = false;
        let live = libvirt.domain_xml(domain).await?;
        match disk_with_serial(&live, &volume.to_string())? {
            Some(after) if after.xml != before.xml => Ok(()),
            _ => Err(StorageError::Internal(format!("VM {domain} did not switch volume {volume} to its copy"))),
        }
    }

    async fn abandon(&self, volume: VolumeId) -> StorageResult<()> {
        let (libvirt, domain) = (&self.libvirt, self.domain.as_str());
        let live = match libvirt.domain_xml(domain).await {
            Err(limiquantix_storage::StorageError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let Some(disk) = disk_with_serial(&live, &volume.to_string())? else { return Ok(()) };
        if libvirt.block_job(domain, &disk.target_dev).await?.is_some() {
            tracing::info!(%volume, %domain, "abandoning a block copy an earlier try left running");
            libvirt.end_block_job(domain, &disk.target_dev, false).await?;
        }
        Ok(())
    }
}

/// What this node is and can do (GetNodeInfo, and its registration).
pub fn node_info(manager: &StorageManager) -> pb::NodeInfo {
    let uname = rustix::system::uname();
    pb::NodeInfo {
        hostname: uname.nodename().to_string_lossy().into_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        supported_kinds: manager
            .supported_kinds()
            .iter()
            .map(|(k, c)| pb::PoolKindSupport { kind: convert::pool_kind(*k) as i32, capabilities: Some(convert::capabilities(c)) })
            .collect(),
    }
}

/// Whether `name` can be a VM (libvirt domain) name of ours: libvirt itself
/// accepts any name.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_control() || c == '/')
}

fn domain_name(domain: &str) -> Result<&str, Status> {
    if !is_domain_name(domain) {
        return Err(Status::invalid_argument(format!("{domain:?} is not a valid VM (domain) name")));
    }
    Ok(domain)
}

pub struct NodeService {
    manager: Arc<StorageManager>,
    hypervisor: Hypervisor,
}

impl NodeService {
    pub fn new(manager: Arc<StorageManager>, hypervisor: Hypervisor) -> Self {
        Self { manager, hypervisor }
    }

    /// Runs a volume-producing operation, streaming its progress and then the
    /// volume. If the client goes away, the operation is dropped: its copy is
    /// killed and its partial volume removed.
    fn stream_operation<F>(&self, pool: PoolId, op: F) -> EventStream
    where
        F: for<'a> FnOnce(
                Arc<StorageManager>,
                &'a (dyn Fn(Progress) + Send + Sync),
            ) -> Pin<Box<dyn Future<Output = StorageResult<VolumeInfo>> + Send + 'a>>
            + Send
            + 'static,
    {
        let (tx, rx) = mpsc::channel(PROGRESS_BUFFER);
        let manager = self.manager.clone();
        tokio::spawn(async move {
            let last = Arc::new(std::sync::Mutex::new(pb::Progress { phase: "starting".into(), ..Default::default() }));
            let send = {
                let (tx, last) = (tx.clone(), last.clone());
                move |p: pb::Progress| {
                    *last.lock().expect("progress lock") = p.clone();
                    let event = pb::volume_operation_event::Event::Progress(p);
                    // Progress is lossy by design: a full buffer drops an update.
                    let _ = tx.try_send(Ok(pb::VolumeOperationEvent { event: Some(event) }));
                }
            };
            let progress = {
                let send = send.clone();
                move |p: Progress| send(convert::progress_out(&p))
            };
            let keepalive = async {
                loop {
                    tokio::time::sleep(PROGRESS_KEEPALIVE).await;
                    let again = last.lock().expect("progress lock").clone();
                    send(again);
                }
            };
            let result = tokio::select! {
                r = op(manager, &progress) => r,
                _ = keepalive => unreachable!("the keepalive loop never ends"),
                _ = tx.closed() => {
                    tracing::info!(%pool, "client went away; operation cancelled");
                    return;
                }
            };
            let message = match result {
                Ok(v) => Ok(pb::VolumeOperationEvent {
                    event: Some(pb::volume_operation_event::Event::Volume(convert::volume_out(pool, &v))),
                }),
                Err(e) => Err(to_status(e)),
            };
            let _ = tx.send(message).await;
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl NodeStorage for NodeService {
    async fn get_node_info(&self, _: Request<pb::GetNodeInfoRequest>) -> Rpc<pb::NodeInfo> {
        Ok(Response::new(node_info(&self.manager)))
    }

    async fn init_storage_pool(&self, req: Request<pb::InitStoragePoolRequest>) -> Rpc<pb::PoolInfo> {
        let req = req.into_inner();
        let run = async {
            let id = convert::pool_id(&req.pool_id)?;
            let config = convert::pool_config(req.config)?;
            let report = self.manager.init_pool(id, config).await?;
            // VMs will need the pool's key in libvirt; attach defines it again if this fails.
            if let Err(e) = self.ensure_pool_secret(id).await {
                tracing::warn!(pool = %id, error = %e, "cannot store the pool's secret in libvirt yet");
            }
            Ok(report)
        };
        run.await.map(|r: limiquantix_storage::PoolReport| Response::new(convert::pool_info(&r))).map_err(to_status)
    }

    async fn destroy_storage_pool(
        &self,
        req: Request<pb::DestroyStoragePoolRequest>,
    ) -> Rpc<pb::DestroyStoragePoolResponse> {
        let id = convert::pool_id(&req.into_inner().pool_id).map_err(to_status)?;
        let secret = self.manager.pool_secret_uuid(id).ok().flatten();
        self.manager.destroy_pool(id).await.map_err(to_status)?;
        if let Some(uuid) = secret
            && let Err(e) = self.remove_pool_secret(&uuid).await {
                tracing::warn!(pool = %id, error = %e, "cannot remove the pool's secret from libvirt");
            }
        Ok(Response::new(pb::DestroyStoragePoolResponse {}))
    }

    async fn get_storage_pool_info(&self, req: Request<pb::GetStoragePoolInfoRequest>) -> Rpc<pb::PoolInfo> {
        let req = req.into_inner();
        let id = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let mut report = self.manager.pool_report(id).await.map_err(to_status)?;
        if req.count_volumes
            && let Some(capacity) = report.capacity.as_mut()
        {
            capacity.counted = Some(self.manager.count_volumes(id).await.map_err(to_status)?);
        }
        Ok(Response::new(convert::pool_info(&report)))
    }

    async fn list_storage_pools(&self, _: Request<pb::ListStoragePoolsRequest>) -> Rpc<pb::ListStoragePoolsResponse> {
        let pools = self.manager.list_pools().await.map_err(to_status)?;
        Ok(Response::new(pb::ListStoragePoolsResponse { pools: pools.iter().map(convert::pool_info).collect() }))
    }

    type CreateVolumeStream = EventStream;

    async fn create_volume(&self, req: Request<pb::NodeCreateVolumeRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let spec = convert::volume_spec(req.spec).map_err(to_status)?;
        let source = convert::volume_source(req.source).map_err(to_status)?;
        Ok(Response::new(self.stream_operation(pool, move |m, progress| {
            Box::pin(async move { m.create_volume(pool, id, spec, source, progress).await })
        })))
    }

    type LiveCopyVolumeStream = EventStream;

    async fn live_copy_volume(&self, req: Request<pb::NodeLiveCopyRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let to = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let from = convert::pool_id(&req.from_pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let format = convert::volume_format(req.format).map_err(to_status)?;
        let domain = domain_name(&req.domain)?.to_owned();
        self.live_copy(to, from, id, format, domain).await
    }

    type CloneVolumeStream = EventStream;

    async fn clone_volume(&self, req: Request<pb::NodeCloneVolumeRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let source = convert::volume_id(&req.source_volume_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let mode = convert::clone_mode(req.mode).map_err(to_status)?;
        let spec = convert::volume_spec(req.spec).map_err(to_status)?;
        let source = VolumeSource::Clone { source, mode };
        Ok(Response::new(self.stream_operation(pool, move |m, progress| {
            Box::pin(async move { m.create_volume(pool, id, spec, source, progress).await })
        })))
    }

    type WriteImageStream = EventStream;

    async fn write_image(&self, req: Request<pb::NodeWriteImageRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let format = convert::image_format(req.format).map_err(to_status)?;
        let path = std::path::PathBuf::from(req.path);
        Ok(Response::new(self.stream_operation(pool, move |m, progress| {
            Box::pin(async move { m.write_image(pool, id, &path, format, progress).await })
        })))
    }

    type FlattenVolumeStream = EventStream;

    async fn flatten_volume(&self, req: Request<pb::NodeFlattenVolumeRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        Ok(Response::new(self.stream_operation(pool, move |m, progress| {
            Box::pin(async move { m.flatten_volume(pool, id, progress).await })
        })))
    }

    async fn get_volume(&self, req: Request<pb::NodeGetVolumeRequest>) -> Rpc<pb::VolumeInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let v = self.manager.get_volume(pool, id).await.map_err(to_status)?;
        Ok(Response::new(convert::volume_out(pool, &v)))
    }

    async fn list_volumes(&self, req: Request<pb::NodeListVolumesRequest>) -> Rpc<pb::NodeListVolumesResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(convert::volume_id(&req.page_token).map_err(|_| Status::invalid_argument("page_token is not one this node returned"))?)
        };
        let (page, next) =
            self.manager.list_volumes(pool, after, req.page_size as usize).await.map_err(to_status)?;
        Ok(Response::new(pb::NodeListVolumesResponse {
            volumes: page.iter().map(|v| convert::volume_out(pool, v)).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn resize_volume(&self, req: Request<pb::NodeResizeVolumeRequest>) -> Rpc<pb::VolumeInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let v = if req.live_domain.is_empty() {
            self.manager.resize_volume(pool, id, req.new_size_bytes, None).await
        } else {
            self.live_resize(pool, id, req.new_size_bytes, domain_name(&req.live_domain)?).await
        };
        Ok(Response::new(convert::volume_out(pool, &v.map_err(to_status)?)))
    }

    async fn delete_volume(&self, req: Request<pb::NodeDeleteVolumeRequest>) -> Rpc<pb::NodeDeleteVolumeResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        if !req.mirroring_domain.is_empty() {
            self.abandon_mirror(domain_name(&req.mirroring_domain)?, id).await.map_err(to_status)?;
        }
        self.manager.delete_volume(pool, id).await.map_err(to_status)?;
        Ok(Response::new(pb::NodeDeleteVolumeResponse {}))
    }

    async fn get_volume_attach_info(&self, req: Request<pb::GetVolumeAttachInfoRequest>) -> Rpc<pb::VolumeAttachInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let bus = convert::disk_bus(req.bus).map_err(to_status)?;
        let domain_xml = (!req.domain_xml.is_empty()).then_some(req.domain_xml.as_str());
        let disk = self
            .manager
            .attach_info(pool, id, bus, req.read_only, &req.used_targets, domain_xml)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::VolumeAttachInfo {
            disk_xml: disk.to_xml(),
            target_dev: disk.target_dev.clone(),
            serial: disk.serial.clone(),
        }))
    }

    async fn inspect_image(&self, req: Request<pb::InspectImageRequest>) -> Rpc<pb::ImageInspection> {
        let req = req.into_inner();
        let format = convert::image_format(req.format).map_err(to_status)?;
        let image = self.manager.inspect_image(std::path::Path::new(&req.path), format).await.map_err(to_status)?;
        Ok(Response::new(pb::ImageInspection { virtual_size_bytes: image.virtual_size }))
    }

    async fn attach_volume(&self, req: Request<pb::NodeAttachVolumeRequest>) -> Rpc<pb::NodeAttachVolumeResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let bus = convert::disk_bus(req.bus).map_err(to_status)?;
        let domain = domain_name(&req.domain)?;
        let (target_dev, disk_xml) = self.attach(pool, id, domain, bus, req.read_only).await.map_err(to_status)?;
        Ok(Response::new(pb::NodeAttachVolumeResponse { target_dev, disk_xml }))
    }

    async fn detach_volume(&self, req: Request<pb::NodeDetachVolumeRequest>) -> Rpc<pb::NodeDetachVolumeResponse> {
        let req = req.into_inner();
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let domain = domain_name(&req.domain)?;
        let timeout = match req.timeout_seconds {
            0 => self.hypervisor.detach_timeout,
            s => std::time::Duration::from_secs(s.into()),
        };
        self.detach(id, domain, timeout).await.map_err(to_status)?;
        Ok(Response::new(pb::NodeDetachVolumeResponse {}))
    }

    async fn create_volume_snapshot(&self, req: Request<pb::CreateVolumeSnapshotRequest>) -> Rpc<pb::SnapshotInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let s = self.manager.create_snapshot(pool, id, &req.name).await.map_err(to_status)?;
        Ok(Response::new(convert::snapshot_out(id, &s)))
    }

    async fn export_volume(&self, req: Request<pb::ExportVolumeRequest>) -> Rpc<pb::ExportVolumeResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let psk = limiquantix_storage::nbd::Psk::parse(&req.psk_identity, &req.psk_key).map_err(to_status)?;
        let bind = self.hypervisor.export_bind.ok_or_else(|| {
            Status::failed_precondition("this node listens on every address: set export_address in its config to export volumes to other nodes")
        })?;
        let lifetime = match req.lifetime_seconds {
            0 => DEFAULT_EXPORT_LIFETIME,
            s => std::time::Duration::from_secs(s.into()),
        };
        let info = self.manager.export_volume(pool, id, &req.export_id, psk, bind, lifetime).await.map_err(to_status)?;
        Ok(Response::new(pb::ExportVolumeResponse { host: info.host.to_string(), port: info.port.into(), size_bytes: info.size_bytes }))
    }

    async fn end_export(&self, req: Request<pb::EndExportRequest>) -> Rpc<pb::EndExportResponse> {
        self.manager.end_export(&req.into_inner().export_id);
        Ok(Response::new(pb::EndExportResponse {}))
    }

    async fn create_domain_snapshot(&self, req: Request<pb::CreateDomainSnapshotRequest>) -> Rpc<pb::CreateDomainSnapshotResponse> {
        let req = req.into_inner();
        let domain = domain_name(&req.domain)?;
        let quiesce = pb::Quiesce::try_from(req.quiesce).map_err(|_| Status::invalid_argument(format!("quiesce {} is unknown", req.quiesce)))?;
        let mut volumes = Vec::with_capacity(req.volumes.len());
        for v in &req.volumes {
            volumes.push((convert::pool_id(&v.pool_id).map_err(to_status)?, convert::volume_id(&v.volume_id).map_err(to_status)?));
        }
        let (snaps, outcome) = self.live_snapshot(&volumes, &req.name, domain, quiesce).await.map_err(to_status)?;
        let outcome = outcome.unwrap_or_else(|| limiquantix_storage::LiveSnapshotOutcome {
            not_quiesced_reason: "the snapshot was there already (a retried request); how consistent it is was not recorded".into(),
            ..Default::default()
        });
        Ok(Response::new(pb::CreateDomainSnapshotResponse {
            snapshots: snaps.iter().zip(&volumes).map(|(s, (_, id))| convert::snapshot_out(*id, s)).collect(),
            quiesced: outcome.quiesced,
            frozen_ms: outcome.frozen_ms,
            not_quiesced_reason: outcome.not_quiesced_reason,
        }))
    }

    async fn list_volume_snapshots(
        &self,
        req: Request<pb::ListVolumeSnapshotsRequest>,
    ) -> Rpc<pb::ListVolumeSnapshotsResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let snaps = self.manager.list_snapshots(pool, id).await.map_err(to_status)?;
        Ok(Response::new(pb::ListVolumeSnapshotsResponse {
            snapshots: snaps.iter().map(|s| convert::snapshot_out(id, s)).collect(),
        }))
    }

    async fn revert_volume_snapshot(&self, req: Request<pb::RevertVolumeSnapshotRequest>) -> Rpc<pb::VolumeInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let v = self.manager.revert_snapshot(pool, id, &req.name).await.map_err(to_status)?;
        Ok(Response::new(convert::volume_out(pool, &v)))
    }

    async fn delete_volume_snapshot(
        &self,
        req: Request<pb::DeleteVolumeSnapshotRequest>,
    ) -> Rpc<pb::DeleteVolumeSnapshotResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        if req.domain.is_empty() {
            self.manager.delete_snapshot(pool, id, &req.name).await.map_err(to_status)?;
        } else {
            self.delete_live_snapshot(pool, id, &req.name, domain_name(&req.domain)?).await.map_err(to_status)?;
        }
        Ok(Response::new(pb::DeleteVolumeSnapshotResponse {}))
    }
}

#[cfg(feature = "libvirt")]
impl NodeService {
    async fn ensure_pool_secret(&self, pool: PoolId) -> StorageResult<()> {
        match self.manager.pool_secret(pool).await? {
            Some(secret) => self.hypervisor.libvirt.ensure_secret(&secret).await,
            None => Ok(()),
        }
    }

    async fn remove_pool_secret(&self, uuid: &str) -> StorageResult<()> {
        self.hypervisor.libvirt.remove_secret(uuid).await
    }

    async fn live_resize(&self, pool: PoolId, id: VolumeId, size: u64, domain: &str) -> StorageResult<VolumeInfo> {
        let live = LiveDomain { libvirt: &self.hypervisor.libvirt, domain };
        self.manager.resize_volume(pool, id, size, Some(&live)).await
    }

    async fn abandon_mirror(&self, domain: &str, id: VolumeId) -> StorageResult<()> {
        use limiquantix_storage::LiveMirror;
        self.domain_mirror(domain.to_owned()).abandon(id).await
    }

    fn domain_mirror(&self, domain: String) -> DomainMirror {
        DomainMirror {
            libvirt: self.hypervisor.libvirt.clone(),
            domain,
            copy_bytes_per_sec: self.hypervisor.copy_bytes_per_sec,
            stall: MIRROR_STALL,
        }
    }

    async fn live_copy(
        &self,
        to: PoolId,
        from: PoolId,
        id: VolumeId,
        format: Option<limiquantix_storage::model::VolumeFormat>,
        domain: String,
    ) -> Rpc<EventStream> {
        // The destination pool's secret (Ceph key) must be known to libvirt before QEMU opens it.
        self.ensure_pool_secret(to).await.map_err(to_status)?;
        let mirror = self.domain_mirror(domain);
        Ok(Response::new(self.stream_operation(to, move |m, progress| {
            Box::pin(async move { m.live_copy(to, from, id, format, &mirror, progress).await })
        })))
    }

    async fn live_snapshot(
        &self,
        volumes: &[(PoolId, VolumeId)],
        name: &str,
        domain: &str,
        quiesce: pb::Quiesce,
    ) -> StorageResult<LiveSnapshotResult> {
        use crate::domain_snapshot::QuiesceMode;
        let quiesce = match quiesce {
            pb::Quiesce::None => QuiesceMode::None,
            pb::Quiesce::Required => QuiesceMode::Required,
            pb::Quiesce::BestEffort => QuiesceMode::BestEffort,
        };
        self.manager.create_live_snapshots(volumes, name, &self.domain_snapshot(domain, quiesce)).await
    }

    async fn delete_live_snapshot(&self, pool: PoolId, id: VolumeId, name: &str, domain: &str) -> StorageResult<()> {
        let live = self.domain_snapshot(domain, crate::domain_snapshot::QuiesceMode::None);
        self.manager.delete_live_snapshot(pool, id, name, &live).await
    }

    fn domain_snapshot(&self, domain: &str, quiesce: crate::domain_snapshot::QuiesceMode) -> crate::domain_snapshot::DomainSnapshot {
        crate::domain_snapshot::DomainSnapshot {
            libvirt: self.hypervisor.libvirt.clone(),
            domain: domain.to_owned(),
            quiesce,
            agent_timeout: self.hypervisor.agent_timeout,
        }
    }

    /// Returns (target, disk XML). An attach repeated on the same domain finds
    /// the disk already there and succeeds.
    async fn attach(&self, pool: PoolId, id: VolumeId, domain: &str, bus: DiskBus, read_only: bool) -> StorageResult<(String, String)> {
        let libvirt = &self.hypervisor.libvirt;
        let lock = self.hypervisor.domain_lock(domain);
        let _domain = lock.lock().await;
        let serial = id.to_string();
        let live = libvirt.domain_xml(domain).await?;
        if let Some(disk) = disk_with_serial(&live, &serial)? {
            return Ok((disk.target_dev, disk.xml));
        }
        let _volume = self.manager.hold_volume(pool, id, "an attach")?;
        self.ensure_pool_secret(pool).await?;
        let disk = self.manager.attach_info(pool, id, bus, read_only, &[], Some(&live)).await?;
        let xml = disk.to_xml();
        libvirt.attach(domain, &xml).await?;
        let live = libvirt.domain_xml(domain).await?;
        match disk_with_serial(&live, &serial)? {
            Some(found) => {
                tracing::info!(volume = %id, %domain, target = %found.target_dev, "volume attached");
                Ok((found.target_dev, found.xml))
            }
            None => Err(limiquantix_storage::StorageError::Internal(format!(
                "libvirt accepted the disk of volume {id} but VM {domain} does not show it"
            ))),
        }
    }

    async fn detach(&self, id: VolumeId, domain: &str, timeout: std::time::Duration) -> StorageResult<()> {
        let libvirt = &self.hypervisor.libvirt;
        let lock = self.hypervisor.domain_lock(domain);
        let _domain = lock.lock().await;
        let serial = id.to_string();
        let live = libvirt.domain_xml(domain).await?;
        let Some(disk) = disk_with_serial(&live, &serial)? else { return Ok(()) };
        libvirt.detach(domain, disk, &serial, timeout).await?;
        tracing::info!(volume = %id, %domain, "volume detached");
        Ok(())
    }
}

#[cfg(not(feature = "libvirt"))]
impl NodeService {
    async fn ensure_pool_secret(&self, _: PoolId) -> StorageResult<()> {
        Ok(())
    }
    async fn remove_pool_secret(&self, _: &str) -> StorageResult<()> {
        Ok(())
    }
    fn no_libvirt() -> limiquantix_storage::StorageError {
        limiquantix_storage::StorageError::Unimplemented("this node was built without libvirt support".into())
    }
    async fn live_resize(&self, _: PoolId, _: VolumeId, _: u64, _: &str) -> StorageResult<VolumeInfo> {
        Err(Self::no_libvirt())
    }
    async fn attach(&self, _: PoolId, _: VolumeId, _: &str, _: DiskBus, _: bool) -> StorageResult<(String, String)> {
        Err(Self::no_libvirt())
    }
    async fn live_snapshot(&self, _: &[(PoolId, VolumeId)], _: &str, _: &str, _: pb::Quiesce) -> StorageResult<LiveSnapshotResult> {
        Err(Self::no_libvirt())
    }
    async fn delete_live_snapshot(&self, _: PoolId, _: VolumeId, _: &str, _: &str) -> StorageResult<()> {
        Err(Self::no_libvirt())
    }
    async fn abandon_mirror(&self, _: &str, _: VolumeId) -> StorageResult<()> {
        Err(Self::no_libvirt())
    }
    async fn detach(&self, _: VolumeId, _: &str, _: std::time::Duration) -> StorageResult<()> {
        Err(Self::no_libvirt())
    }
    async fn live_copy(
        &self,
        _: PoolId,
        _: PoolId,
        _: VolumeId,
        _: Option<limiquantix_storage::model::VolumeFormat>,
        _: String,
    ) -> Rpc<EventStream> {
        Err(to_status(Self::no_libvirt()))
    }
}
