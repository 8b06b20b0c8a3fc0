//! User snapshots of RBD volumes. The backend's own clone snapshots
//! (`lq-clone-…`) are hidden from users and their names reserved.

use super::rbd::{self, Image};
use super::{CLONE_SNAP_PREFIX, Inner, image_name};
use crate::error::{Result, StorageError};
use crate::ids::{Name, VolumeId};
use crate::model::SnapshotInfo;

pub(super) fn is_user_snapshot(name: &str) -> bool {
    !name.starts_with(CLONE_SNAP_PREFIX)
}

fn reserved(name: &Name) -> Result<()> {
    if name.as_str().starts_with("lq-") {
        return Err(StorageError::invalid(format!("snapshot names starting with lq- are reserved; rename {name}")));
    }
    Ok(())
}

pub(super) fn list(i: &Inner, id: VolumeId) -> Result<Vec<SnapshotInfo>> {
    let img = Image::open_read_only(&i.io, &image_name(id), None)?;
    let mut out = Vec::new();
    for s in img.snapshots()?.into_iter().filter(|s| is_user_snapshot(&s.name)) {
        out.push(SnapshotInfo { created_unix_seconds: img.snap_timestamp(s.id)?, name: s.name, vm_state_bytes: 0 });
    }
    Ok(out)
}

/// The snapshot named `name`, if the image has one.
fn find(img: &Image, name: &Name) -> Result<Option<rbd::SnapInfo>> {
    Ok(img.snapshots()?.into_iter().find(|s| s.name == name.as_str()))
}

pub(super) fn create(i: &Inner, id: VolumeId, name: &Name) -> Result<SnapshotInfo> {
    reserved(name)?;
    let img = Image::open(&i.io, &image_name(id))?;
    if find(&img, name)?.is_none() {
        img.snap_create(name.as_str())?;
    }
    let snap = find(&img, name)?.ok_or_else(|| StorageError::Internal(format!("snapshot {name} of volume {id} vanished")))?;
    Ok(SnapshotInfo { created_unix_seconds: img.snap_timestamp(snap.id)?, name: snap.name, vm_state_bytes: 0 })
}

pub(super) fn revert(i: &Inner, id: VolumeId, name: &Name) -> Result<()> {
    reserved(name)?;
    let img = Image::open(&i.io, &image_name(id))?;
    if find(&img, name)?.is_none() {
        return Err(StorageError::NotFound(format!("volume {id} has no snapshot named {name}")));
    }
    match img.snap_rollback(name.as_str()) {
        Err(e) if e.errno == libc::EBUSY || e.errno == libc::EROFS => Err(StorageError::precondition(format!(
            "volume {id} is in use (a running VM holds it); stop the VM before reverting"
        ))),
        other => Ok(other?),
    }
}

pub(super) fn delete(i: &Inner, id: VolumeId, name: &Name) -> Result<()> {
    // Clone snapshots belong to the backend; they go when their clones do.
    reserved(name)?;
    let vol = image_name(id);
    let Some(img) = rbd::existing(Image::open(&i.io, &vol))? else { return Ok(()) };
    if find(&img, name)?.is_none() {
        return Ok(());
    }
    if img.snap_is_protected(name.as_str())? {
        let children: Vec<String> =
            Image::open_read_only(&i.io, &vol, Some(name.as_str()))?.children()?.into_iter().map(|(n, _)| n).collect();
        if !children.is_empty() {
            return Err(StorageError::precondition(format!(
                "snapshot {name} of volume {id} is protected and clones depend on it ({}); delete them first",
                children.join(", ")
            )));
        }
    }
    Ok(img.snap_remove(name.as_str())?)
}
