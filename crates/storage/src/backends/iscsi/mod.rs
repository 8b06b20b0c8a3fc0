//! iSCSI pools. Direct mode (direct.rs): each disk LUN of a target is a
//! volume, reached through libiscsi by the node (client.rs) and by QEMU,
//! with CHAP from memory and a libvirt secret, never on a command line.
//! LVM mode (lvm.rs): one LUN, logged in on the host, holds a volume group
//! whose logical volumes are the volumes.

pub mod client;
pub mod config;
pub mod direct;
pub mod lvm;

use std::path::PathBuf;
use std::time::Duration;

use crate::tools::iscsiadm::{self, Iscsiadm};

/// What LVM mode needs of the host: iscsiadm and its node database, where
/// udev puts the stable names of logged-in LUNs, and whether device-mapper
/// exists (logical volumes can be opened).
#[derive(Debug, Clone)]
pub struct IscsiHost {
    pub iscsiadm: Iscsiadm,
    pub by_path_dir: PathBuf,
    pub device_mapper: bool,
    pub lvm_timeout: Duration,
}

impl Default for IscsiHost {
    fn default() -> Self {
        Self {
            iscsiadm: Iscsiadm::default(),
            by_path_dir: PathBuf::from(iscsiadm::BY_PATH_DIR),
            device_mapper: std::path::Path::new("/dev/mapper/control").exists(),
            lvm_timeout: Duration::from_secs(60),
        }
    }
}

use std::sync::Arc;

use crate::backend::Backend;
use crate::backends::EngineContext;
use crate::error::{Result, StorageError};
use crate::ids::PoolId;
use crate::model::{IscsiMode, IscsiPoolConfig};

/// The backend for a pool's config.
pub fn open(pool: PoolId, config: &IscsiPoolConfig, ctx: &EngineContext) -> Result<Arc<dyn Backend>> {
    let portal = config::Portal::parse(&config.portal)?;
    let target = config::IscsiName::parse(&config.target_iqn)?;
    let initiator = if config.initiator_iqn.is_empty() { node_initiator()? } else { config::IscsiName::parse(&config.initiator_iqn)? };
    let chap = match (config.chap_username.is_empty(), config.chap_password.expose().is_empty()) {
        (true, true) => None,
        (false, false) => Some(config::Chap::new(&config.chap_username, config.chap_password.expose())?),
        _ => return Err(StorageError::invalid("give both the CHAP user and its secret, or neither")),
    };
    match config.mode {
        IscsiMode::Direct => Ok(Arc::new(direct::DirectBackend::new(pool, portal, target, initiator, chap, ctx))),
        IscsiMode::Lvm => {
            let p = lvm::LvmPool {
                pool,
                portal,
                target,
                initiator,
                chap,
                lun: config.lun,
                volume_group: &config.volume_group,
                create_volume_group: config.create_volume_group,
            };
            Ok(Arc::new(lvm::LvmBackend::new(p, ctx)?))
        }
    }
}

/// This node's initiator name: open-iscsi's (/etc/iscsi/initiatorname.iscsi),
/// or one made from the host name.
fn node_initiator() -> Result<config::IscsiName> {
    if let Ok(text) = std::fs::read_to_string("/etc/iscsi/initiatorname.iscsi")
        && let Some(name) = text.lines().find_map(|l| l.trim().strip_prefix("InitiatorName="))
    {
        return config::IscsiName::parse(name.trim());
    }
    let host = rustix::system::uname().nodename().to_string_lossy().to_lowercase();
    let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    config::IscsiName::parse(&format!("iqn.2024-01.io.limiquantix:{host}"))
}

/// The kind's capabilities in the mode this node serves by default.
pub fn capabilities_of_kind() -> crate::model::Capabilities {
    direct::DirectBackend::capabilities_of_kind()
}

/// A pool's capabilities, which depend on its mode.
pub fn capabilities(config: &IscsiPoolConfig) -> crate::model::Capabilities {
    match config.mode {
        IscsiMode::Direct => direct::DirectBackend::capabilities_of_kind(),
        IscsiMode::Lvm => lvm::LvmBackend::capabilities_of_kind(),
    }
}
