//! Snapshots of the disks a running VM has open, at one instant through its
//! QEMU, with the guest's filesystems frozen around them when asked.
//! Freeze → snapshot → thaw: the thaw always follows a freeze that may have
//! happened, even when the freeze reported an error or the snapshot failed.

use std::time::{Duration, Instant};

use limiquantix_storage::xml::disk_with_serial;
use limiquantix_storage::{LiveSnapshot, LiveSnapshotOutcome, Name, Result, StorageError};

use crate::guest_agent::FreezeError;
use crate::libvirt::Libvirt;

/// What the caller asked of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuiesceMode {
    None,
    Required,
    BestEffort,
}

pub struct DomainSnapshot {
    pub libvirt: Libvirt,
    pub domain: String,
    pub quiesce: QuiesceMode,
    /// The longest the guest agent may take to answer a freeze or a thaw.
    pub agent_timeout: Duration,
}

#[tonic::async_trait]
impl LiveSnapshot for DomainSnapshot {
    async fn snapshot(&self, serials: &[String], name: &Name) -> Result<LiveSnapshotOutcome> {
        let (libvirt, domain) = (&self.libvirt, self.domain.as_str());
        // Everything that can be looked up is, before the guest is frozen.
        let nodes = self.block_nodes(serials).await?;
        if self.quiesce == QuiesceMode::None {
            // One instant for every disk, as for a quiesced snapshot.
            libvirt.snapshot_block_nodes(domain, &nodes, name.as_str()).await?;
            return Ok(LiveSnapshotOutcome::default());
        }

        let started = Instant::now();
        let frozen = libvirt.freeze_filesystems(domain, self.agent_timeout).await;
        let go_on = matches!(frozen, Ok(n) if n > 0) || self.quiesce == QuiesceMode::BestEffort;
        let snapshot = if go_on { libvirt.snapshot_block_nodes(domain, &nodes, name.as_str()).await } else { Ok(()) };
        // A VM without an agent channel cannot have frozen; a failed freeze
        // may still happen late, so it gets one thaw; a freeze two tries.
        let thawed = match &frozen {
            Err(FreezeError::NoAgent(_)) => Ok(0),
            Err(FreezeError::Failed(_)) => libvirt.thaw_filesystems(domain, self.agent_timeout).await,
            Ok(_) => self.thaw().await,
        };
        let frozen_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let not_frozen = match &frozen {
            Ok(0) => Some(format!("the guest agent of VM {domain} found no filesystem to freeze")),
            Ok(_) => None,
            Err(e) => Some(e.error().to_string()),
        };
        if let Err(e) = &thawed {
            let what = if frozen.is_ok() { "the guest may still be frozen: thaw it (virsh domfsthaw)" } else { "thaw after a failed freeze failed too" };
            tracing::error!(%domain, error = %e, "{what}");
        }
        match (not_frozen, snapshot, thawed) {
            (None, Ok(()), Ok(_)) => Ok(LiveSnapshotOutcome { quiesced: true, frozen_ms, not_quiesced_reason: String::new() }),
            (None, Ok(()), Err(e)) => Err(StorageError::Internal(format!(
                "snapshot {name} was taken but the guest could not be thawed ({e}); its filesystems may still be frozen"
            ))),
            (None, Err(e), thawed) => Err(with_thaw(e, thawed)),
            (Some(_), Err(e), _) => Err(e),
            (Some(why), Ok(()), _) if self.quiesce == QuiesceMode::Required => Err(StorageError::precondition(format!(
                "{why}; no snapshot was taken (a crash-consistent one is taken with quiesce best-effort, lqctl --quiesce=best-effort)"
            ))),
            (Some(why), Ok(()), _) => Ok(LiveSnapshotOutcome { quiesced: false, frozen_ms: 0, not_quiesced_reason: why }),
        }
    }

    async fn delete(&self, serial: &str, name: &Name) -> Result<()> {
        let nodes = self.block_nodes(&[serial.to_owned()]).await?;
        self.libvirt.delete_block_node_snapshot(&self.domain, &nodes[0], name.as_str()).await
    }
}

impl DomainSnapshot {
    /// QEMU's block node for each disk (serial = volume id) of the VM.
    async fn block_nodes(&self, serials: &[String]) -> Result<Vec<String>> {
        let domain = self.domain.as_str();
        let live = self.libvirt.domain_xml(domain).await?;
        let mut aliases = Vec::with_capacity(serials.len());
        for serial in serials {
            let disk = disk_with_serial(&live, serial)?
                .ok_or_else(|| StorageError::precondition(format!("volume {serial} is not attached to VM {domain}")))?;
            let alias = disk
                .alias
                .ok_or_else(|| StorageError::Internal(format!("VM {domain} shows no device alias for volume {serial}")))?;
            aliases.push(alias);
        }
        self.libvirt.block_nodes(domain, &aliases).await
    }

    /// Thaws, trying once more if the first answer was an error.
    async fn thaw(&self) -> Result<u32> {
        match self.libvirt.thaw_filesystems(&self.domain, self.agent_timeout).await {
            Ok(n) => Ok(n),
            Err(first) => {
                tracing::warn!(domain = %self.domain, error = %first, "thaw failed; trying again");
                self.libvirt.thaw_filesystems(&self.domain, self.agent_timeout).await
            }
        }
    }
}

/// An error, saying too when the guest could not be thawed after it.
fn with_thaw(e: StorageError, thawed: Result<u32>) -> StorageError {
    match thawed {
        Ok(_) => e,
        Err(t) => StorageError::Internal(format!("{e}; and the guest could not be thawed ({t}): its filesystems may still be frozen")),
    }
}
