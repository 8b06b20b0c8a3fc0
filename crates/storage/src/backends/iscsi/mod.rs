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
    let portals = config::parse_portals(&config.portals)?;
    let target = config::IscsiName::parse(&config.target_iqn)?;
    let initiator = if config.initiator_iqn.is_empty() { node_initiator()? } else { config::IscsiName::parse(&config.initiator_iqn)? };
    let chap = chap_of(config)?;
    match config.mode {
        IscsiMode::Direct => {
            if chap.as_ref().is_some_and(|c| c.mutual.is_some()) {
                return Err(StorageError::invalid(
                    "mutual CHAP is offered in LVM mode only: in direct mode VMs reach the LUNs through QEMU's iSCSI driver, which cannot check the target's secret",
                ));
            }
            Ok(Arc::new(direct::DirectBackend::new(pool, portals, target, initiator, chap, ctx)))
        }
        IscsiMode::Lvm => {
            let p = lvm::LvmPool {
                pool,
                portals,
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

/// CHAP from the config: user and secret both or neither; mutual CHAP only
/// on top of CHAP.
fn chap_of(config: &IscsiPoolConfig) -> Result<Option<config::Chap>> {
    let pair = |user: &str, secret: &str, what: &str| match (user.is_empty(), secret.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => config::Chap::new(user, secret).map(Some),
        _ => Err(StorageError::invalid(format!("give both the {what} user and its secret, or neither"))),
    };
    let chap = pair(&config.chap_username, config.chap_password.expose(), "CHAP")?;
    let mutual = pair(&config.mutual_chap_username, config.mutual_chap_password.expose(), "mutual CHAP")?;
    match (chap, mutual) {
        (chap, None) => Ok(chap),
        (Some(chap), Some(mutual)) => chap.with_mutual(mutual).map(Some),
        (None, Some(_)) => Err(StorageError::invalid("mutual CHAP needs CHAP: give the CHAP user and secret too")),
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
