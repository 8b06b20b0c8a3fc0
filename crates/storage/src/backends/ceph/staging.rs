//! Images under construction (DESIGN.md rule 11: complete or absent). A copy,
//! linked clone or import is built under a staging name,
//! `lq-staging-<volume id>-<nonce>`, and renamed to the volume's name `lq-<id>`
//! only when all its data and its final size are in place and flushed: an
//! image under a volume's name is always whole. A staging image nobody
//! writes any more (its builder failed, was cancelled or was killed) is
//! removed by the next build of the same volume, by the builder's own
//! cleanup, or by the purger that runs on every node sharing the pool.

use std::sync::Arc;

use super::rbd::{self, Image};
use super::{Inner, image_name};
use crate::error::{Result, StorageError};
use crate::ids::VolumeId;

const STAGING_PREFIX: &str = "lq-staging-";
/// A staging image older than this with no writer is abandoned: a builder
/// opens its image moments after creating it and keeps it open until done.
pub(super) const ABANDONED_AFTER_SECS: i64 = 30;

fn staging_name(id: VolumeId) -> String {
    format!("{STAGING_PREFIX}{id}-{:08x}", uuid::Uuid::new_v4().as_u128() as u32)
}

/// The volume a staging image is being built for.
pub(super) fn parse_staging_name(name: &str) -> Option<VolumeId> {
    let rest = name.strip_prefix(STAGING_PREFIX)?;
    rest.get(..36)?.parse().ok()
}

/// A staging image: removed on drop unless committed.
pub(super) struct Staging {
    inner: Arc<Inner>,
    id: VolumeId,
    name: String,
    committed: bool,
}

impl Staging {
    /// Picks a fresh staging name for volume `id`, first removing what an
    /// earlier attempt at the same volume left (unless a writer still holds it).
    pub fn begin(inner: &Arc<Inner>, id: VolumeId) -> Result<Self> {
        remove_abandoned(inner, Some(id), 0)?;
        Ok(Self { inner: inner.clone(), id, name: staging_name(id), committed: false })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The finished image becomes the volume. Call only once every byte and
    /// the final size are in place and the image is closed.
    pub fn commit(mut self) -> Result<()> {
        match rbd::rename(&self.inner.io, &self.name, &image_name(self.id)) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) if e.errno == libc::EEXIST => {
                Err(StorageError::AlreadyExists(format!("volume {} appeared while it was being built", self.id)))
            }
            Err(e) => Err(e.in_context(&format!("volume {}", self.id))),
        }
    }
}

/// How long a dropped build keeps trying to remove its staging image while a
/// killed writer's watch still holds it (the OSDs expire such a watch after
/// osd_client_watch_timeout, 30 s by default); the purger takes over after.
const DROP_REMOVAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(90);
const DROP_REMOVAL_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let (inner, name) = (self.inner.clone(), std::mem::take(&mut self.name));
        let remove = move || match rbd::remove(&inner.io, &name) {
            Ok(()) => {
                tracing::info!(image = %name, "removed an unfinished staging image");
                true
            }
            Err(e) if e.errno == libc::ENOENT => true,
            Err(e) if e.errno == libc::EBUSY => false,
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "cannot remove an unfinished staging image; the purger will");
                true
            }
        };
        // librbd calls block: off the async runtime when there is one.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            remove();
            return;
        };
        handle.spawn(async move {
            let remove = std::sync::Arc::new(remove);
            let started = std::time::Instant::now();
            loop {
                let attempt = remove.clone();
                match tokio::task::spawn_blocking(move || attempt()).await {
                    Ok(true) | Err(_) => return,
                    Ok(false) if started.elapsed() < DROP_REMOVAL_WINDOW => tokio::time::sleep(DROP_REMOVAL_RETRY).await,
                    Ok(false) => {
                        tracing::info!("an unfinished staging image is still held by a writer; left for the purger");
                        return;
                    }
                }
            }
        });
    }
}

/// Removes staging images that nobody writes (of volume `only`, or of any
/// volume) and that are at least `min_age_secs` old; returns how many are
/// left (younger, or held by a writer's watch, which may be a killed one's).
pub(super) fn remove_abandoned(i: &Inner, only: Option<VolumeId>, min_age_secs: i64) -> Result<usize> {
    let now = super::unix_now();
    let mut left = 0;
    for (_, name) in rbd::list(&i.io)? {
        let Some(id) = parse_staging_name(&name) else { continue };
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let Some(img) = rbd::existing(Image::open_read_only(&i.io, &name, None))? else { continue };
        if now - img.created_unix_seconds()? < min_age_secs {
            left += 1; // maybe still being built: looked at again later
            continue;
        }
        let watched = img.watcher_count()? > 0;
        drop(img);
        if watched {
            left += 1;
            continue;
        }
        match rbd::remove(&i.io, &name) {
            Ok(()) => tracing::info!(image = %name, "removed an abandoned staging image"),
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) if e.errno == libc::EBUSY => left += 1,
            Err(e) => return Err(e.in_context(&format!("removing staging image {name}"))),
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_carry_their_volume_and_never_look_like_one() {
        let id = VolumeId::new_random();
        let a = staging_name(id);
        assert_ne!(a, staging_name(id), "each attempt has its own name");
        assert_eq!(parse_staging_name(&a), Some(id));
        assert_eq!(super::super::parse_image_name(&a), None, "a staging image is never listed as a volume");
        assert_eq!(parse_staging_name(&image_name(id)), None);
    }
}
