//! The node's memory of its pools: one JSON file per pool in the state dir,
//! written atomically, read back when the daemon starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::fsutil::{atomic_write, create_private_dir, fsync_dir};
use crate::ids::PoolId;
use crate::model::{MAIN_SECRET, PoolConfig, SECRET_NAMES, Secret};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPool {
    pub pool_id: PoolId,
    pub config: PoolConfig,
}

#[derive(Debug, Clone)]
pub struct PoolStore {
    dir: PathBuf,
}

impl PoolStore {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("pools");
        create_private_dir(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, id: PoolId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Each of the config's secrets (Ceph key, CHAP secrets) in its own 0600
    /// file: the JSON record never holds them. The main one keeps the name
    /// it always had.
    fn secret_path(&self, id: PoolId, name: &str) -> PathBuf {
        match name {
            MAIN_SECRET => self.dir.join(format!("{id}.secret")),
            other => self.dir.join(format!("{id}.{other}.secret")),
        }
    }

    pub fn save(&self, pool: &StoredPool) -> Result<()> {
        for (name, secret) in pool.config.secrets() {
            let path = self.secret_path(pool.pool_id, name);
            if secret.is_empty() {
                remove_if_present(&path, pool.pool_id)?;
            } else {
                atomic_write(&path, secret.expose().as_bytes(), 0o600)?;
            }
        }
        let json = serde_json::to_vec_pretty(pool).map_err(|e| StorageError::Internal(e.to_string()))?;
        atomic_write(&self.path(pool.pool_id), &json, 0o600)
    }

    pub fn remove(&self, id: PoolId) -> Result<()> {
        remove_if_present(&self.path(id), id)?;
        for name in SECRET_NAMES {
            remove_if_present(&self.secret_path(id, name), id)?;
        }
        fsync_dir(&self.dir)
    }

    /// Every stored pool. A record that cannot be read is reported, not skipped
    /// silently: forgetting a pool would hide its volumes.
    pub fn load_all(&self) -> Result<Vec<StoredPool>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| StorageError::io(format!("cannot read {}", self.dir.display()), e))?;
        let mut pools = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(format!("cannot read {}", self.dir.display()), e))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| StorageError::io(format!("cannot read {}", path.display()), e))?;
            let mut pool: StoredPool = serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::Internal(format!("pool record {} is damaged: {e}; fix or remove it", path.display()))
            })?;
            let id = pool.pool_id;
            for (name, field) in pool.config.secrets_mut() {
                let secret_path = self.secret_path(id, name);
                match std::fs::read_to_string(&secret_path) {
                    Ok(s) => *field = Secret::new(s),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(format!("cannot read {}", secret_path.display()), e)),
                }
            }
            pools.push(pool);
        }
        pools.sort_by_key(|p| p.pool_id);
        Ok(pools)
    }
}

fn remove_if_present(path: &Path, id: PoolId) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("cannot remove the record of pool {id}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LocalPoolConfig;

    #[test]
    fn pools_survive_a_reopen_and_can_be_forgotten() {
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        let pool = StoredPool {
            pool_id: PoolId::new_random(),
            config: PoolConfig::Local(LocalPoolConfig { path: "/srv/pool".into() }),
        };
        store.save(&pool).unwrap();
        let again = PoolStore::open(state.path()).unwrap().load_all().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].pool_id, pool.pool_id);
        assert_eq!(again[0].config, pool.config);
        store.remove(pool.pool_id).unwrap();
        store.remove(pool.pool_id).unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn secrets_are_kept_apart_in_a_private_file_and_come_back() {
        use crate::model::CephPoolConfig;
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        let id = PoolId::new_random();
        let config = PoolConfig::Ceph(CephPoolConfig {
            monitors: vec!["127.0.0.1:6789".into()],
            ceph_pool: "vms".into(),
            client_id: "admin".into(),
            rados_namespace: String::new(),
            create_if_missing: false,
            key: Secret::new("AQBsecretkey==".into()),
        });
        store.save(&StoredPool { pool_id: id, config: config.clone() }).unwrap();
        let json = std::fs::read_to_string(state.path().join(format!("pools/{id}.json"))).unwrap();
        assert!(!json.contains("AQBsecret"), "{json}");
        let secret = state.path().join(format!("pools/{id}.secret"));
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(store.load_all().unwrap()[0].config, config);
        store.remove(id).unwrap();
        assert!(!secret.exists());
    }

    #[test]
    fn both_chap_secrets_come_back_and_an_old_single_portal_record_still_reads() {
        use crate::model::{IscsiMode, IscsiPoolConfig};
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        let id = PoolId::new_random();
        let config = PoolConfig::Iscsi(IscsiPoolConfig {
            portals: vec!["10.0.0.5:3260".into(), "10.0.1.5:3260".into()],
            target_iqn: "iqn.2024-01.io.example:array".into(),
            lun: 1,
            initiator_iqn: String::new(),
            chap_username: "node".into(),
            chap_password: Secret::new("initiator-secret-1".into()),
            mode: IscsiMode::Lvm,
            volume_group: "vg0".into(),
            create_volume_group: false,
            mutual_chap_username: "array".into(),
            mutual_chap_password: Secret::new("target-secret-22".into()),
        });
        store.save(&StoredPool { pool_id: id, config: config.clone() }).unwrap();
        let json = std::fs::read_to_string(state.path().join(format!("pools/{id}.json"))).unwrap();
        assert!(!json.contains("secret-1") && !json.contains("secret-22"), "{json}");
        assert_eq!(std::fs::read_to_string(state.path().join(format!("pools/{id}.mutual-chap.secret"))).unwrap(), "target-secret-22");
        assert_eq!(store.load_all().unwrap()[0].config, config);

        // A record from before portal lists: one "portal" string.
        let old = json.replace("\"portals\": [\n      \"10.0.0.5:3260\",\n      \"10.0.1.5:3260\"\n    ]", "\"portal\": \"10.0.0.5:3260\"");
        assert_ne!(old, json, "the test rewrote the record");
        std::fs::write(state.path().join(format!("pools/{id}.json")), old).unwrap();
        let PoolConfig::Iscsi(read) = &store.load_all().unwrap()[0].config else { panic!("not iscsi") };
        assert_eq!(read.portals, vec!["10.0.0.5:3260".to_owned()]);
        store.remove(id).unwrap();
        assert_eq!(std::fs::read_dir(state.path().join("pools")).unwrap().count(), 0, "every file of the pool is gone");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_lost_pool() {
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        std::fs::write(state.path().join("pools").join(format!("{}.json", PoolId::new_random())), b"{").unwrap();
        assert!(store.load_all().unwrap_err().to_string().contains("damaged"));
    }
}
