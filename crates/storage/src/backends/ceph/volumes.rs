//! RBD images as volumes: lookup, listing, dependents, delete through the
//! trash, flatten.

use super::rbd::{self, Image};
use super::snapshots::is_user_snapshot;
use super::staging::parse_staging_name;
use super::{CephBackend, Inner, image_name, parse_image_name};
use crate::error::{Result, StorageError};
use crate::ids::VolumeId;
use crate::model::{ProgressSink, VolumeFormat, VolumeInfo};

pub(super) fn describe(i: &Inner, id: VolumeId) -> Result<Option<VolumeInfo>> {
    let opened = rbd::existing(Image::open_read_only(&i.io, &image_name(id), None));
    let Some(img) = opened.map_err(|e| e.in_context(&format!("volume {id}")))? else {
        return Ok(None);
    };
    let backing = img.parent()?.and_then(|p| parse_image_name(&p.image));
    let snapshot_count = img.snapshots()?.iter().filter(|s| is_user_snapshot(&s.name)).count() as u32;
    Ok(Some(VolumeInfo {
        id,
        format: VolumeFormat::Raw,
        size_bytes: img.size()?,
        allocated_bytes: img.used_bytes()?,
        backing,
        snapshot_count,
        location: location(i, id),
    }))
}

fn location(i: &Inner, id: VolumeId) -> String {
    let ns = if i.config.rados_namespace.is_empty() { String::new() } else { format!("{}/", i.config.rados_namespace) };
    format!("rbd:{}/{ns}{}", i.config.ceph_pool, image_name(id))
}

/// A volume that was just made and holds no data of its own yet: what it is
/// is known without asking the cluster again.
pub(super) fn fresh(i: &Inner, id: VolumeId, size_bytes: u64, backing: Option<VolumeId>) -> VolumeInfo {
    VolumeInfo { id, format: VolumeFormat::Raw, size_bytes, allocated_bytes: 0, backing, snapshot_count: 0, location: location(i, id) }
}

pub(super) fn list_page(i: &Inner, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
    let mut ids: Vec<VolumeId> = rbd::list(&i.io)?.iter().filter_map(|(_, name)| parse_image_name(name)).collect();
    ids.sort_unstable();
    let mut page = Vec::new();
    for id in ids.into_iter().filter(|id| after.is_none_or(|a| *id > a)) {
        if page.len() == limit {
            break;
        }
        if let Some(v) = describe(i, id)? {
            page.push(v);
        }
    }
    Ok(page)
}

/// Live clones of any snapshot of the image (clones already in the trash
/// are being purged and do not count).
pub(super) fn dependents(i: &Inner, id: VolumeId) -> Result<Vec<VolumeId>> {
    let Some(img) = rbd::existing(Image::open_read_only(&i.io, &image_name(id), None))? else {
        return Ok(Vec::new());
    };
    let mut deps = live_clones(&children_by_snapshot(&img)?);
    deps.sort_unstable();
    deps.dedup();
    Ok(deps)
}

/// Our clones that are not in the trash (those are being purged), also
/// those still being built under a staging name.
fn live_clones(snaps: &[SnapshotChildren]) -> Vec<VolumeId> {
    snaps
        .iter()
        .flat_map(|(_, children)| children)
        .filter(|(_, in_trash)| !in_trash)
        .filter_map(|(child, _)| parse_image_name(child).or_else(|| parse_staging_name(child)))
        .collect()
}

/// A snapshot's name and its clones: (image name, in the trash).
type SnapshotChildren = (String, Vec<(String, bool)>);

/// Every snapshot with its clones, read on one open image. A snapshot
/// removed while it is read (a purger, here or on another node) is skipped.
fn children_by_snapshot(img: &Image) -> Result<Vec<SnapshotChildren>> {
    let mut out = Vec::new();
    for snap in img.snapshots()? {
        match img.set_snap(Some(&snap.name)).and_then(|()| img.children()) {
            Ok(children) => out.push((snap.name.clone(), children)),
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => {
                img.set_snap(None)?;
                return Err(e.into());
            }
        }
    }
    img.set_snap(None)?;
    Ok(out)
}

/// Moves the image to the trash (instant whatever its size) after removing
/// its snapshots; the purger frees its data in the background. Refused while
/// live clones depend on it.
pub(super) fn delete(i: &Inner, id: VolumeId) -> Result<()> {
    let name = image_name(id);
    // Read-only first: most volumes have no snapshots, and then nothing is
    // written before the trash move.
    let Some(img) = rbd::existing(Image::open_read_only(&i.io, &name, None))? else { return Ok(()) };
    let snaps = children_by_snapshot(&img)?;
    drop(img);
    let live = live_clones(&snaps);
    if !live.is_empty() {
        return Err(crate::backend::dependents_error(id, &live, "deleted"));
    }
    // Snapshots whose only clones are in the trash go with the image when
    // the purger has freed those clones.
    let removable: Vec<&String> = snaps.iter().filter(|(_, children)| children.is_empty()).map(|(s, _)| s).collect();
    if !removable.is_empty() {
        let img = Image::open(&i.io, &name)?;
        for snap in removable {
            match img.snap_remove(snap) {
                // A purger (this node's or another's) collected an unused
                // clone snapshot since the listing: gone is what we want.
                Err(e) if e.errno == libc::ENOENT => {}
                other => other?,
            }
        }
    }
    match rbd::trash_move(&i.io, &name) {
        Err(e) if e.errno == libc::EBUSY => Err(StorageError::precondition(format!(
            "volume {id} is in use (a client such as a running VM has it open); detach it first"
        ))),
        other => Ok(other?),
    }
}

/// Copies the parent's data into a linked clone: it stands alone afterwards
/// (the parent's clone snapshot is then removed by the purger).
pub(super) async fn flatten(backend: &CephBackend, id: VolumeId, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
    backend.with_progress(progress, move |i, hook| Ok(Image::open(&i.io, &image_name(id))?.flatten(hook)?)).await?;
    backend.inner.purge.notify_one();
    backend.blocking(move |i| describe(i, id)).await?.ok_or_else(|| StorageError::NotFound(format!("volume {id} vanished")))
}
