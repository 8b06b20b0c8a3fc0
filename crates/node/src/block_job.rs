//! libvirt block copy, typed: start a mirror of one disk of a running VM
//! onto a destination made beforehand, read its progress, pivot the VM onto
//! the copy or abort it (the VM stays on its source). The virt crate does
//! not wrap these calls: they go through its `sys` bindings here, each on a
//! fresh connection within the node's libvirt deadline (see `Libvirt`).

use std::ffi::CString;

use limiquantix_storage::StorageError;
use virt::sys;

use crate::libvirt::Libvirt;

/// How far a block job is: bytes of the disk done, of `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    pub cur: u64,
    pub end: u64,
}

impl JobProgress {
    /// The mirror holds every byte and follows new writes: it can pivot.
    pub fn ready(&self) -> bool {
        self.end > 0 && self.cur == self.end
    }
}

fn last_error(what: &str, domain: &str) -> StorageError {
    let e = virt::error::Error::last_error();
    StorageError::Internal(format!("libvirt, VM {domain}: {what}: {}", e.message()))
}

fn c(text: &str, what: &str) -> Result<CString, StorageError> {
    CString::new(text).map_err(|_| StorageError::invalid(format!("{what} holds a NUL byte")))
}

impl Libvirt {
    /// Starts mirroring disk `target` onto the existing destination
    /// described by `destination_xml` (`REUSE_EXT`: libvirt creates nothing;
    /// `TRANSIENT_JOB`: a persistent VM keeps running on its source if it
    /// stops mid-copy).
    pub async fn start_block_copy(&self, domain: &str, target: &str, destination_xml: &str) -> Result<(), StorageError> {
        let (name, target, xml) = (domain.to_owned(), target.to_owned(), destination_xml.to_owned());
        self.on_domain(domain, move |dom| {
            let (disk, xml) = (c(&target, "the disk target")?, c(&xml, "the destination")?);
            let flags = sys::VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | sys::VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB;
            // SAFETY: a live domain handle and NUL-terminated strings; no typed parameters.
            let rc = unsafe { sys::virDomainBlockCopy(dom.as_ptr(), disk.as_ptr(), xml.as_ptr(), std::ptr::null_mut(), 0, flags) };
            if rc < 0 { Err(last_error("cannot start the block copy", &name)) } else { Ok(()) }
        })
        .await
    }

    /// Caps the block job on disk `target` at `bytes_per_sec` (the node's
    /// copy limit applies to mirrors as to copies).
    pub async fn limit_block_job(&self, domain: &str, target: &str, bytes_per_sec: u64) -> Result<(), StorageError> {
        let (name, target) = (domain.to_owned(), target.to_owned());
        self.on_domain(domain, move |dom| {
            let disk = c(&target, "the disk target")?;
            let rate = std::os::raw::c_ulong::try_from(bytes_per_sec).unwrap_or(std::os::raw::c_ulong::MAX);
            // SAFETY: a live domain handle and a NUL-terminated name.
            let rc = unsafe { sys::virDomainBlockJobSetSpeed(dom.as_ptr(), disk.as_ptr(), rate, sys::VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES) };
            if rc < 0 { Err(last_error("cannot limit the block copy's speed", &name)) } else { Ok(()) }
        })
        .await
    }

    /// The block job on disk `target`, if one runs.
    pub async fn block_job(&self, domain: &str, target: &str) -> Result<Option<JobProgress>, StorageError> {
        let (name, target) = (domain.to_owned(), target.to_owned());
        self.on_domain(domain, move |dom| {
            let disk = c(&target, "the disk target")?;
            let mut info = sys::virDomainBlockJobInfo { type_: 0, bandwidth: 0, cur: 0, end: 0 };
            // SAFETY: a live domain handle, a NUL-terminated name and a struct libvirt fills.
            let rc = unsafe { sys::virDomainGetBlockJobInfo(dom.as_ptr(), disk.as_ptr(), &mut info, 0) };
            match rc {
                0 => Ok(None),
                r if r > 0 => Ok(Some(JobProgress { cur: info.cur, end: info.end })),
                _ => Err(last_error("cannot read the block job", &name)),
            }
        })
        .await
    }

    /// Ends the block job on disk `target`: `pivot` switches the VM onto the
    /// copy (only once it is ready); otherwise the copy is abandoned and the
    /// VM stays on its source. Synchronous: returns when libvirt has done it.
    pub async fn end_block_job(&self, domain: &str, target: &str, pivot: bool) -> Result<(), StorageError> {
        let (name, target) = (domain.to_owned(), target.to_owned());
        self.on_domain(domain, move |dom| {
            let disk = c(&target, "the disk target")?;
            let flags = if pivot { sys::VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT } else { 0 };
            // SAFETY: a live domain handle and a NUL-terminated name.
            let rc = unsafe { sys::virDomainBlockJobAbort(dom.as_ptr(), disk.as_ptr(), flags) };
            if rc < 0 {
                Err(last_error(if pivot { "cannot pivot onto the copy" } else { "cannot abort the block copy" }, &name))
            } else {
                Ok(())
            }
        })
        .await
    }
}
