//! Domain types of the storage engine: pool configs, volume specs and what the
//! engine reports back. The node daemon converts its wire types to and from these.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::ids::{Name, VolumeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Local,
    Nfs,
    Ceph,
    Iscsi,
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Nfs => "nfs",
            Self::Ceph => "ceph",
            Self::Iscsi => "iscsi",
        })
    }
}

/// A pool's configuration as the node persists it. Secrets are held apart
/// (see [`Secret`]) and are never serialized with the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PoolConfig {
    Local(LocalPoolConfig),
    Nfs(NfsPoolConfig),
    Ceph(CephPoolConfig),
    Iscsi(IscsiPoolConfig),
}

impl PoolConfig {
    pub fn kind(&self) -> PoolKind {
        match self {
            Self::Local(_) => PoolKind::Local,
            Self::Nfs(_) => PoolKind::Nfs,
            Self::Ceph(_) => PoolKind::Ceph,
            Self::Iscsi(_) => PoolKind::Iscsi,
        }
    }

    /// The kind's secret fields (Ceph key; CHAP and mutual CHAP secrets),
    /// each by a name stable in the node's store.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        match self {
            Self::Ceph(c) => vec![(MAIN_SECRET, &c.key)],
            Self::Iscsi(i) => vec![(MAIN_SECRET, &i.chap_password), (MUTUAL_CHAP_SECRET, &i.mutual_chap_password)],
            Self::Local(_) | Self::Nfs(_) => Vec::new(),
        }
    }

    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut Secret)> {
        match self {
            Self::Ceph(c) => vec![(MAIN_SECRET, &mut c.key)],
            Self::Iscsi(i) => vec![(MAIN_SECRET, &mut i.chap_password), (MUTUAL_CHAP_SECRET, &mut i.mutual_chap_password)],
            Self::Local(_) | Self::Nfs(_) => Vec::new(),
        }
    }
}

/// The names of secret fields (see [`PoolConfig::secrets`]).
pub const MAIN_SECRET: &str = "secret";
pub const MUTUAL_CHAP_SECRET: &str = "mutual-chap";
pub const SECRET_NAMES: [&str; 2] = [MAIN_SECRET, MUTUAL_CHAP_SECRET];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPoolConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsPoolConfig {
    pub server: String,
    pub export_path: String,
    pub version: NfsVersion,
    pub mode: NfsMode,
    pub options: NfsMountOptions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NfsVersion {
    /// Negotiated (the kernel's choice; userspace speaks 3).
    #[default]
    Auto,
    V3,
    V4_0,
    V4_1,
    V4_2,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NfsMode {
    /// libnfs in the node and QEMU: no kernel mount.
    #[default]
    Userspace,
    Kernel,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NfsTransport {
    #[default]
    Tcp,
    Rdma,
}

/// Kernel mount behaviour; 0 = the kernel's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsMountOptions {
    pub soft: bool,
    pub timeo_deciseconds: u32,
    pub retrans: u32,
    pub nconnect: u32,
    pub transport: NfsTransport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CephPoolConfig {
    pub monitors: Vec<String>,
    pub ceph_pool: String,
    pub client_id: String,
    pub rados_namespace: String,
    pub create_if_missing: bool,
    #[serde(skip)]
    pub key: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IscsiPoolConfig {
    /// Tried in order. Records written before lists were offered hold one
    /// `portal` string: they read as a list of one.
    #[serde(alias = "portal", deserialize_with = "one_or_many")]
    pub portals: Vec<String>,
    pub target_iqn: String,
    pub lun: u32,
    pub initiator_iqn: String,
    pub chap_username: String,
    #[serde(skip)]
    pub chap_password: Secret,
    #[serde(default)]
    pub mode: IscsiMode,
    /// LVM mode: the volume group on the LUN.
    #[serde(default)]
    pub volume_group: String,
    /// LVM mode: make the group if the LUN holds none (never over other data).
    #[serde(default)]
    pub create_volume_group: bool,
    /// Mutual CHAP: the target's own user and secret.
    #[serde(default)]
    pub mutual_chap_username: String,
    #[serde(skip)]
    pub mutual_chap_password: Secret,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IscsiMode {
    /// Each disk LUN of the target is a volume (QEMU's libiscsi).
    #[default]
    Direct,
    /// An LVM volume group on one LUN.
    Lvm,
}

/// A secret value (Ceph key, CHAP password): its Debug output is redacted so it
/// cannot reach a log by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "<none>" } else { "<redacted>" })
    }
}

/// What a backend can do; callers ask this instead of switching on the kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub thin_provisioning: bool,
    pub linked_clone: bool,
    pub snapshots: bool,
    pub shared: bool,
    pub live_resize: bool,
    pub formats: Vec<VolumeFormat>,
    /// The volumes are a storage array's own (an iSCSI target's LUNs).
    pub array_managed: bool,
    /// One node at a time may change the pool's metadata (shared LVM).
    pub one_metadata_writer: bool,
}

/// Something done to one volume that not every volume of a kind allows
/// (Proxmox's `volume_has_feature`): asked per volume, not per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeFeature {
    Snapshot,
}

impl VolumeFeature {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshots",
        }
    }
}

/// What a pool's storage reports about itself, O(1) in its number of
/// volumes. Counting the volumes (provisioned bytes, count) reads every one
/// and is done only on request ([`crate::StorageManager::count_volumes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCapacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Bytes in use on the pool's storage (file system or Ceph pool).
    pub allocated_bytes: u64,
    pub counted: Option<VolumeCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VolumeCount {
    pub provisioned_bytes: u64,
    pub volumes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Qcow2,
    Raw,
}

impl VolumeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for VolumeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Disk image formats the engine reads (imports) or writes (volumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhdx,
    Vdi,
}

impl ImageFormat {
    /// The QEMU block driver name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
            Self::Vmdk => "vmdk",
            Self::Vhdx => "vhdx",
            Self::Vdi => "vdi",
        }
    }

    pub fn from_driver_name(name: &str) -> Option<Self> {
        Some(match name {
            "qcow2" => Self::Qcow2,
            "raw" => Self::Raw,
            "vmdk" => Self::Vmdk,
            "vhdx" => Self::Vhdx,
            "vdi" => Self::Vdi,
            _ => return None,
        })
    }
}

impl From<VolumeFormat> for ImageFormat {
    fn from(f: VolumeFormat) -> Self {
        match f {
            VolumeFormat::Qcow2 => Self::Qcow2,
            VolumeFormat::Raw => Self::Raw,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provisioning {
    #[default]
    Thin,
    Thick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    Linked,
    Full,
}

/// The largest volume any pool accepts (1 PiB); backends may refuse less.
pub const MAX_VOLUME_BYTES: u64 = 1 << 50;
pub const SECTOR_BYTES: u64 = 512;

/// A validated volume size in bytes: > 0, a multiple of 512, at most 1 PiB.
pub fn validate_size(what: &str, bytes: u64) -> Result<u64> {
    if bytes == 0 {
        return Err(StorageError::invalid(format!("{what} must be greater than 0 bytes")));
    }
    if bytes > MAX_VOLUME_BYTES {
        return Err(StorageError::invalid(format!(
            "{what} {bytes} bytes is larger than the maximum volume size of {MAX_VOLUME_BYTES} bytes (1 PiB)"
        )));
    }
    if !bytes.is_multiple_of(SECTOR_BYTES) {
        return Err(StorageError::invalid(format!(
            "{what} {bytes} bytes is not a multiple of {SECTOR_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// What a new volume should look like. `size_bytes` None means "the size of
/// the source" (required for empty volumes), `format` None the pool's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    pub size_bytes: Option<u64>,
    pub format: Option<VolumeFormat>,
    /// None: the pool's own (thin where it can be, else thick).
    pub provisioning: Option<Provisioning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    Empty,
    Clone { source: VolumeId, mode: Option<CloneMode> },
    Image { path: PathBuf, format: ImageFormat },
    Snapshot { volume: VolumeId, name: Name },
    /// A full copy of a volume of another pool of this node (a move; a
    /// linked clone arrives flattened).
    /// `with_snapshots`: the file copied whole, its internal snapshots with it.
    OtherPool { pool: crate::ids::PoolId, volume: VolumeId, with_snapshots: bool },
    /// A full copy of a volume another node exports (a move between nodes;
    /// see `nbd`), pulled over NBD with the export's one-use key.
    Remote { host: std::net::IpAddr, port: u16, export: VolumeId, psk: crate::nbd::Psk, size_bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: VolumeId,
    pub format: VolumeFormat,
    pub size_bytes: u64,
    pub allocated_bytes: u64,
    pub backing: Option<VolumeId>,
    pub snapshot_count: u32,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub created_unix_seconds: i64,
    pub vm_state_bytes: u64,
}

/// Progress of a long operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub phase: &'static str,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Where progress reports go. Implementations must be cheap: copies call it often.
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskBus {
    #[default]
    Scsi,
    Virtio,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert_eq!(validate_size("size", 512).unwrap(), 512);
        assert_eq!(validate_size("size", 10 << 30).unwrap(), 10 << 30);
        assert_eq!(validate_size("size", MAX_VOLUME_BYTES).unwrap(), MAX_VOLUME_BYTES);
        for bad in [0, 1, 1000, MAX_VOLUME_BYTES + 512, (1 << 63) + 512, u64::MAX] {
            assert!(matches!(validate_size("size", bad), Err(StorageError::InvalidArgument(_))), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = Secret::new("AQBsupersecretkey==".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        let cfg = CephPoolConfig {
            monitors: vec!["127.0.0.1:6789".into()],
            ceph_pool: "rbd".into(),
            client_id: "admin".into(),
            rados_namespace: String::new(),
            create_if_missing: false,
            key: s,
        };
        assert!(!format!("{cfg:?}").contains("supersecret"));
        assert!(!serde_json::to_string(&PoolConfig::Ceph(cfg)).unwrap().contains("supersecret"));
    }
}
