//! RBD images as volumes: lookup, listing, capacity, create (empty, linked
//! clone, copy, import), delete through the trash, snapshots.

use std::sync::Weak;
use std::time::Duration;

use super::rados::Cluster;
use super::rbd::{self, Image, ProgressHook};
use super::{CLONE_SNAP_PREFIX, CephBackend, Inner, image_name, parse_image_name};
use crate::backend::{NewVolume, NewVolumeContent};
use crate::error::{Result, StorageError};
use crate::ids::{Name, VolumeId};
use crate::model::{CephPoolConfig, PoolCapacity, ProgressSink, Provisioning, SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::tools::qemu_img::{ConvertOptions, ConvertTarget, Preallocation};

/// The pool must exist and be an RBD pool; created when asked to.
pub(super) fn ensure_pool(cluster: &Cluster, cfg: &CephPoolConfig, may_create: bool) -> Result<()> {
    let pool = &cfg.ceph_pool;
    if cluster.pool_lookup(pool)?.is_none() {
        if !(cfg.create_if_missing && may_create) {
            return Err(StorageError::NotFound(format!(
                "Ceph pool {pool} does not exist; create it (ceph osd pool create {pool} && rbd pool init {pool}) or set create_if_missing"
            )));
        }
        cluster.mon_command(&serde_json::json!({"prefix": "osd pool create", "pool": pool, "format": "json"}))?;
        cluster.mon_command(&serde_json::json!({"prefix": "osd pool application enable", "pool": pool, "app": "rbd", "format": "json"}))?;
        tracing::info!(%pool, "created Ceph pool with application rbd");
    }
    let apps = cluster.mon_command(&serde_json::json!({"prefix": "osd pool application get", "pool": pool, "format": "json"}))?;
    let apps: serde_json::Value = serde_json::from_slice(&apps)
        .map_err(|e| StorageError::Internal(format!("Ceph answered osd pool application get with bad JSON: {e}")))?;
    if apps.get("rbd").is_none() {
        return Err(StorageError::precondition(format!(
            "Ceph pool {pool} is not an RBD pool (application rbd is not enabled); run `rbd pool init {pool}` or choose another pool"
        )));
    }
    Ok(())
}

fn ceph_df_pool(i: &Inner) -> Result<(u64, u64)> {
    let out = i.cluster.mon_command(&serde_json::json!({"prefix": "df", "format": "json"}))?;
    let df: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| StorageError::Internal(format!("Ceph answered df with bad JSON: {e}")))?;
    let pools = df["pools"].as_array().ok_or_else(|| StorageError::Internal("ceph df: no pools".into()))?;
    let pool = pools
        .iter()
        .find(|p| p["name"] == i.config.ceph_pool.as_str())
        .ok_or_else(|| StorageError::NotFound(format!("Ceph pool {} is gone from ceph df", i.config.ceph_pool)))?;
    let field = |name: &str| {
        pool["stats"][name].as_u64().ok_or_else(|| StorageError::Internal(format!("ceph df: pool stats lack {name}")))
    };
    Ok((field("stored")?, field("max_avail")?))
}

/// Capacity as Ceph reports it for the pool (replication and full ratio
/// included): total = stored + available; provisioned from the images.
pub(super) fn capacity(i: &Inner) -> Result<PoolCapacity> {
    let (stored, max_avail) = ceph_df_pool(i)?;
    let mut provisioned = 0;
    let mut count = 0;
    for (_, name) in rbd::list(&i.io)? {
        if parse_image_name(&name).is_none() {
            continue;
        }
        // An image deleted meanwhile is not counted.
        if let Some(img) = rbd::existing(Image::open_read_only(&i.io, &name, None))? {
            provisioned += img.size()?;
            count += 1;
        }
    }
    Ok(PoolCapacity {
        total_bytes: stored + max_avail,
        free_bytes: max_avail,
        provisioned_bytes: provisioned,
        allocated_bytes: stored,
        volume_count: count,
    })
}

fn is_user_snapshot(name: &str) -> bool {
    !name.starts_with(CLONE_SNAP_PREFIX)
}

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
fn fresh(i: &Inner, id: VolumeId, size_bytes: u64, backing: Option<VolumeId>) -> VolumeInfo {
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

/// Our clones that are not in the trash (those are being purged).
fn live_clones(snaps: &[SnapshotChildren]) -> Vec<VolumeId> {
    snaps
        .iter()
        .flat_map(|(_, children)| children)
        .filter(|(_, in_trash)| !in_trash)
        .filter_map(|(child, _)| parse_image_name(child))
        .collect()
}

/// A snapshot's name and its clones: (image name, in the trash).
type SnapshotChildren = (String, Vec<(String, bool)>);

/// Every snapshot with its clones, read on one open image.
fn children_by_snapshot(img: &Image) -> Result<Vec<SnapshotChildren>> {
    let mut out = Vec::new();
    for snap in img.snapshots()? {
        img.set_snap(Some(&snap.name))?;
        out.push((snap.name.clone(), img.children()?));
    }
    img.set_snap(None)?;
    Ok(out)
}

/// Runs a blocking librbd copy, reporting progress, stopping it when the
/// caller's future is dropped.
async fn with_progress<T: Send + 'static>(
    backend: &CephBackend,
    progress: ProgressSink<'_>,
    f: impl FnOnce(&Inner, &mut ProgressHook<'_>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let inner = backend.inner.clone();
    crate::progress::run_blocking(progress, move |cancel, report| {
        let mut total = 0;
        let out = f(&inner, &mut ProgressHook {
            report: &mut |done, all| {
                total = all;
                report(done, all)
            },
            cancel,
        })?;
        // librbd's last report can stop short of the total.
        report(total, total);
        Ok(out)
    })
    .await
}

pub(super) async fn create(backend: &CephBackend, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
    if new.provisioning == Provisioning::Thick {
        return Err(StorageError::invalid("Ceph RBD volumes are thin-provisioned; ask for a thin volume"));
    }
    let (id, size) = (new.id, new.size_bytes);
    let name = image_name(id);
    match new.content {
        NewVolumeContent::Empty => {
            let name = name.clone();
            return backend
                .blocking(move |i| {
                    rbd::create(&i.io, &name, size)?;
                    Ok(fresh(i, id, size, None))
                })
                .await;
        }
        NewVolumeContent::LinkedClone { base } => {
            let (base_id, child) = (base.id, name.clone());
            return backend
                .blocking(move |i| {
                    linked_clone(i, base_id, &child, size)?;
                    Ok(fresh(i, id, size, Some(base_id)))
                })
                .await;
        }
        NewVolumeContent::Copy { source, snapshot } => {
            let (src, snap, dest) = (image_name(source.id), snapshot.map(|s| s.as_str().to_owned()), name.clone());
            let copied = with_progress(backend, progress, move |i, hook| {
                let img = Image::open_read_only(&i.io, &src, snap.as_deref())?;
                let result = img.deep_copy(&i.io, &dest, hook).map_err(StorageError::from).and_then(|()| {
                    // A full copy is a fresh volume: no snapshots of its source.
                    let copy = Image::open(&i.io, &dest)?;
                    for s in copy.snapshots()? {
                        copy.snap_remove(&s.name)?;
                    }
                    Ok(())
                });
                if result.is_err() {
                    discard(i, &dest);
                }
                result
            })
            .await;
            copied?;
            grow_or_discard(backend, id, size).await?;
        }
        NewVolumeContent::Image(image) => {
            let i = &backend.inner;
            let opts = ConvertOptions {
                source: &image.path,
                source_format: image.format,
                snapshot: None,
                target: ConvertTarget::Rbd {
                    pool: &i.config.ceph_pool,
                    namespace: &i.config.rados_namespace,
                    image: &name,
                    conf: &i.files.conf,
                    client_id: &i.config.client_id,
                },
                target_format: crate::model::ImageFormat::Raw,
                preallocation: Preallocation::Off,
            };
            if let Err(e) = crate::progress::convert(&i.qemu, &opts, image.virtual_size, progress).await {
                let n = name.clone();
                backend.blocking(move |i| Ok(discard(i, &n))).await?;
                return Err(StorageError::Tool(e));
            }
            grow_or_discard(backend, id, size).await?;
        }
    }
    backend
        .blocking(move |i| describe(i, id))
        .await?
        .ok_or_else(|| StorageError::Internal(format!("volume {id} vanished right after it was created")))
}

/// Grows a copied or imported image to the size asked for; if that fails
/// the image goes, so a failed create leaves nothing behind.
async fn grow_or_discard(backend: &CephBackend, id: VolumeId, size: u64) -> Result<()> {
    backend
        .blocking(move |i| {
            let name = image_name(id);
            let img = Image::open(&i.io, &name)?;
            let grown = img.size().and_then(|now| if size > now { img.grow(size) } else { Ok(()) });
            drop(img);
            grown.map_err(|e| {
                discard(i, &name);
                e.into()
            })
        })
        .await
}

/// Removes the image a failed create left behind. The caller reports the
/// failure that led here; a failed removal is only logged.
fn discard(i: &Inner, name: &str) {
    if let Err(e) = rbd::remove(&i.io, name)
        && e.errno != libc::ENOENT
    {
        tracing::warn!(image = name, error = %e, "cannot remove the image a failed create left behind");
    }
}

/// snapshot + protect + clone; each finished step is undone if a later fails.
/// Clones of a base that has not changed since its newest clone snapshot
/// share that snapshot (a VM template cloned a hundred times takes one
/// snapshot, not a hundred: each costs a monitor round).
fn linked_clone(i: &Inner, base: VolumeId, child_name: &str, size: u64) -> Result<()> {
    let _picking = i.clone_snapshots.lock().expect("clone snapshot lock");
    let base_name = image_name(base);
    let reusable = {
        let img = Image::open_read_only(&i.io, &base_name, None)?;
        let newest = img.snapshots()?.into_iter().filter(|s| s.name.starts_with(CLONE_SNAP_PREFIX)).max_by_key(|s| s.id);
        match newest {
            Some(s) if s.size == img.size()? && !img.changed_since(&s.name)? => Some(s.name),
            _ => None,
        }
    };
    let (snap, made_snap) = match reusable {
        Some(snap) => (snap, false),
        None => (format!("{CLONE_SNAP_PREFIX}{}", uuid::Uuid::new_v4()), true),
    };
    let img = Image::open(&i.io, &base_name)?;
    if made_snap {
        img.snap_create(&snap)?;
    }
    let undo = |e: StorageError| {
        if made_snap {
            let _ = img.snap_remove(&snap);
        }
        e
    };
    if !img.snap_is_protected(&snap).map_err(|e| undo(e.into()))? {
        img.snap_protect(&snap).map_err(|e| undo(e.into()))?;
    }
    rbd::clone(&i.io, &base_name, &snap, child_name).map_err(|e| undo(e.into()))?;
    if size > img.size()?
        && let Err(e) = Image::open(&i.io, child_name).and_then(|c| c.grow(size)) {
            discard(i, child_name);
            return Err(undo(e.into()));
        }
    Ok(())
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
            img.snap_remove(snap)?;
        }
    }
    match rbd::trash_move(&i.io, &name) {
        Err(e) if e.errno == libc::EBUSY => Err(StorageError::precondition(format!(
            "volume {id} is in use (a client such as a running VM has it open); detach it first"
        ))),
        other => Ok(other?),
    }
}

/// Frees our images in the trash, children before parents, and removes
/// clone snapshots whose clone is gone. Runs on wake-up and every minute.
pub(super) async fn purge_loop(inner: Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let notified = {
            let i = i.clone();
            async move { i.purge.notified().await }
        };
        let pass = {
            let i = i.clone();
            tokio::task::spawn_blocking(move || purge_once(&i)).await
        };
        match pass {
            Ok(Ok(left)) if left > 0 => tracing::debug!(left, "images left in the RBD trash; retrying"),
            Ok(Err(e)) => tracing::warn!(error = %e, "RBD trash purge failed; retrying"),
            _ => {}
        }
        drop(i);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// One purge pass; returns how many of our trashed images are left.
fn purge_once(i: &Inner) -> Result<usize> {
    let mut left = 0;
    for _round in 0..8 {
        let entries: Vec<(String, String)> =
            rbd::trash_list(&i.io)?.into_iter().filter(|(_, name)| parse_image_name(name).is_some()).collect();
        if entries.is_empty() {
            break;
        }
        left = entries.len();
        let mut progressed = false;
        for (trash_id, name) in &entries {
            // Its snapshots go first; one whose clones wait their turn in the
            // trash answers EBUSY, and so does the image while it has them.
            if let Err(e) = remove_snapshots_of_trashed(i, trash_id) {
                tracing::warn!(image = %name, error = %e, "cannot remove the snapshots of a trashed image");
            }
            match rbd::trash_remove(&i.io, trash_id) {
                Ok(()) => {
                    progressed = true;
                    left -= 1;
                }
                Err(e) if matches!(e.errno, libc::EBUSY | libc::ENOTEMPTY) => {}
                Err(e) => tracing::warn!(image = %name, error = %e, "cannot free a trashed image"),
            }
        }
        if !progressed {
            break;
        }
    }
    remove_orphan_clone_snapshots(i)?;
    Ok(left)
}

fn remove_snapshots_of_trashed(i: &Inner, trash_id: &str) -> super::rados::CephResult<()> {
    let Some(img) = rbd::existing(Image::open_by_id(&i.io, trash_id))? else { return Ok(()) };
    for snap in img.snapshots()? {
        match img.snap_remove(&snap.name) {
            Err(e) if e.errno != libc::EBUSY => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Clone snapshots that no clone uses any more.
fn remove_orphan_clone_snapshots(i: &Inner) -> Result<()> {
    let _collecting = i.clone_snapshots.lock().expect("clone snapshot lock");
    for (_, name) in rbd::list(&i.io)? {
        let Some(_) = parse_image_name(&name) else { continue };
        let Ok(img) = Image::open(&i.io, &name) else { continue };
        for snap in img.snapshots()? {
            if snap.name.starts_with(CLONE_SNAP_PREFIX) {
                let at = Image::open_read_only(&i.io, &name, Some(&snap.name))?;
                if at.children()?.is_empty() {
                    img.snap_remove(&snap.name)?;
                }
            }
        }
    }
    Ok(())
}

fn reserved(name: &Name) -> Result<()> {
    if name.as_str().starts_with("lq-") {
        return Err(StorageError::invalid(format!("snapshot names starting with lq- are reserved; rename {name}")));
    }
    Ok(())
}

pub(super) fn user_snapshots(i: &Inner, id: VolumeId) -> Result<Vec<SnapshotInfo>> {
    let img = Image::open(&i.io, &image_name(id))?;
    let mut out = Vec::new();
    for s in img.snapshots()?.into_iter().filter(|s| is_user_snapshot(&s.name)) {
        out.push(SnapshotInfo { created_unix_seconds: img.snap_timestamp(s.id)?, name: s.name, vm_state_bytes: 0 });
    }
    Ok(out)
}

/// The snapshot named `name`, if the image has one.
fn find_snapshot(img: &Image, name: &Name) -> Result<Option<rbd::SnapInfo>> {
    Ok(img.snapshots()?.into_iter().find(|s| s.name == name.as_str()))
}

pub(super) fn snapshot_create(i: &Inner, id: VolumeId, name: &Name) -> Result<SnapshotInfo> {
    reserved(name)?;
    let img = Image::open(&i.io, &image_name(id))?;
    if find_snapshot(&img, name)?.is_none() {
        img.snap_create(name.as_str())?;
    }
    let snap = find_snapshot(&img, name)?
        .ok_or_else(|| StorageError::Internal(format!("snapshot {name} of volume {id} vanished")))?;
    Ok(SnapshotInfo { created_unix_seconds: img.snap_timestamp(snap.id)?, name: snap.name, vm_state_bytes: 0 })
}

pub(super) fn snapshot_revert(i: &Inner, id: VolumeId, name: &Name) -> Result<()> {
    reserved(name)?;
    let img = Image::open(&i.io, &image_name(id))?;
    if find_snapshot(&img, name)?.is_none() {
        return Err(StorageError::NotFound(format!("volume {id} has no snapshot named {name}")));
    }
    match img.snap_rollback(name.as_str()) {
        Err(e) if e.errno == libc::EBUSY || e.errno == libc::EROFS => Err(StorageError::precondition(format!(
            "volume {id} is in use (a running VM holds it); stop the VM before reverting"
        ))),
        other => Ok(other?),
    }
}

pub(super) fn snapshot_delete(i: &Inner, id: VolumeId, name: &Name) -> Result<()> {
    // Clone snapshots belong to the backend; they go when their clones do.
    reserved(name)?;
    let vol = image_name(id);
    let Some(img) = rbd::existing(Image::open(&i.io, &vol))? else { return Ok(()) };
    if find_snapshot(&img, name)?.is_none() {
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

/// Copies the parent's data into a linked clone: it stands alone afterwards
/// (the parent's clone snapshot is then removed by the purger).
pub(super) async fn flatten(backend: &CephBackend, id: VolumeId, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
    with_progress(backend, progress, move |i, hook| {
        Ok(Image::open(&i.io, &image_name(id))?.flatten(hook)?)
    })
    .await?;
    backend.inner.purge.notify_one();
    backend.blocking(move |i| describe(i, id)).await?.ok_or_else(|| StorageError::NotFound(format!("volume {id} vanished")))
}
