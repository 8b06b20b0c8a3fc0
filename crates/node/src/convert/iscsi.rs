use limiquantix_api::v1 as pb;
use limiquantix_storage::StorageError;
use limiquantix_storage::model::{IscsiMode, IscsiPoolConfig, Secret};

pub fn config_in(i: pb::IscsiPoolConfig) -> Result<IscsiPoolConfig, StorageError> {
    Ok(IscsiPoolConfig {
        portals: i.portals,
        target_iqn: i.target_iqn,
        lun: i.lun,
        initiator_iqn: i.initiator_iqn,
        chap_username: i.chap_username,
        chap_password: Secret::new(i.chap_password),
        mode: match pb::IscsiMode::try_from(i.mode) {
            Ok(pb::IscsiMode::Unspecified | pb::IscsiMode::Direct) => IscsiMode::Direct,
            Ok(pb::IscsiMode::Lvm) => IscsiMode::Lvm,
            Err(_) => return Err(StorageError::invalid(format!("unknown iSCSI mode {}", i.mode))),
        },
        volume_group: i.volume_group,
        create_volume_group: i.create_volume_group,
        mutual_chap_username: i.mutual_chap_username,
        mutual_chap_password: Secret::new(i.mutual_chap_password),
    })
}

/// Without the CHAP secrets: secrets are never returned.
pub fn config_out(i: &IscsiPoolConfig) -> pb::IscsiPoolConfig {
    pb::IscsiPoolConfig {
        portals: i.portals.clone(),
        target_iqn: i.target_iqn.clone(),
        lun: i.lun,
        initiator_iqn: i.initiator_iqn.clone(),
        chap_username: i.chap_username.clone(),
        chap_password: String::new(),
        mode: match i.mode {
            IscsiMode::Direct => pb::IscsiMode::Direct,
            IscsiMode::Lvm => pb::IscsiMode::Lvm,
        } as i32,
        volume_group: i.volume_group.clone(),
        create_volume_group: i.create_volume_group,
        mutual_chap_username: i.mutual_chap_username.clone(),
        mutual_chap_password: String::new(),
    }
}
