//! The node's memory of its pools: one JSON file per pool in the state dir,
//! written atomically, read back when the daemon starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::fsutil::{atomic_write, fsync_dir};
use crate::ids::PoolId;
use crate::model::PoolConfig;

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
        use std::os::unix::fs::DirBuilderExt;
        let dir = state_dir.join("pools");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StorageError::io(format!("cannot create state directory {}", dir.display()), e))?;
        Ok(Self { dir })
    }

    fn path(&self, id: PoolId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save(&self, pool: &StoredPool) -> Result<()> {
        let json = serde_json::to_vec_pretty(pool).map_err(|e| StorageError::Internal(e.to_string()))?;
        atomic_write(&self.path(pool.pool_id), &json, 0o600)
    }

    pub fn remove(&self, id: PoolId) -> Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("cannot remove the record of pool {id}"), e)),
        }
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
            let pool: StoredPool = serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::Internal(format!("pool record {} is damaged: {e}; fix or remove it", path.display()))
            })?;
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
    fn a_damaged_record_is_an_error_not_a_lost_pool() {
        let state = tempfile::tempdir().unwrap();
        let store = PoolStore::open(state.path()).unwrap();
        std::fs::write(state.path().join("pools").join(format!("{}.json", PoolId::new_random())), b"{").unwrap();
        assert!(store.load_all().unwrap_err().to_string().contains("damaged"));
    }
}
