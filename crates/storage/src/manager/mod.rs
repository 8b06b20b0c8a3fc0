//! The StorageManager owns the node's pools: it persists their configs,
//! re-activates them after a restart, and runs every volume operation with the
//! checks that are the same for all backends — ids and names, sizes, one
//! operation per volume, idempotent create/delete, dependent clones, space.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::backend::{Backend, NewVolume, NewVolumeContent};
use crate::backends::{self, EngineContext, OpenMode};
use crate::error::{Result, StorageError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::image;
use crate::locks::VolumeLocks;
use crate::model::{
    Capabilities, CloneMode, DiskBus, PoolCapacity, PoolConfig, PoolKind, ProgressSink, Provisioning, SnapshotInfo,
    VolumeFormat, VolumeInfo, VolumeSource, VolumeSpec, validate_size,
};
use crate::pool_store::{PoolStore, StoredPool};
use crate::tools::QemuImg;
use crate::tools::qemu_img::ToolTimeouts;
use crate::xml::{self, DiskDefinition};

mod exports;
pub use exports::ExportInfo;
mod snapshots;
mod volumes;

pub const DEFAULT_PAGE_SIZE: usize = 100;

/// File work (the pool records' fsyncs) on the blocking pool, off the runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StorageError::Internal(format!("file task failed: {e}")))?
}
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub state_dir: PathBuf,
    pub local_pool_roots: Vec<PathBuf>,
    pub import_dirs: Vec<PathBuf>,
    pub timeouts: ToolTimeouts,
    pub ceph_timeouts: crate::backends::ceph::CephTimeouts,
    /// iSCSI pools in LVM mode: iscsiadm, stable device names, device-mapper.
    pub iscsi: crate::backends::iscsi::IscsiHost,
    /// Bandwidth limit of data copies (full clones, imports); None: unlimited.
    pub copy_bytes_per_sec: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolPhase {
    Ready,
    Error(String),
}

#[derive(Debug, Clone)]
pub struct PoolReport {
    pub id: PoolId,
    pub config: PoolConfig,
    pub phase: PoolPhase,
    /// Present when the pool is ready.
    pub capacity: Option<PoolCapacity>,
    pub capabilities: Capabilities,
}

enum PoolState {
    Ready(Arc<dyn Backend>),
    /// Activation failed; retried on the next use.
    Failed,
}

struct PoolEntry {
    config: PoolConfig,
    state: tokio::sync::Mutex<PoolState>,
}

pub struct StorageManager {
    ctx: EngineContext,
    store: PoolStore,
    pools: RwLock<HashMap<PoolId, Arc<PoolEntry>>>,
    locks: VolumeLocks,
    /// Serialises pool init/destroy (rare, and they check each other's results).
    admin: tokio::sync::Mutex<()>,
    /// Volumes exported to another node for a move, by export id.
    exports: exports::Exports,
}

/// Grows a volume a VM has open, through the hypervisor.
#[async_trait::async_trait]
pub trait LiveResize: Send + Sync {
    async fn grow(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<()>;
}

/// Mirrors a disk a VM has open onto a new destination and switches the VM
/// to it (libvirt block copy + pivot). On any error, and when dropped before
/// it returns, the VM stays on its source.
#[async_trait::async_trait]
pub trait LiveMirror: Send + Sync {
    async fn mirror(&self, volume: VolumeId, destination_xml: &str, progress: crate::model::ProgressSink<'_>) -> Result<()>;
    /// Abandons a mirror of the volume's disk that an earlier try left
    /// running (a node restart does not stop it): the VM stays on its
    /// source and QEMU lets go of the destination.
    async fn abandon(&self, volume: VolumeId) -> Result<()>;
}

/// Snapshots disks a running VM has open, through its QEMU, all at one
/// instant; the implementation freezes and thaws the guest when asked.
#[async_trait::async_trait]
pub trait LiveSnapshot: Send + Sync {
    /// `serials` name the VM's disks (= the volume ids).
    async fn snapshot(&self, serials: &[String], name: &Name) -> Result<LiveSnapshotOutcome>;
    /// Deletes snapshot `name` of the disk with this serial.
    async fn delete(&self, serial: &str, name: &Name) -> Result<()>;
}

/// How a live snapshot went for the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSnapshotOutcome {
    /// The guest's filesystems were frozen around the snapshot.
    pub quiesced: bool,
    /// From the freeze request to the thaw's answer.
    pub frozen_ms: u64,
    /// A best-effort quiesce that did not happen: why.
    pub not_quiesced_reason: String,
}

impl StorageManager {
    /// Opens the state dir and re-activates every pool recorded there. A pool
    /// that cannot be activated is kept, in error, and retried on use.
    pub async fn open(config: EngineConfig) -> Result<Self> {
        let store = PoolStore::open(&config.state_dir)?;
        let ctx = EngineContext {
            qemu_img: QemuImg::new(config.timeouts).with_copy_rate(config.copy_bytes_per_sec),
            local_pool_roots: config.local_pool_roots,
            import_dirs: config.import_dirs,
            state_dir: config.state_dir.clone(),
            ceph_timeouts: config.ceph_timeouts,
            iscsi: config.iscsi,
        };
        let manager = Self {
            ctx,
            store,
            pools: RwLock::new(HashMap::new()),
            locks: VolumeLocks::default(),
            admin: tokio::sync::Mutex::new(()),
            exports: exports::Exports::default(),
        };
        for stored in manager.store.load_all()? {
            let state = match manager.activate(stored.pool_id, &stored.config, OpenMode::Reopen).await {
                Ok(backend) => {
                    tracing::info!(pool = %stored.pool_id, kind = %stored.config.kind(), "pool re-activated");
                    PoolState::Ready(backend)
                }
                Err(e) => {
                    tracing::warn!(pool = %stored.pool_id, error = %e, "pool could not be re-activated");
                    PoolState::Failed
                }
            };
            manager.insert(stored.pool_id, stored.config, state);
        }
        Ok(manager)
    }

    pub fn supported_kinds(&self) -> Vec<(PoolKind, Capabilities)> {
        backends::supported_kinds()
    }

    async fn activate(&self, id: PoolId, config: &PoolConfig, mode: OpenMode) -> Result<Arc<dyn Backend>> {
        let backend = backends::open(id, config, &self.ctx, mode).await?;
        backend.activate().await?;
        Ok(backend)
    }

    fn insert(&self, id: PoolId, config: PoolConfig, state: PoolState) {
        let entry = Arc::new(PoolEntry { config, state: tokio::sync::Mutex::new(state) });
        self.pools.write().expect("pool table poisoned").insert(id, entry);
    }

    fn entry(&self, id: PoolId) -> Result<Arc<PoolEntry>> {
        self.pools.read().expect("pool table poisoned").get(&id).cloned().ok_or_else(|| {
            StorageError::NotFound(format!(
                "pool {id} is not known on this node; initialise it with InitStoragePool first"
            ))
        })
    }

    /// The pool's backend, re-activating it first if it was in error.
    async fn backend(&self, id: PoolId) -> Result<Arc<dyn Backend>> {
        let entry = self.entry(id)?;
        let mut state = entry.state.lock().await;
        if let PoolState::Failed = &*state {
            match self.activate(id, &entry.config, OpenMode::Reopen).await {
                Ok(b) => *state = PoolState::Ready(b),
                Err(e) => {
                    return Err(StorageError::Unavailable(format!("pool {id} is not available on this node: {e}")));
                }
            }
        }
        match &*state {
            PoolState::Ready(b) => Ok(b.clone()),
            PoolState::Failed => unreachable!("a failed pool was re-activated or returned above"),
        }
    }

    // ---- pools ----

    pub async fn init_pool(&self, id: PoolId, config: PoolConfig) -> Result<PoolReport> {
        let _admin = self.admin.lock().await;
        if let Ok(existing) = self.entry(id) {
            if existing.config != config {
                return Err(StorageError::AlreadyExists(format!(
                    "pool {id} is already initialised on this node with another configuration; \
                     destroy it first or use another pool id"
                )));
            }
            self.backend(id).await?;
            return self.pool_report(id).await;
        }
        let backend = self.activate(id, &config, OpenMode::Create).await?;
        let location = backend.location();
        let user = self.ready_backends().await.into_iter().find(|(_, other)| other.location() == location);
        let saved = match user {
            Some((other_id, _)) => {
                Err(StorageError::AlreadyExists(format!("{location} is already used by pool {other_id} on this node")))
            }
            None => {
                let (store, stored) = (self.store.clone(), StoredPool { pool_id: id, config: config.clone() });
                blocking(move || store.save(&stored)).await
            }
        };
        if let Err(e) = saved {
            // A refused pool leaves nothing behind (a Ceph pool's client files hold its key).
            if let Err(d) = backend.deactivate().await {
                tracing::warn!(pool = %id, error = %d, "cannot deactivate a pool that was refused");
            }
            return Err(e);
        }
        tracing::info!(pool = %id, kind = %config.kind(), %location, "pool initialised");
        self.insert(id, config, PoolState::Ready(backend));
        self.pool_report(id).await
    }

    async fn ready_backends(&self) -> Vec<(PoolId, Arc<dyn Backend>)> {
        let entries: Vec<_> = self.pools.read().expect("pool table poisoned").iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut ready = Vec::new();
        for (id, entry) in entries {
            if let PoolState::Ready(b) = &*entry.state.lock().await {
                ready.push((id, b.clone()));
            }
        }
        ready
    }

    /// Forgets the pool on this node. Volumes are never deleted.
    pub async fn destroy_pool(&self, id: PoolId) -> Result<()> {
        let _admin = self.admin.lock().await;
        let Ok(entry) = self.entry(id) else { return Ok(()) };
        let running = self.locks.running_in_pool(id);
        if running > 0 {
            return Err(StorageError::precondition(format!(
                "pool {id} has {running} volume operation(s) running; retry when they have finished"
            )));
        }
        if let PoolState::Ready(backend) = &*entry.state.lock().await {
            backend.deactivate().await?;
        }
        // Also for a pool in error, which has no backend to deactivate.
        let (config, ctx) = (entry.config.clone(), self.ctx.clone());
        blocking(move || {
            backends::forget(id, &config, &ctx);
            Ok(())
        })
        .await?;
        let store = self.store.clone();
        blocking(move || store.remove(id)).await?;
        self.pools.write().expect("pool table poisoned").remove(&id);
        tracing::info!(pool = %id, "pool destroyed on this node");
        Ok(())
    }

    pub async fn pool_report(&self, id: PoolId) -> Result<PoolReport> {
        let entry = self.entry(id)?;
        let capabilities = backends::capabilities_of(&entry.config);
        let (phase, capacity) = match self.backend(id).await {
            Ok(backend) => match backend.capacity().await {
                Ok(c) => (PoolPhase::Ready, Some(c)),
                Err(e) => (PoolPhase::Error(e.to_string()), None),
            },
            Err(e) => (PoolPhase::Error(e.to_string()), None),
        };
        Ok(PoolReport { id, config: entry.config.clone(), phase, capacity, capabilities })
    }

    /// Counts the pool's volumes and sums their sizes: reads every volume,
    /// so it is for a person asking, never for periodic polls.
    pub async fn count_volumes(&self, id: PoolId) -> Result<crate::model::VolumeCount> {
        let backend = self.backend(id).await?;
        let mut count = crate::model::VolumeCount::default();
        let mut after = None;
        loop {
            let page = backend.list_volumes(after, MAX_PAGE_SIZE).await?;
            count.volumes += page.len() as u64;
            count.provisioned_bytes += page.iter().map(|v| v.size_bytes).sum::<u64>();
            match page.last() {
                Some(last) if page.len() == MAX_PAGE_SIZE => after = Some(last.id),
                _ => return Ok(count),
            }
        }
    }

    pub async fn list_pools(&self) -> Result<Vec<PoolReport>> {
        let mut ids: Vec<PoolId> = self.pools.read().expect("pool table poisoned").keys().copied().collect();
        ids.sort_unstable();
        let mut reports = Vec::with_capacity(ids.len());
        for id in ids {
            match self.pool_report(id).await {
                Ok(r) => reports.push(r),
                Err(StorageError::NotFound(_)) => {} // destroyed meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(reports)
    }

    /// The libvirt secret the pool's VMs need, if any (for the node to define).
    pub async fn pool_secret(&self, id: PoolId) -> Result<Option<crate::backend::LibvirtSecret>> {
        Ok(self.backend(id).await?.libvirt_secret())
    }

    /// The uuid of the pool's libvirt secret, from its config alone (a pool
    /// in error has one to remove too).
    pub fn pool_secret_uuid(&self, id: PoolId) -> Result<Option<String>> {
        Ok(backends::libvirt_secret_uuid(id, &self.entry(id)?.config))
    }
}
