//! The contract every pool kind implements. What a backend can do is declared
//! in [`Capabilities`]; the [`crate::StorageManager`] does everything that is
//! the same for all kinds (validation, locking, idempotency, dependency and
//! space checks) and calls a backend only for the mechanics.

use async_trait::async_trait;

use crate::error::{Result, StorageError};
use crate::ids::{Name, VolumeId};
use crate::image::InspectedImage;
use crate::model::{
    Capabilities, PoolCapacity, PoolKind, ProgressSink, Provisioning, SnapshotInfo, VolumeFormat, VolumeInfo,
};
use crate::xml::{DiskDriver, DiskSource};

/// Where the data of a new volume comes from, resolved and checked by the manager.
#[derive(Debug, Clone, Copy)]
pub enum NewVolumeContent<'a> {
    Empty,
    /// A copy-on-write child of `base` (requires `linked_clone`).
    LinkedClone { base: &'a VolumeInfo },
    /// An independent copy of `source`, or of one of its snapshots.
    Copy { source: &'a VolumeInfo, snapshot: Option<&'a Name> },
    Image(&'a InspectedImage),
    /// A self-contained qcow2 file of another pool of this node, copied as
    /// it is (its internal snapshots with it): a move that keeps them.
    WholeFile { path: &'a std::path::Path, source: &'a VolumeInfo },
}

#[derive(Debug, Clone, Copy)]
pub struct NewVolume<'a> {
    pub id: VolumeId,
    pub format: VolumeFormat,
    /// Final virtual size, at least the size of the content.
    pub size_bytes: u64,
    pub provisioning: Provisioning,
    pub content: NewVolumeContent<'a>,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> PoolKind;
    fn capabilities(&self) -> Capabilities;
    /// The storage this pool is on (canonical directory, server:export, ...):
    /// two pools on one node may not share it.
    fn location(&self) -> String;

    /// Makes the pool usable on this node (mount, connect, check). Idempotent.
    async fn activate(&self) -> Result<()>;
    /// Undoes activate; never deletes volumes.
    async fn deactivate(&self) -> Result<()>;

    async fn capacity(&self) -> Result<PoolCapacity>;
    /// Space available for new data, cheaper than a full [`Backend::capacity`].
    async fn free_bytes(&self) -> Result<u64>;

    /// O(1): the volume's backend object is named from its id.
    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>>;
    /// Volumes ordered by id, starting after `after`.
    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>>;
    /// Volumes that depend on this one (linked clones).
    async fn dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>>;

    /// Creates the volume completely or not at all: a failure or a cancelled
    /// future leaves nothing behind.
    async fn create_volume(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo>;
    /// Deletes the volume; a missing one is fine. Refused, naming them, while
    /// linked clones depend on it (see [`dependents_error`]).
    async fn delete_volume(&self, id: VolumeId) -> Result<()>;
    /// Grows the volume (the manager has checked new_size > current size).
    async fn resize_volume(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<VolumeInfo>;

    async fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>>;
    async fn create_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<SnapshotInfo>;
    async fn revert_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()>;
    /// Deleting a snapshot that does not exist succeeds.
    async fn delete_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()>;

    /// How a VM reaches the volume: the `<source>` and the `<driver>` options.
    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)>;

    /// Makes the volume's [`Backend::disk`] source usable on this node before
    /// a VM is given it (LVM: activate the logical volume).
    async fn prepare_disk(&self, _volume: &VolumeInfo) -> Result<()> {
        Ok(())
    }

    /// Whether creating an empty volume itself refuses a taken id
    /// (AlreadyExists) and a volume that does not fit (ResourceExhausted), so
    /// the manager need not ask first: for kinds where asking costs as much
    /// as creating (LVM runs a command each time).
    fn create_checks_itself(&self) -> bool {
        false
    }

    /// The size the storage makes for `size_bytes` (LVM rounds up to whole
    /// extents); what a create is asked for is rounded the same way.
    fn round_size(&self, size_bytes: u64) -> u64 {
        size_bytes
    }

    /// Why this pool makes no volumes at all, if it makes none (volumes that
    /// are a storage array's LUNs): asked before anything else of a create.
    fn refuses_creates(&self) -> Option<crate::error::StorageError> {
        None
    }

    /// Whether a linked clone's disk XML spells out its backing chain (each
    /// base's [`Backend::disk`] source): for kinds whose images libvirt
    /// cannot open to find the chain itself, whose bases QEMU would
    /// otherwise open without the source's options (an NFS identity).
    fn backing_chain_in_disk_xml(&self) -> bool {
        false
    }

    /// Writes an image over an existing volume's content (a storage array's
    /// LUN, which this node cannot make): the manager has checked the image
    /// and that it fits. Kinds that make their volumes refuse: an import
    /// makes a new volume there.
    async fn write_image(&self, _volume: &VolumeInfo, _image: &InspectedImage, _progress: ProgressSink<'_>) -> Result<()> {
        Err(crate::error::StorageError::precondition(format!(
            "{} pools import an image as a new volume; only a storage array's LUNs are written over",
            self.kind()
        )))
    }

    /// Where qemu-img reads the volume, for a copy into another pool of this
    /// node (a move). Kinds whose volumes are not read this way refuse.
    fn read_location(&self, _volume: &VolumeInfo) -> Result<crate::tools::qemu_img::VolumeLocation> {
        Err(crate::error::StorageError::precondition(format!("volumes of {} pools cannot be copied into another pool yet", self.kind())))
    }

    /// Makes a linked clone independent of its base (copies the base's data
    /// in). The manager calls it only for a volume that has a base.
    async fn flatten_volume(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo>;

    /// The libvirt secret VMs need to reach this pool's volumes (Ceph key,
    /// CHAP password), which the node defines; None when no secret is needed.
    fn libvirt_secret(&self) -> Option<LibvirtSecret> {
        None
    }
}

/// The refusal of an operation on a volume that linked clones depend on.
pub fn dependents_error(id: VolumeId, dependents: &[VolumeId], action: &str) -> crate::error::StorageError {
    let list: Vec<String> = dependents.iter().map(|d| d.to_string()).collect();
    crate::error::StorageError::precondition(format!(
        "volume {id} cannot be {action}: linked clones depend on it ({}); delete them first",
        list.join(", ")
    ))
}

/// A secret the node keeps in libvirt for a pool.
#[derive(Debug, Clone)]
pub struct LibvirtSecret {
    pub uuid: String,
    pub usage: SecretUsage,
    pub value: crate::model::Secret,
}

impl LibvirtSecret {
    /// The bytes libvirt keeps: a Ceph key raw (libvirt base64-encodes it for
    /// QEMU), a CHAP password as it is.
    pub fn libvirt_value(&self) -> crate::error::Result<Vec<u8>> {
        match self.usage {
            SecretUsage::Ceph(_) => crate::backends::ceph::decode_base64(self.value.expose())
                .ok_or_else(|| crate::error::StorageError::invalid("the Ceph key is not base64")),
            SecretUsage::Iscsi(_) => Ok(self.value.expose().as_bytes().to_vec()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUsage {
    /// `<usage type='ceph'><name>…</name></usage>`
    Ceph(String),
    /// `<usage type='iscsi'><target>…</target></usage>`
    Iscsi(String),
}

/// A pool of `kind` cannot take a volume with its snapshots (only local
/// pools copy a qcow2 file whole).
pub fn no_whole_file_copy(kind: &str) -> StorageError {
    StorageError::precondition(format!("{kind} pools cannot take a volume with its snapshots; move it without them (drop_snapshots)"))
}
