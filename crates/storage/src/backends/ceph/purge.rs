//! The background purger every node runs for each Ceph pool: it frees our
//! images in the RBD trash (children before parents), removes clone
//! snapshots no clone uses any more, and removes abandoned staging images.
//! Every node sharing the pool runs it, one at a time (the pool's purger
//! lock), and each removal must be safe against another node's work in
//! progress (clone locks, staging age rules).

use std::sync::Weak;
use std::time::Duration;

use super::object_lock::ObjectLock;
use super::rbd::{self, Image};
use super::{CLONE_SNAP_PREFIX, Inner, parse_image_name, staging};
use crate::error::Result;

/// Between passes when nothing is pending.
const IDLE_INTERVAL: Duration = Duration::from_secs(60);
/// Between passes while something could not be removed yet (a killed
/// writer's watch expires after the OSDs' osd_client_watch_timeout).
const PENDING_INTERVAL: Duration = Duration::from_secs(10);

/// Runs on wake-up, and every minute (sooner while work is pending).
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
        let pending = match pass {
            Ok(Ok(left)) => left > 0,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "RBD purge failed; retrying");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "RBD purge task failed; retrying");
                true
            }
        };
        if pending {
            tracing::debug!("RBD purge left work pending; retrying soon");
        }
        drop(i);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(if pending { PENDING_INTERVAL } else { IDLE_INTERVAL }) => {}
        }
    }
}

/// One pass; returns how many things are left to remove (1 when another
/// node is purging the pool right now: this one looks again soon).
pub(super) fn purge_once(i: &Inner) -> Result<usize> {
    let Some(lock) = ObjectLock::try_purger_lock(&i.io)? else { return Ok(1) };
    let mut left = purge_trash(i, &lock)?;
    remove_orphan_clone_snapshots(i)?;
    left += staging::remove_abandoned(i, None, staging::ABANDONED_AFTER_SECS)?;
    Ok(left)
}

fn purge_trash(i: &Inner, lock: &ObjectLock) -> Result<usize> {
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
            lock.renew()?;
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

/// Clone snapshots that no clone uses any more, each collected under its
/// base's clone lock (a base being cloned from right now is left for a later
/// pass).
fn remove_orphan_clone_snapshots(i: &Inner) -> Result<()> {
    for (_, name) in rbd::list(&i.io)? {
        let Some(_) = parse_image_name(&name) else { continue };
        // Looked at read-only first (no watch, no lock): most images are not
        // bases, and another node may be deleting any of them right now.
        let Ok(look) = Image::open_read_only(&i.io, &name, None) else { continue };
        let Ok(snaps) = look.snapshots() else { continue }; // removed meanwhile
        drop(look);
        let candidates: Vec<String> = snaps.into_iter().map(|s| s.name).filter(|n| n.starts_with(CLONE_SNAP_PREFIX)).collect();
        if candidates.is_empty() {
            continue;
        }
        // Checked again under the lock: each candidate goes only if no clone uses it.
        let Ok(img) = Image::open(&i.io, &name) else { continue };
        let Some(_lock) = ObjectLock::try_clone_lock(&i.io, &img)? else { continue };
        for snap in candidates {
            let Some(at) = rbd::existing(Image::open_read_only(&i.io, &name, Some(&snap)))? else { continue };
            if at.children()?.is_empty() {
                match img.snap_remove(&snap) {
                    Ok(()) => {}
                    // Something outside LimiQuantix cloned from it, or removed it.
                    Err(e) if matches!(e.errno, libc::EBUSY | libc::ENOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}
