//! Snapshot operations, for volumes that can have them.

use super::*;
use crate::model::VolumeFeature;

impl StorageManager {
    /// The pool's backend and the volume, which must be able to have
    /// snapshots (a raw local file cannot).
    async fn snapshot_capable(&self, pool: PoolId, id: VolumeId) -> Result<(Arc<dyn Backend>, VolumeInfo)> {
        let backend = self.backend(pool).await?;
        let volume = self.volume(backend.as_ref(), id).await?;
        backends::volume_has_feature(backend.kind(), volume.format, VolumeFeature::Snapshot)
            .map_err(|why| StorageError::precondition(format!("volume {id}: {why}")))?;
        Ok((backend, volume))
    }

    pub async fn list_snapshots(&self, pool: PoolId, id: VolumeId) -> Result<Vec<SnapshotInfo>> {
        let backend = self.backend(pool).await?;
        let volume = self.volume(backend.as_ref(), id).await?;
        backend.list_snapshots(&volume).await
    }

    pub async fn create_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<SnapshotInfo> {
        let name = Name::parse("snapshot", name)?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot")?;
        let (backend, volume) = self.snapshot_capable(pool, id).await?;
        self.refuse_if_dependents(backend.as_ref(), id, "snapshotted").await?;
        backend.create_snapshot(&volume, &name).await
    }

    pub async fn revert_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        let name = Name::parse("snapshot", name)?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot revert")?;
        let (backend, volume) = self.snapshot_capable(pool, id).await?;
        // Linked clones read the base's current data: reverting it would corrupt them.
        self.refuse_if_dependents(backend.as_ref(), id, "reverted").await?;
        backend.revert_snapshot(&volume, &name).await?;
        self.volume(backend.as_ref(), id).await
    }

    pub async fn delete_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<()> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot delete")?;
        let Some(volume) = backend.get_volume(id).await? else { return Ok(()) };
        backend.delete_snapshot(&volume, &name).await
    }
}
