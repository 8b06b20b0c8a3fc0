//! NFS pools. In userspace mode (this file): one image file per volume on the export, as
//! in a local pool (see `image_files`), reached through libnfs by the node
//! and by qemu-img and QEMU (`nfs://` URLs). Nothing is mounted, so a dead
//! server fails calls within their timeouts and never leaves a process in
//! uninterruptible sleep.

pub mod client;
mod clients;
pub mod config;
pub mod kernel;
mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::client::NfsExport;
use self::clients::Clients;
use crate::backend::{Backend, NewVolume};
use crate::backends::image_files::{self, ImageSnapshots};
use crate::backends::EngineContext;
use crate::error::{Result, StorageError, ToolError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::model::{
    Capabilities, NfsMode, NfsPoolConfig, PoolCapacity, PoolKind, ProgressSink, SnapshotInfo, VolumeFeature, VolumeFormat,
    VolumeInfo,
};
use crate::tools::QemuImg;
use crate::xml::{DiskDriver, DiskSource, NetHost};

/// How long one libnfs call may take when the config sets no `timeo`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct NfsBackend {
    clients: Arc<Clients>,
    qemu: QemuImg,
}

impl NfsBackend {
    pub fn capabilities_of_kind() -> Capabilities {
        Capabilities {
            thin_provisioning: true,
            linked_clone: true,
            snapshots: true,
            shared: true,
            live_resize: true,
            array_managed: false,
            one_metadata_writer: false,
            formats: vec![VolumeFormat::Qcow2, VolumeFormat::Raw],
        }
    }

    /// The same files as a local pool: raw files have no snapshots.
    pub fn volume_has_feature(format: VolumeFormat, feature: VolumeFeature) -> std::result::Result<(), String> {
        crate::backends::local::LocalBackend::volume_has_feature(format, feature)
    }

    /// The backend for a pool's config: libnfs in userspace mode, a kernel
    /// mount in kernel mode.
    pub fn open(pool: PoolId, config: &NfsPoolConfig, ctx: &EngineContext) -> Result<Arc<dyn Backend>> {
        let export = config::validate(config)?;
        let timeout = match config.options.timeo_deciseconds {
            0 => DEFAULT_CALL_TIMEOUT,
            ds => Duration::from_millis(u64::from(ds) * 100),
        };
        Ok(match config.mode {
            NfsMode::Userspace => Arc::new(Self::with_export(export, timeout, ctx)),
            NfsMode::Kernel => {
                let options = config::kernel_mount_options(config);
                Arc::new(kernel::KernelNfsBackend::new(pool, export, options, timeout, ctx))
            }
        })
    }

    /// A backend on `export` as it is given (tests pass explicit ports).
    pub fn with_export(export: NfsExport, timeout: Duration, ctx: &EngineContext) -> Self {
        Self { clients: Clients::new(export, timeout), qemu: ctx.qemu_img.clone() }
    }

    fn export(&self) -> &NfsExport {
        self.clients.export()
    }

    /// What qemu-img opens for a file of the export.
    fn url(&self, file: &str) -> PathBuf {
        PathBuf::from(self.export().qemu_url(file))
    }

    fn volume_url(&self, id: VolumeId, format: VolumeFormat) -> PathBuf {
        self.url(&image_files::volume_file_name(id, format))
    }

    fn tool_error(&self, volume: VolumeId, err: ToolError) -> StorageError {
        image_files::tool_error(volume, &format!("NFS export {}", self.export()), err)
    }

    fn snapshots<'a>(&'a self, volume: &'a VolumeInfo) -> ImageSnapshots<'a, impl Fn(ToolError) -> StorageError + 'a> {
        ImageSnapshots {
            qemu: &self.qemu,
            image: self.volume_url(volume.id, volume.format),
            volume,
            tool_error: move |e| self.tool_error(volume.id, e),
        }
    }
}

#[async_trait]
impl Backend for NfsBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Nfs
    }

    fn capabilities(&self) -> Capabilities {
        Self::capabilities_of_kind()
    }

    fn location(&self) -> String {
        self.export().to_string()
    }

    async fn activate(&self) -> Result<()> {
        self.remove_stale_partials().await
    }

    async fn deactivate(&self) -> Result<()> {
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        let st = self.clients.run(|c| c.fs_stat()).await?;
        Ok(PoolCapacity {
            total_bytes: st.total_bytes,
            free_bytes: st.available_bytes,
            allocated_bytes: st.total_bytes.saturating_sub(st.free_bytes),
            counted: None,
        })
    }

    async fn free_bytes(&self) -> Result<u64> {
        Ok(self.clients.run(|c| c.fs_stat()).await?.available_bytes)
    }

    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        self.lookup(id).await
    }

    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        self.list_page(after, limit).await
    }

    async fn dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>> {
        self.find_dependents(id).await
    }

    async fn create_volume(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        self.create(new, progress).await
    }

    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        let Some(volume) = self.lookup(id).await? else { return Ok(()) };
        let dependents = self.find_dependents(id).await?;
        if !dependents.is_empty() {
            return Err(crate::backend::dependents_error(id, &dependents, "deleted"));
        }
        self.delete(&volume).await
    }

    async fn resize_volume(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<VolumeInfo> {
        self.resize(volume, new_size_bytes).await
    }

    async fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        self.snapshots(volume).list().await
    }

    async fn create_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<SnapshotInfo> {
        self.snapshots(volume).create(name).await
    }

    async fn revert_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        self.snapshots(volume).revert(name).await
    }

    async fn delete_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        self.snapshots(volume).delete(name).await
    }

    async fn flatten_volume(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        self.flatten(volume, progress).await
    }

    fn backing_chain_in_disk_xml(&self) -> bool {
        true
    }

    fn read_location(&self, volume: &VolumeInfo) -> Result<crate::tools::qemu_img::VolumeLocation> {
        Ok(crate::tools::qemu_img::VolumeLocation::Nfs { url: self.volume_url(volume.id, volume.format) })
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        let export = self.export();
        Ok((
            DiskSource::Nfs {
                host: NetHost { name: export.server.clone(), port: None },
                path: format!("{}/{}", export.export, image_files::volume_file_name(volume.id, volume.format)),
                // Files qemu-img makes are root's, 0600; QEMU reads them as root
                // (an export that squashes root refuses them, as it should).
                identity: Some(("root".into(), "root".into())),
            },
            DiskDriver::nfs(volume.format),
        ))
    }
}
