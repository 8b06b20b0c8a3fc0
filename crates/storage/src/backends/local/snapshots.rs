//! Internal qcow2 snapshots of local volumes.

use super::LocalBackend;
use crate::error::{Result, StorageError};
use crate::ids::Name;
use crate::model::{SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::tools::qemu_img::SnapshotEntry;

impl LocalBackend {
    async fn entries(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotEntry>> {
        let path = self.volume_path(volume.id, volume.format);
        let info = self.qemu.info(&path, volume.format.into(), true).await.map_err(|e| self.tool_error(volume.id, e))?;
        Ok(info.snapshots)
    }

    pub(super) async fn snapshots_of(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        if volume.format == VolumeFormat::Raw {
            return Ok(Vec::new());
        }
        Ok(self.entries(volume).await?.into_iter().map(to_info).collect())
    }

    pub(super) async fn snapshot_create(&self, volume: &VolumeInfo, name: &Name) -> Result<SnapshotInfo> {
        // qemu-img looks snapshots up by id before name, and qcow2 ids are numbers.
        if name.as_str().bytes().all(|b| b.is_ascii_digit()) {
            return Err(StorageError::invalid(format!(
                "snapshot name {name} is only digits, which qcow2 would confuse with a snapshot id; add a letter"
            )));
        }
        if let Some(existing) = self.entries(volume).await?.into_iter().find(|s| s.name == name.as_str()) {
            return Ok(to_info(existing));
        }
        let path = self.volume_path(volume.id, volume.format);
        self.qemu.snapshot_create(&path, name.as_str()).await.map_err(|e| self.tool_error(volume.id, e))?;
        self.entries(volume)
            .await?
            .into_iter()
            .find(|s| s.name == name.as_str())
            .map(to_info)
            .ok_or_else(|| StorageError::Internal(format!("snapshot {name} of volume {} vanished", volume.id)))
    }

    pub(super) async fn snapshot_revert(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        if !self.entries(volume).await?.iter().any(|s| s.name == name.as_str()) {
            return Err(StorageError::NotFound(format!("volume {} has no snapshot named {name}", volume.id)));
        }
        let path = self.volume_path(volume.id, volume.format);
        self.qemu.snapshot_apply(&path, name.as_str()).await.map_err(|e| self.tool_error(volume.id, e))
    }

    pub(super) async fn snapshot_delete(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        if volume.format == VolumeFormat::Raw || !self.entries(volume).await?.iter().any(|s| s.name == name.as_str()) {
            return Ok(());
        }
        let path = self.volume_path(volume.id, volume.format);
        self.qemu.snapshot_delete(&path, name.as_str()).await.map_err(|e| self.tool_error(volume.id, e))
    }
}

fn to_info(entry: SnapshotEntry) -> SnapshotInfo {
    SnapshotInfo { name: entry.name, created_unix_seconds: entry.date_sec, vm_state_bytes: entry.vm_state_size }
}
