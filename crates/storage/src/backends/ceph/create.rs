//! Making volumes: empty images, linked clones, full copies (of a volume or
//! of one of its snapshots) and imports. Everything but an empty image (one
//! atomic librbd call) is built under a staging name (see staging.rs).

use std::sync::Arc;

use super::object_lock::ObjectLock;
use super::rbd::{self, Image};
use super::staging::Staging;
use crate::revert::Revert;
use super::{CLONE_SNAP_PREFIX, CephBackend, Inner, image_name, volumes};
use crate::backend::{NewVolume, NewVolumeContent};
use crate::error::{Result, StorageError};
use crate::ids::VolumeId;
use crate::model::{ProgressSink, Provisioning, VolumeInfo};
use crate::tools::qemu_img::ImportTarget;

pub(super) async fn create(backend: &CephBackend, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
    if new.provisioning == Provisioning::Thick {
        return Err(StorageError::invalid("Ceph RBD volumes are thin-provisioned; ask for a thin volume"));
    }
    let (id, size) = (new.id, new.size_bytes);
    match new.content {
        NewVolumeContent::Empty => {
            return backend
                .blocking(move |i| {
                    rbd::create(&i.io, &image_name(id), size)?;
                    Ok(volumes::fresh(i, id, size, None))
                })
                .await;
        }
        NewVolumeContent::LinkedClone { base } => {
            let base_id = base.id;
            return backend
                .blocking(move |i| {
                    let staging = Staging::begin(i, id)?;
                    linked_clone(i, base_id, staging.name(), size)?;
                    staging.commit()?;
                    Ok(volumes::fresh(i, id, size, Some(base_id)))
                })
                .await;
        }
        NewVolumeContent::Copy { source, snapshot } => {
            let (src, snap) = (image_name(source.id), snapshot.map(|s| s.as_str().to_owned()));
            backend
                .with_progress(progress, move |i, hook| {
                    let staging = Staging::begin(i, id)?;
                    rbd::create(&i.io, staging.name(), size)?;
                    {
                        let from = Image::open_read_only(&i.io, &src, snap.as_deref())?;
                        let to = Image::open(&i.io, staging.name())?;
                        let throttle = crate::throttle::Throttle::new(i.qemu.copy_rate());
                        let cancel = hook.cancel;
                        let report = &mut *hook.report;
                        from.copy_data_to(&to, &mut rbd::ProgressHook {
                            report: &mut |done, total| {
                                report(done, total);
                                throttle.pace(done, cancel);
                            },
                            cancel,
                        })?;
                    }
                    staging.commit()
                })
                .await?;
        }
        NewVolumeContent::WholeFile { .. } => return Err(crate::backend::no_whole_file_copy("ceph")),
        NewVolumeContent::Image(image) => {
            // The staging image is made first, at its final size; the
            // confined qemu-img only fills it.
            let staging = backend
                .blocking(move |i| {
                    let staging = Staging::begin(i, id)?;
                    rbd::create(&i.io, staging.name(), size)?;
                    Ok(staging)
                })
                .await?;
            let i = &backend.inner;
            let target = ImportTarget::Rbd {
                pool: &i.config.ceph_pool,
                namespace: &i.config.rados_namespace,
                image: staging.name(),
                conf: &i.files.conf,
                keyring: &i.files.keyring,
                client_id: &i.config.client_id,
            };
            crate::progress::import(&i.qemu, image, target, crate::model::ImageFormat::Raw, progress).await.map_err(StorageError::Tool)?;
            backend
                .blocking(move |i| {
                    Image::open(&i.io, staging.name())?.flush()?;
                    staging.commit()
                })
                .await?;
        }
    }
    backend
        .blocking(move |i| volumes::describe(i, id))
        .await?
        .ok_or_else(|| StorageError::Internal(format!("volume {id} vanished right after it was created")))
}

/// snapshot + protect + clone into `child_name`, grown to `size`; each
/// finished step is undone if a later fails (a clone of the wrong size is
/// never left behind). Clones of a base that has not changed since its
/// newest clone snapshot share that snapshot (a VM template cloned a
/// hundred times takes one snapshot, not a hundred: each costs a monitor
/// round). The base's clone lock keeps every node's purger from collecting
/// the snapshot between our pick and our clone.
fn linked_clone(i: &Arc<Inner>, base: VolumeId, child_name: &str, size: u64) -> Result<()> {
    let base_name = image_name(base);
    let img = Image::open(&i.io, &base_name)?;
    let _lock = ObjectLock::clone_lock(&i.io, &img, &base_name)?;
    let mut revert = Revert::new("linked clone");
    let newest = img.snapshots()?.into_iter().filter(|s| s.name.starts_with(CLONE_SNAP_PREFIX)).max_by_key(|s| s.id);
    let snap = match newest {
        Some(s) if s.size == img.size()? && !img.changed_since(&s.name)? => s.name,
        _ => {
            let snap = format!("{CLONE_SNAP_PREFIX}{}", uuid::Uuid::new_v4());
            img.snap_create(&snap)?;
            let (img, made) = (&img, snap.clone());
            // Left protected, the purger collects it with the base's other unused clone snapshots.
            revert.add(format!("snapshot {made}"), move || img.snap_remove(&made).map_err(|e| e.to_string()));
            snap
        }
    };
    if !img.snap_is_protected(&snap)? {
        img.snap_protect(&snap)?;
    }
    rbd::clone(&i.io, &base_name, &snap, child_name)?;
    revert.add(format!("clone {child_name}"), || rbd::remove(&i.io, child_name).map_err(|e| e.to_string()));
    grow_child(i, child_name, size)?;
    revert.success();
    Ok(())
}

fn grow_child(i: &Inner, child_name: &str, size: u64) -> Result<()> {
    let child = Image::open(&i.io, child_name)?;
    if size > child.size()? {
        child.grow(size)?;
    }
    Ok(())
}
