//! NFS pools in kernel mode (the seed's design, done safely): the node
//! mounts the export with typed options on a mount point named from the
//! pool id, after probing the server, and the volumes are image files on
//! the mount, handled as in a local pool. Every call that touches the mount
//! is bounded: a dead server costs a timeout and a blocked worker thread,
//! never the node's async runtime; destroy unmounts, forcing a lazy unmount
//! when the server is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::NfsBackend;
use super::client::NfsExport;
use crate::backend::{Backend, NewVolume};
use crate::backends::EngineContext;
use crate::backends::local::LocalBackend;
use crate::error::{Result, StorageError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::model::{Capabilities, PoolCapacity, PoolKind, ProgressSink, SnapshotInfo, VolumeInfo};
use crate::tools::mount::{self, Mounter};
use crate::xml::{DiskDriver, DiskSource};

const NFS_PORT: u16 = 2049;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// Threads that may wait on one pool's mount at once.
const WORKERS: usize = 4;

#[derive(Debug)]
pub struct KernelNfsBackend {
    export: NfsExport,
    options: String,
    mount_point: PathBuf,
    mounter: Mounter,
    /// How long a metadata call on the mount may take.
    call_timeout: Duration,
    files: LocalBackend,
}

/// Where a kernel-mode pool is mounted: under the node's state, named from
/// the pool id only.
pub fn mount_point(state_dir: &Path, pool: PoolId) -> PathBuf {
    state_dir.join("nfs").join(pool.to_string())
}

impl KernelNfsBackend {
    pub fn new(pool: PoolId, export: NfsExport, options: String, call_timeout: Duration, ctx: &EngineContext) -> Self {
        let mount_point = mount_point(&ctx.state_dir, pool);
        let files = LocalBackend::on_shared_mount(mount_point.clone(), ctx, WORKERS);
        Self { export, options, mount_point, mounter: Mounter { timeout: MOUNT_TIMEOUT }, call_timeout, files }
    }

    /// `server:/export` as mount(8) takes it.
    fn source(&self) -> String {
        format!("{}:{}", crate::net::bracketed(&self.export.server), self.export.export)
    }

    /// Runs a call on the mount within the pool's timeout.
    async fn bounded<T>(&self, what: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.call_timeout, call).await.unwrap_or_else(|_| {
            Err(StorageError::Unavailable(format!(
                "{what} on the NFS mount of {} did not answer within {} s: the server may be down",
                self.export,
                self.call_timeout.as_secs_f64()
            )))
        })
    }

    /// The server answers on the NFS port within a short timeout (before
    /// mount(8) is started, which could wait much longer).
    async fn probe(&self) -> Result<()> {
        let server = self.export.server.clone();
        let answered = tokio::task::spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            let mut last = std::io::Error::other("the name has no address");
            for addr in (server.as_str(), NFS_PORT).to_socket_addrs()? {
                match std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
        .await
        .map_err(|e| StorageError::Internal(format!("NFS probe failed: {e}")))?;
        answered.map_err(|e| {
            StorageError::Unavailable(format!(
                "NFS server {} does not answer on port {NFS_PORT} (waited at most {} s): {e}",
                self.export.server,
                PROBE_TIMEOUT.as_secs()
            ))
        })
    }

    async fn mounted(&self) -> Result<bool> {
        let target = self.mount_point.clone();
        tokio::task::spawn_blocking(move || mount::is_mounted(&target))
            .await
            .map_err(|e| StorageError::Internal(format!("mount check failed: {e}")))?
            .map_err(|e| StorageError::io("cannot read the mount table", e))
    }
}

#[async_trait]
impl Backend for KernelNfsBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Nfs
    }

    fn capabilities(&self) -> Capabilities {
        NfsBackend::capabilities_of_kind()
    }

    fn location(&self) -> String {
        self.export.to_string()
    }

    async fn activate(&self) -> Result<()> {
        if !self.mounted().await? {
            self.probe().await?;
            // QEMU (another uid) reaches volume files through it.
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
                .create(&self.mount_point)
                .map_err(|e| StorageError::io(format!("cannot create mount point {}", self.mount_point.display()), e))?;
            let source = self.source();
            tracing::info!(%source, target = %self.mount_point.display(), options = %self.options, "mounting NFS export");
            self.mounter.mount_nfs(&source, &self.options, &self.mount_point).await.map_err(|e| {
                StorageError::Unavailable(format!("cannot mount {source}: {}", e.stderr().lines().last().unwrap_or(&e.to_string())))
            })?;
        }
        self.bounded("activation", self.files.activate()).await
    }

    async fn deactivate(&self) -> Result<()> {
        if !self.mounted().await? {
            return Ok(());
        }
        if let Err(e) = self.mounter.unmount(&self.mount_point).await {
            tracing::warn!(target = %self.mount_point.display(), error = %e, "unmount failed; detaching the mount (forced, lazy)");
            self.mounter
                .unmount_forced(&self.mount_point)
                .await
                .map_err(|e| StorageError::Unavailable(format!("cannot unmount {}: {e}", self.mount_point.display())))?;
        }
        // The mount point is empty once unmounted; a failure here leaves only it.
        let _ = std::fs::remove_dir(&self.mount_point);
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        self.bounded("statfs", self.files.capacity()).await
    }

    async fn free_bytes(&self) -> Result<u64> {
        self.bounded("statfs", self.files.free_bytes()).await
    }

    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        self.bounded("lookup", self.files.get_volume(id)).await
    }

    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        self.bounded("listing", self.files.list_volumes(after, limit)).await
    }

    async fn dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>> {
        self.bounded("listing", self.files.dependents(id)).await
    }

    // Data operations run qemu-img, whose own timeouts bound them.
    async fn create_volume(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        self.files.create_volume(new, progress).await
    }

    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        self.files.delete_volume(id).await
    }

    async fn resize_volume(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<VolumeInfo> {
        self.files.resize_volume(volume, new_size_bytes).await
    }

    async fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        self.files.list_snapshots(volume).await
    }

    async fn create_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<SnapshotInfo> {
        self.files.create_snapshot(volume, name).await
    }

    async fn revert_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        self.files.revert_snapshot(volume, name).await
    }

    async fn delete_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        self.files.delete_snapshot(volume, name).await
    }

    async fn flatten_volume(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        self.files.flatten_volume(volume, progress).await
    }

    fn read_location(&self, volume: &VolumeInfo) -> Result<crate::tools::qemu_img::VolumeLocation> {
        self.files.read_location(volume)
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        self.files.disk(volume)
    }
}
