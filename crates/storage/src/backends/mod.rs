//! One folder per pool kind. [`open`] builds the backend for a pool config.

pub mod ceph;
pub mod image_files;
pub mod iscsi;
pub mod local;
pub mod nfs;

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::Result;
use crate::ids::PoolId;
use crate::model::{Capabilities, PoolConfig, PoolKind, VolumeFeature, VolumeFormat};
use crate::tools::QemuImg;

/// What backends get from the node: tools and the node's path policy.
#[derive(Debug, Clone)]
pub struct EngineContext {
    pub qemu_img: QemuImg,
    /// Local pools must lie inside one of these (after resolving symlinks).
    pub local_pool_roots: Vec<PathBuf>,
    /// Images may only be imported from inside these.
    pub import_dirs: Vec<PathBuf>,
    /// The node's state dir (backends keep client files under it).
    pub state_dir: PathBuf,
    pub ceph_timeouts: ceph::CephTimeouts,
    pub iscsi: iscsi::IscsiHost,
}

/// Whether a pool is opened for the first time (its directory may be created)
/// or re-opened after a restart (a missing directory is an error: its disk may
/// not be mounted, and creating it would put VMs on the wrong disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Reopen,
}

pub async fn open(id: PoolId, config: &PoolConfig, ctx: &EngineContext, mode: OpenMode) -> Result<Arc<dyn Backend>> {
    match config {
        PoolConfig::Local(c) => Ok(Arc::new(local::LocalBackend::open(c, ctx, mode)?)),
        PoolConfig::Ceph(c) => Ok(Arc::new(ceph::CephBackend::open(id, c, ctx, mode).await?)),
        PoolConfig::Nfs(c) => nfs::NfsBackend::open(id, c, ctx),
        PoolConfig::Iscsi(c) => iscsi::open(id, c, ctx),
    }
}

/// Removes what the node keeps for a pool it forgets (client files, keys),
/// without reaching its storage: also for a pool that is in error.
pub fn forget(id: PoolId, config: &PoolConfig, ctx: &EngineContext) {
    if let PoolConfig::Ceph(_) = config {
        ceph::forget(id, ctx);
    }
}

/// The libvirt secret a pool's VMs use, known from the config alone.
pub fn libvirt_secret_uuid(id: PoolId, config: &PoolConfig) -> Option<String> {
    match config {
        PoolConfig::Ceph(_) => Some(ceph::libvirt_secret_uuid(id)),
        PoolConfig::Iscsi(c) if !c.chap_username.is_empty() => Some(iscsi::direct::libvirt_secret_uuid(id)),
        _ => None,
    }
}

/// The kinds this node can serve, with what each can do.
pub fn supported_kinds() -> Vec<(PoolKind, Capabilities)> {
    vec![
        (PoolKind::Local, local::LocalBackend::capabilities_of_kind()),
        (PoolKind::Ceph, ceph::CephBackend::capabilities_of_kind()),
        (PoolKind::Nfs, nfs::NfsBackend::capabilities_of_kind()),
        (PoolKind::Iscsi, iscsi::capabilities_of_kind()),
    ]
}

/// A pool's capabilities: its kind's, or for kinds with modes, its mode's.
pub fn capabilities_of(config: &PoolConfig) -> Capabilities {
    match config {
        PoolConfig::Iscsi(c) => iscsi::capabilities(c),
        other => supported_kinds().into_iter().find(|(k, _)| *k == other.kind()).map(|(_, c)| c).unwrap_or_default(),
    }
}

/// Whether a volume of `format` in a `kind` pool can have `feature`; the
/// error says why not and what to do instead. The control plane asks the
/// same before it starts a task.
pub fn volume_has_feature(kind: PoolKind, format: VolumeFormat, feature: VolumeFeature) -> std::result::Result<(), String> {
    match kind {
        PoolKind::Local => local::LocalBackend::volume_has_feature(format, feature),
        PoolKind::Ceph => Ok(()),
        PoolKind::Nfs => nfs::NfsBackend::volume_has_feature(format, feature),
        PoolKind::Iscsi => Err(format!(
            "iscsi volumes (LUNs in direct mode, plain LVM volumes in LVM mode) have no {}: use the storage array's",
            feature.as_str()
        )),
    }
}
