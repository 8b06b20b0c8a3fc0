//! Internal qcow2 snapshots of local volumes.

use super::LocalBackend;
use crate::backends::image_files::ImageSnapshots;
use crate::error::{StorageError, ToolError};
use crate::model::VolumeInfo;

impl LocalBackend {
    pub(super) fn snapshots<'a>(&'a self, volume: &'a VolumeInfo) -> ImageSnapshots<'a, impl Fn(ToolError) -> StorageError + 'a> {
        ImageSnapshots {
            qemu: &self.qemu,
            image: self.volume_path(volume.id, volume.format),
            volume,
            tool_error: move |e| self.tool_error(volume.id, e),
        }
    }
}
