//! Internal qcow2 snapshots of one image file, through qemu-img (a path for
//! a local file, an `nfs://` URL for a file on an export).

use std::path::PathBuf;

use crate::error::{Result, StorageError, ToolError};
use crate::ids::Name;
use crate::model::{SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::tools::QemuImg;
use crate::tools::qemu_img::SnapshotEntry;

pub struct ImageSnapshots<'a, E: Fn(ToolError) -> StorageError> {
    pub qemu: &'a QemuImg,
    /// What qemu-img opens: the volume's file.
    pub image: PathBuf,
    pub volume: &'a VolumeInfo,
    /// What a qemu-img failure means for this pool.
    pub tool_error: E,
}

impl<E: Fn(ToolError) -> StorageError> ImageSnapshots<'_, E> {
    async fn entries(&self) -> Result<Vec<SnapshotEntry>> {
        let info = self.qemu.info(&self.image, self.volume.format.into(), true).await.map_err(&self.tool_error)?;
        Ok(info.snapshots)
    }

    pub async fn list(&self) -> Result<Vec<SnapshotInfo>> {
        if self.volume.format == VolumeFormat::Raw {
            return Ok(Vec::new());
        }
        Ok(self.entries().await?.into_iter().map(to_info).collect())
    }

    /// Idempotent: an existing snapshot of that name is returned as it is.
    pub async fn create(&self, name: &Name) -> Result<SnapshotInfo> {
        // qemu-img looks snapshots up by id before name, and qcow2 ids are numbers.
        if name.as_str().bytes().all(|b| b.is_ascii_digit()) {
            return Err(StorageError::invalid(format!(
                "snapshot name {name} is only digits, which qcow2 would confuse with a snapshot id; add a letter"
            )));
        }
        if let Some(existing) = self.entries().await?.into_iter().find(|s| s.name == name.as_str()) {
            return Ok(to_info(existing));
        }
        self.qemu.snapshot_create(&self.image, name.as_str()).await.map_err(&self.tool_error)?;
        self.entries()
            .await?
            .into_iter()
            .find(|s| s.name == name.as_str())
            .map(to_info)
            .ok_or_else(|| StorageError::Internal(format!("snapshot {name} of volume {} vanished", self.volume.id)))
    }

    pub async fn revert(&self, name: &Name) -> Result<()> {
        if !self.entries().await?.iter().any(|s| s.name == name.as_str()) {
            return Err(StorageError::NotFound(format!("volume {} has no snapshot named {name}", self.volume.id)));
        }
        self.qemu.snapshot_apply(&self.image, name.as_str()).await.map_err(&self.tool_error)
    }

    /// Deleting a snapshot that is not there succeeds.
    pub async fn delete(&self, name: &Name) -> Result<()> {
        if self.volume.format == VolumeFormat::Raw || !self.entries().await?.iter().any(|s| s.name == name.as_str()) {
            return Ok(());
        }
        self.qemu.snapshot_delete(&self.image, name.as_str()).await.map_err(&self.tool_error)
    }
}

fn to_info(entry: SnapshotEntry) -> SnapshotInfo {
    SnapshotInfo { name: entry.name, created_unix_seconds: entry.date_sec, vm_state_bytes: entry.vm_state_size }
}
