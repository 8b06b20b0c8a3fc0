//! One operation per volume at a time (DESIGN.md rule 8). A volume is held
//! exclusively while it changes, or shared while it is read as a clone source
//! (many clones of one template may run at once, but not a delete of it). A
//! conflicting call is refused as [`StorageError::Busy`], naming the running one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Result, StorageError};
use crate::ids::{PoolId, VolumeId};

type Key = (PoolId, VolumeId);

#[derive(Debug)]
enum Hold {
    Exclusive(&'static str),
    Shared { operation: &'static str, count: usize },
}

#[derive(Debug, Default, Clone)]
pub struct VolumeLocks {
    held: Arc<Mutex<HashMap<Key, Hold>>>,
}

/// Released on drop.
#[derive(Debug)]
pub struct VolumeGuard {
    locks: VolumeLocks,
    key: Key,
}

impl VolumeLocks {
    fn busy(volume: VolumeId, running: &str) -> StorageError {
        StorageError::Busy(format!(
            "volume {volume} is busy: {running} is running on it; retry when it has finished"
        ))
    }

    pub fn exclusive(&self, pool: PoolId, volume: VolumeId, operation: &'static str) -> Result<VolumeGuard> {
        let mut held = self.held.lock().expect("lock table poisoned");
        match held.get(&(pool, volume)) {
            Some(Hold::Exclusive(running)) | Some(Hold::Shared { operation: running, .. }) => {
                Err(Self::busy(volume, running))
            }
            None => {
                held.insert((pool, volume), Hold::Exclusive(operation));
                Ok(VolumeGuard { locks: self.clone(), key: (pool, volume) })
            }
        }
    }

    pub fn shared(&self, pool: PoolId, volume: VolumeId, operation: &'static str) -> Result<VolumeGuard> {
        let mut held = self.held.lock().expect("lock table poisoned");
        match held.get_mut(&(pool, volume)) {
            Some(Hold::Exclusive(running)) => Err(Self::busy(volume, running)),
            Some(Hold::Shared { count, .. }) => {
                *count += 1;
                Ok(VolumeGuard { locks: self.clone(), key: (pool, volume) })
            }
            None => {
                held.insert((pool, volume), Hold::Shared { operation, count: 1 });
                Ok(VolumeGuard { locks: self.clone(), key: (pool, volume) })
            }
        }
    }

    /// Operations running on volumes of `pool`.
    pub fn running_in_pool(&self, pool: PoolId) -> usize {
        self.held.lock().expect("lock table poisoned").keys().filter(|(p, _)| *p == pool).count()
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().expect("lock table poisoned");
        if let Some(Hold::Shared { count, .. }) = held.get_mut(&self.key)
            && *count > 1 {
                *count -= 1;
                return;
            }
        held.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_operation_is_refused_naming_the_first() {
        let locks = VolumeLocks::default();
        let (p, v) = (PoolId::new_random(), VolumeId::new_random());
        let g = locks.exclusive(p, v, "resize").unwrap();
        let err = locks.exclusive(p, v, "delete").unwrap_err();
        assert!(matches!(err, StorageError::Busy(_)));
        assert!(err.to_string().contains("resize is running"), "{err}");
        assert!(locks.shared(p, v, "clone").is_err());
        drop(g);
        assert!(locks.exclusive(p, v, "delete").is_ok());
    }

    #[test]
    fn shared_holders_exclude_writers_until_the_last_leaves() {
        let locks = VolumeLocks::default();
        let (p, v) = (PoolId::new_random(), VolumeId::new_random());
        let a = locks.shared(p, v, "clone source").unwrap();
        let b = locks.shared(p, v, "clone source").unwrap();
        assert!(locks.exclusive(p, v, "delete").unwrap_err().to_string().contains("clone source"));
        drop(a);
        assert!(locks.exclusive(p, v, "delete").is_err());
        drop(b);
        assert_eq!(locks.running_in_pool(p), 0);
        assert!(locks.exclusive(p, v, "delete").is_ok());
    }
}
