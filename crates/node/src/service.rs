//! The NodeStorage gRPC service over the StorageManager.

use std::pin::Pin;
use std::sync::Arc;

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_server::NodeStorage;
use limiquantix_storage::model::{Progress, VolumeInfo, VolumeSource};
use limiquantix_storage::{PoolId, Result as StorageResult, StorageManager};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::status::to_status;

type Rpc<T> = Result<Response<T>, Status>;
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::VolumeOperationEvent, Status>> + Send>>;

/// Progress events that may queue up for a slow client before newer ones are dropped.
const PROGRESS_BUFFER: usize = 64;

pub struct NodeService {
    manager: Arc<StorageManager>,
}

impl NodeService {
    pub fn new(manager: Arc<StorageManager>) -> Self {
        Self { manager }
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
            let progress_tx = tx.clone();
            let progress = move |p: Progress| {
                let event = pb::volume_operation_event::Event::Progress(convert::progress_out(&p));
                // Progress is lossy by design: a full buffer drops an update.
                let _ = progress_tx.try_send(Ok(pb::VolumeOperationEvent { event: Some(event) }));
            };
            let result = tokio::select! {
                r = op(manager, &progress) => r,
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
        let uname = rustix::system::uname();
        Ok(Response::new(pb::NodeInfo {
            hostname: uname.nodename().to_string_lossy().into_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            supported_kinds: self
                .manager
                .supported_kinds()
                .iter()
                .map(|(k, c)| pb::PoolKindSupport {
                    kind: convert::pool_kind(*k) as i32,
                    capabilities: Some(convert::capabilities(c)),
                })
                .collect(),
        }))
    }

    async fn init_storage_pool(&self, req: Request<pb::InitStoragePoolRequest>) -> Rpc<pb::PoolInfo> {
        let req = req.into_inner();
        let run = async {
            let id = convert::pool_id(&req.pool_id)?;
            let config = convert::pool_config(req.config)?;
            self.manager.init_pool(id, config).await
        };
        run.await.map(|r| Response::new(convert::pool_info(&r))).map_err(to_status)
    }

    async fn destroy_storage_pool(
        &self,
        req: Request<pb::DestroyStoragePoolRequest>,
    ) -> Rpc<pb::DestroyStoragePoolResponse> {
        let id = convert::pool_id(&req.into_inner().pool_id).map_err(to_status)?;
        self.manager.destroy_pool(id).await.map_err(to_status)?;
        Ok(Response::new(pb::DestroyStoragePoolResponse {}))
    }

    async fn get_storage_pool_info(&self, req: Request<pb::GetStoragePoolInfoRequest>) -> Rpc<pb::PoolInfo> {
        let id = convert::pool_id(&req.into_inner().pool_id).map_err(to_status)?;
        let report = self.manager.pool_report(id).await.map_err(to_status)?;
        Ok(Response::new(convert::pool_info(&report)))
    }

    async fn list_storage_pools(&self, _: Request<pb::ListStoragePoolsRequest>) -> Rpc<pb::ListStoragePoolsResponse> {
        let pools = self.manager.list_pools().await.map_err(to_status)?;
        Ok(Response::new(pb::ListStoragePoolsResponse { pools: pools.iter().map(convert::pool_info).collect() }))
    }

    type CreateVolumeStream = EventStream;

    async fn create_volume(&self, req: Request<pb::CreateVolumeRequest>) -> Rpc<EventStream> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let spec = convert::volume_spec(req.spec).map_err(to_status)?;
        let source = convert::volume_source(req.source).map_err(to_status)?;
        Ok(Response::new(self.stream_operation(pool, move |m, progress| {
            Box::pin(async move { m.create_volume(pool, id, spec, source, progress).await })
        })))
    }

    type CloneVolumeStream = EventStream;

    async fn clone_volume(&self, req: Request<pb::CloneVolumeRequest>) -> Rpc<EventStream> {
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

    async fn get_volume(&self, req: Request<pb::GetVolumeRequest>) -> Rpc<pb::Volume> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let v = self.manager.get_volume(pool, id).await.map_err(to_status)?;
        Ok(Response::new(convert::volume_out(pool, &v)))
    }

    async fn list_volumes(&self, req: Request<pb::ListVolumesRequest>) -> Rpc<pb::ListVolumesResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(convert::volume_id(&req.page_token).map_err(|_| Status::invalid_argument("page_token is not one this node returned"))?)
        };
        let (page, next) =
            self.manager.list_volumes(pool, after, req.page_size as usize).await.map_err(to_status)?;
        Ok(Response::new(pb::ListVolumesResponse {
            volumes: page.iter().map(|v| convert::volume_out(pool, v)).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn resize_volume(&self, req: Request<pb::ResizeVolumeRequest>) -> Rpc<pb::Volume> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let v = self.manager.resize_volume(pool, id, req.new_size_bytes).await.map_err(to_status)?;
        Ok(Response::new(convert::volume_out(pool, &v)))
    }

    async fn delete_volume(&self, req: Request<pb::DeleteVolumeRequest>) -> Rpc<pb::DeleteVolumeResponse> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        self.manager.delete_volume(pool, id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn get_volume_attach_info(&self, req: Request<pb::GetVolumeAttachInfoRequest>) -> Rpc<pb::VolumeAttachInfo> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let bus = convert::disk_bus(req.bus).map_err(to_status)?;
        let domain_xml = (!req.domain_xml.is_empty()).then_some(req.domain_xml.as_str());
        let disk = self
            .manager
            .attach_info(pool, id, bus, &req.used_targets, domain_xml)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::VolumeAttachInfo {
            disk_xml: disk.to_xml(),
            target_dev: disk.target_dev.clone(),
            serial: disk.serial.clone(),
        }))
    }

    async fn create_volume_snapshot(&self, req: Request<pb::CreateVolumeSnapshotRequest>) -> Rpc<pb::Snapshot> {
        let req = req.into_inner();
        let pool = convert::pool_id(&req.pool_id).map_err(to_status)?;
        let id = convert::volume_id(&req.volume_id).map_err(to_status)?;
        let s = self.manager.create_snapshot(pool, id, &req.name).await.map_err(to_status)?;
        Ok(Response::new(convert::snapshot_out(id, &s)))
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

    async fn revert_volume_snapshot(&self, req: Request<pb::RevertVolumeSnapshotRequest>) -> Rpc<pb::Volume> {
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
        self.manager.delete_snapshot(pool, id, &req.name).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteVolumeSnapshotResponse {}))
    }
}
