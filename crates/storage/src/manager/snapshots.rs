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

    /// Snapshots volumes that a running VM has open, all at one instant,
    /// through that VM (`live`): never with qemu-img on an image QEMU holds.
    /// When every volume holds a snapshot of that name already (a retried
    /// request) they are returned as they are, without an outcome.
    pub async fn create_live_snapshots(
        &self,
        volumes: &[(PoolId, VolumeId)],
        name: &str,
        live: &dyn super::LiveSnapshot,
    ) -> Result<(Vec<SnapshotInfo>, Option<super::LiveSnapshotOutcome>)> {
        let name = Name::parse("snapshot", name)?;
        refuse_kind_specific_names(&name)?;
        if volumes.is_empty() {
            return Err(StorageError::invalid("a snapshot through a VM needs at least one volume"));
        }
        let mut guards = Vec::with_capacity(volumes.len());
        let mut held = Vec::with_capacity(volumes.len());
        for &(pool, id) in volumes {
            if held.iter().any(|(_, v): &(Arc<dyn Backend>, VolumeInfo)| v.id == id) {
                return Err(StorageError::invalid(format!("volume {id} is named twice")));
            }
            guards.push(self.locks.exclusive(pool, id, "a snapshot")?);
            let (backend, volume) = self.snapshot_capable(pool, id).await?;
            self.refuse_if_dependents(backend.as_ref(), id, "snapshotted").await?;
            held.push((backend, volume));
        }
        let existing = snapshots_named(&held, &name).await?;
        if existing.iter().all(Option::is_some) {
            return Ok((existing.into_iter().flatten().collect(), None));
        }
        let serials: Vec<String> = volumes.iter().map(|(_, id)| id.to_string()).collect();
        let outcome = live.snapshot(&serials, &name).await?;
        let taken = snapshots_named(&held, &name).await?;
        let taken = taken
            .into_iter()
            .zip(&held)
            .map(|(s, (_, v))| {
                s.ok_or_else(|| StorageError::Internal(format!("the VM took snapshot {name} but volume {} does not show it", v.id)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((taken, Some(outcome)))
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

    /// Deletes a snapshot of a volume a running VM has open, through the VM.
    /// Deleting a snapshot that is not there succeeds.
    pub async fn delete_live_snapshot(&self, pool: PoolId, id: VolumeId, name: &str, live: &dyn super::LiveSnapshot) -> Result<()> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot delete")?;
        let Some(volume) = backend.get_volume(id).await? else { return Ok(()) };
        if !backend.list_snapshots(&volume).await?.iter().any(|s| s.name == name.as_str()) {
            return Ok(());
        }
        live.delete(&id.to_string(), &name).await
    }

    pub async fn delete_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<()> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot delete")?;
        let Some(volume) = backend.get_volume(id).await? else { return Ok(()) };
        backend.delete_snapshot(&volume, &name).await
    }
}

/// Names every kind refuses: all digits (qcow2 takes them for snapshot ids)
/// and the Ceph backend's own `lq-` prefix. A snapshot through a VM may span
/// kinds, so both apply to it.
fn refuse_kind_specific_names(name: &Name) -> Result<()> {
    if name.as_str().bytes().all(|b| b.is_ascii_digit()) {
        return Err(StorageError::invalid(format!("snapshot name {name} is only digits, which qcow2 takes for a snapshot id; add a letter")));
    }
    if name.as_str().starts_with("lq-") {
        return Err(StorageError::invalid(format!("snapshot names starting with lq- are reserved; rename {name}")));
    }
    Ok(())
}

/// Each volume's snapshot named `name`, if it has one.
async fn snapshots_named(volumes: &[(Arc<dyn Backend>, VolumeInfo)], name: &Name) -> Result<Vec<Option<SnapshotInfo>>> {
    let mut out = Vec::with_capacity(volumes.len());
    for (backend, volume) in volumes {
        out.push(backend.list_snapshots(volume).await?.into_iter().find(|s| s.name == name.as_str()));
    }
    Ok(out)
}
