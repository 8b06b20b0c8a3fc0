//! The guest agent through libvirt, typed: freeze and thaw a running VM's
//! filesystems (virDomainFSFreeze/FSThaw) within a deadline. qemu-ga never
//! thaws by itself, so whoever freezes must thaw on every path.

use std::time::Duration;

use limiquantix_storage::StorageError;
use virt::error::ErrorNumber;
use virt::sys;

use crate::libvirt::Libvirt;

fn agent_error(domain: &str, what: &str) -> StorageError {
    agent_error_from(domain, what, &virt::error::Error::last_error())
}

fn agent_error_from(domain: &str, what: &str, e: &virt::error::Error) -> StorageError {
    StorageError::FailedPrecondition(format!("VM {domain}: the guest agent did not {what}: {}", e.message()))
}

/// Why a freeze did not happen.
#[derive(Debug)]
pub enum FreezeError {
    /// The VM has no guest agent channel: nothing can have been frozen.
    NoAgent(StorageError),
    /// The agent failed or did not answer in time: it may freeze late.
    Failed(StorageError),
}

impl FreezeError {
    pub fn error(&self) -> &StorageError {
        match self {
            Self::NoAgent(e) | Self::Failed(e) => e,
        }
    }
}

impl Libvirt {
    /// Freezes every filesystem the guest agent can freeze; returns how many
    /// it froze. libvirt gives up on an agent silent for `deadline` (the
    /// response timeout is set on the domain first).
    pub async fn freeze_filesystems(&self, domain: &str, deadline: Duration) -> Result<u32, FreezeError> {
        let name = domain.to_owned();
        let frozen = self
            .with_domain(domain, deadline, move |_, dom| {
                let freeze = || {
                    set_agent_timeout(dom, &name, deadline).map_err(|e| classify(e, &virt::error::Error::last_error()))?;
                    // SAFETY: a live domain handle; no mountpoint list (all of them).
                    let rc = unsafe { sys::virDomainFSFreeze(dom.as_ptr(), std::ptr::null_mut(), 0, 0) };
                    u32::try_from(rc).map_err(|_| {
                        let e = virt::error::Error::last_error();
                        classify(agent_error_from(&name, "freeze the filesystems", &e), &e)
                    })
                };
                Ok(freeze())
            })
            .await;
        frozen.unwrap_or_else(|e| Err(FreezeError::Failed(e)))
    }

    /// Thaws what a freeze froze (a guest that is not frozen answers 0).
    pub async fn thaw_filesystems(&self, domain: &str, deadline: Duration) -> Result<u32, StorageError> {
        let name = domain.to_owned();
        self.with_domain(domain, deadline, move |_, dom| {
            set_agent_timeout(dom, &name, deadline)?;
            // SAFETY: a live domain handle; no mountpoint list (all of them).
            let rc = unsafe { sys::virDomainFSThaw(dom.as_ptr(), std::ptr::null_mut(), 0, 0) };
            u32::try_from(rc).map_err(|_| agent_error(&name, "thaw the filesystems"))
        })
        .await
    }
}

/// "No agent channel" is the one answer that says nothing was frozen.
fn classify(error: StorageError, cause: &virt::error::Error) -> FreezeError {
    if cause.code().is(ErrorNumber::ArgumentUnsupported) { FreezeError::NoAgent(error) } else { FreezeError::Failed(error) }
}

/// Without it libvirt waits for an agent command forever.
fn set_agent_timeout(dom: &virt::domain::Domain, name: &str, deadline: Duration) -> Result<(), StorageError> {
    let secs = std::os::raw::c_int::try_from(deadline.as_secs().max(1)).unwrap_or(std::os::raw::c_int::MAX);
    // SAFETY: a live domain handle.
    let rc = unsafe { sys::virDomainAgentSetResponseTimeout(dom.as_ptr(), secs, 0) };
    if rc < 0 { Err(agent_error(name, "accept a response timeout")) } else { Ok(()) }
}
