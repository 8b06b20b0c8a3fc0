//! Advisory RADOS locks, which hold across every node sharing a pool:
//!
//! - the clone lock of a base image, on its header object: a linked clone
//!   holds it from picking the base's clone snapshot until the clone exists,
//!   and the purger while it collects that base's unused clone snapshots, so
//!   a snapshot is never collected between being picked and being cloned from;
//! - the purger lock of a pool: one node purges a pool at a time, so two
//!   nodes never free the same trashed image at once (librbd aborts the
//!   process when another client takes an image's exclusive lock in the
//!   middle of its removal).
//!
//! Each lock has a lease: a holder that died frees it when the lease lapses.

use std::time::{Duration, Instant};

use super::rados::{CephResult, IoCtx};
use super::rbd::Image;
use crate::error::{Result, StorageError};

const CLONE_LOCK: &str = "lq-clone-snapshots";
/// Every step done under a clone lock is bounded by the client's OSD and
/// monitor timeouts, far below this.
const CLONE_LEASE: Duration = Duration::from_secs(60);

const PURGER_OBJECT: &str = "limiquantix.purger";
const PURGER_LOCK: &str = "lq-purger";
/// The purger renews its lease before each image it frees.
const PURGER_LEASE: Duration = Duration::from_secs(600);

pub(super) struct ObjectLock<'a> {
    io: &'a IoCtx,
    oid: String,
    name: &'static str,
    cookie: String,
    lease: Duration,
}

impl<'a> ObjectLock<'a> {
    /// Waits for the clone lock of `base`, which must be open read-write: its
    /// watch keeps the header object from being removed meanwhile (locking a
    /// missing object would create it).
    pub fn clone_lock(io: &'a IoCtx, base: &Image, base_name: &str) -> Result<Self> {
        let oid = header_oid(base)?;
        let deadline = Instant::now() + CLONE_LEASE + Duration::from_secs(10);
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lock) = Self::take(io, oid.clone(), CLONE_LOCK, CLONE_LEASE)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(StorageError::Unavailable(format!(
                    "the clone lock of {base_name} has been held elsewhere for over {} s; retry",
                    CLONE_LEASE.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The clone lock of `base` (open read-write) if nobody holds it.
    pub fn try_clone_lock(io: &'a IoCtx, base: &Image) -> Result<Option<Self>> {
        Self::take(io, header_oid(base)?, CLONE_LOCK, CLONE_LEASE)
    }

    /// The pool's purger lock if no other node is purging it.
    pub fn try_purger_lock(io: &'a IoCtx) -> Result<Option<Self>> {
        Self::take(io, PURGER_OBJECT.to_owned(), PURGER_LOCK, PURGER_LEASE)
    }

    /// Extends the lease; an error means the lock may have passed to
    /// someone else, and work under it must stop.
    pub fn renew(&self) -> Result<()> {
        Ok(self.io.lock_exclusive(&self.oid, self.name, &self.cookie, self.lease, true)?)
    }

    fn take(io: &'a IoCtx, oid: String, name: &'static str, lease: Duration) -> Result<Option<Self>> {
        let cookie = uuid::Uuid::new_v4().to_string();
        match io.lock_exclusive(&oid, name, &cookie, lease, false) {
            Ok(()) => Ok(Some(Self { io, oid, name, cookie, lease })),
            Err(e) if matches!(e.errno, libc::EBUSY | libc::EEXIST) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for ObjectLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.io.unlock(&self.oid, self.name, &self.cookie) {
            // It lapses with its lease anyway.
            tracing::warn!(object = %self.oid, error = %e, "cannot release a RADOS lock");
        }
    }
}

fn header_oid(base: &Image) -> CephResult<String> {
    Ok(format!("rbd_header.{}", base.id()?))
}
