//! The node's memory of its pools: one JSON file per pool in the state dir,
//! written atomically, read back when the daemon starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::fsutil::{atomic_write, create_private_dir, fsync_dir};
use crate::ids::PoolId;
use crate::model::{PoolConfig, Secret};

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

    /// The config's secret (Ceph key, CHAP password), in its own 0600 file:
    /// the JSON record never holds it.
    fn secret_path(&self, id: PoolId) -> PathBuf {
        self.dir.join(format!("{id}.secret"))
    }

    pub fn save(&self, pool: &StoredPool) -> Result<()> {
        if let Some(secret) = pool.config.secret().filter(|s| !s.is_empty()) {
            atomic_write(&self.secret_path(pool.pool_id), secret.expose().as_bytes(), 0o600)?;
        }
        let json = serde_json::to_vec_pretty(pool).map_err(|e| StorageError::Internal(e.to_string()))?;
        atomic_write(&self.path(pool.pool_id), &json, 0o600)
    }

    pub fn remove(&self, id: PoolId) -> Result<()> {
        for path in [self.path(id), self.secret_path(id)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("cannot remove the record of pool {id}"), e)),
            }
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
            let secret_path = self.secret_path(pool.pool_id);
            let secret = match std::fs::read_to_string(&secret_path) {
                Ok(s) => Some(Secret::new(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StorageError::io(format!("cannot read {}", secret_path.display()), e)),
            };
            if let (Some(field), Some(secret)) = (pool.config.secret_mut(), secret) {
                *field = secret;
            }
            pools.push(pool);
        }
        pools.sort_by_key(|p| p.pool_id);
        Ok(pools)
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
    fn a_damaged_record_is_an_error_not_a_lost_pool() {
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        std::fs::write(state.path().join("pools").join(format!("{}.json", PoolId::new_random())), b"{").unwrap();
        assert!(store.load_all().unwrap_err().to_string().contains("damaged"));
    }
}
