//! Local-directory pools: a directory on the node's disks holding one image
//! file per volume (`lq-<uuid>.qcow2` or `.raw`), made and changed by qemu-img.

mod paths;
mod snapshots;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::backend::{Backend, NewVolume};
use crate::backends::{EngineContext, OpenMode};
use crate::error::{Result, StorageError, ToolError};
use crate::ids::{Name, VolumeId};
use crate::model::{
    Capabilities, LocalPoolConfig, PoolCapacity, PoolKind, ProgressSink, SnapshotInfo, VolumeFeature, VolumeFormat, VolumeInfo,
};
use crate::tools::QemuImg;
use crate::xml::{DiskDriver, DiskSource};

pub use crate::backends::image_files::{parse_volume_file_name, volume_file_name};
use crate::backends::image_files;

#[derive(Debug)]
pub struct LocalBackend {
    dir: PathBuf,
    qemu: QemuImg,
    /// Whether the file system takes O_DIRECT (cache='none'); probed on activate.
    direct_io: AtomicBool,
    /// Whether other nodes use the directory too (a kernel NFS mount):
    /// activation then leaves young partial files alone.
    shared: bool,
    /// The pool's own file-system workers (a mount that can hang), or None
    /// for the node's disks.
    workers: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl LocalBackend {
    pub fn capabilities_of_kind() -> Capabilities {
        Capabilities {
            thin_provisioning: true,
            linked_clone: true,
            snapshots: true,
            shared: false,
            live_resize: true,
            array_managed: false,
            one_metadata_writer: false,
            formats: vec![VolumeFormat::Qcow2, VolumeFormat::Raw],
        }
    }

    /// Raw files have no internal snapshots; qcow2 files have them all.
    pub fn volume_has_feature(format: VolumeFormat, feature: VolumeFeature) -> std::result::Result<(), String> {
        match (feature, format) {
            (VolumeFeature::Snapshot, VolumeFormat::Raw) => {
                Err("raw volumes have no snapshots (create or clone it as qcow2 to use snapshots)".into())
            }
            (VolumeFeature::Snapshot, VolumeFormat::Qcow2) => Ok(()),
        }
    }

    pub fn open(config: &LocalPoolConfig, ctx: &EngineContext, mode: OpenMode) -> Result<Self> {
        let dir = paths::resolve_pool_dir(&config.path, &ctx.local_pool_roots, mode)?;
        Ok(Self { dir, qemu: ctx.qemu_img.clone(), direct_io: AtomicBool::new(true), shared: false, workers: None })
    }

    /// Volume files in a directory the node manages itself (the mount point
    /// of a kernel NFS mount), shared with other nodes; at most `workers`
    /// threads ever wait on it.
    pub fn on_shared_mount(dir: PathBuf, ctx: &EngineContext, workers: usize) -> Self {
        let workers = Some(std::sync::Arc::new(tokio::sync::Semaphore::new(workers)));
        Self { dir, qemu: ctx.qemu_img.clone(), direct_io: AtomicBool::new(true), shared: true, workers }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn volume_path(&self, id: VolumeId, format: VolumeFormat) -> PathBuf {
        self.dir.join(image_files::volume_file_name(id, format))
    }

    fn partial_path(&self, id: VolumeId, format: VolumeFormat) -> PathBuf {
        self.dir.join(image_files::partial_file_name(id, format))
    }

    /// Turns a qemu-img failure on `volume` into an error that says what to do.
    fn tool_error(&self, volume: VolumeId, err: ToolError) -> StorageError {
        image_files::tool_error(volume, &format!("pool directory {}", self.dir.display()), err)
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Local
    }

    fn capabilities(&self) -> Capabilities {
        Self::capabilities_of_kind()
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    async fn activate(&self) -> Result<()> {
        let shared = self.shared;
        let direct_io = self.fs(move |dir| {
            let direct_io = probe_direct_io(dir)?;
            remove_partial_files(dir, shared)?;
            Ok(direct_io)
        })
        .await?;
        self.direct_io.store(direct_io, Ordering::Relaxed);
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        self.statvfs().await
    }

    async fn free_bytes(&self) -> Result<u64> {
        Ok(self.statvfs().await?.free_bytes)
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

    fn read_location(&self, volume: &VolumeInfo) -> Result<crate::tools::qemu_img::VolumeLocation> {
        Ok(crate::tools::qemu_img::VolumeLocation::File { path: self.volume_path(volume.id, volume.format), chain_dir: self.dir.clone() })
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        Ok((
            DiskSource::File { path: self.volume_path(volume.id, volume.format) },
            DiskDriver::file(volume.format, self.direct_io.load(Ordering::Relaxed)),
        ))
    }
}

/// Whether the file system takes O_DIRECT (cache='none').
fn probe_direct_io(dir: &Path) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".lq-direct-io-probe");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    match opened {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(StorageError::io(format!("cannot write in pool directory {}", dir.display()), e)),
    }
}

/// Removes what interrupted creates left (they are rebuilt if retried).
fn remove_partial_files(dir: &Path, shared: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(format!("cannot read pool directory {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let modified = entry.metadata().map_or(i64::MAX, |m| m.mtime());
        if image_files::is_leftover(&entry.file_name().to_string_lossy(), modified, shared) {
            tracing::info!(path = %entry.path().display(), "removing a volume left half-made by an interrupted create");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
