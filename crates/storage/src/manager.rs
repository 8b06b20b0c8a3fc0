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
}

/// Grows a volume a VM has open, through the hypervisor.
#[async_trait::async_trait]
pub trait LiveResize: Send + Sync {
    async fn grow(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<()>;
}

/// What an existing volume must look like for a repeated create to succeed.
struct Expected {
    format: Option<VolumeFormat>,
    size_bytes: Option<u64>,
    backing: Option<VolumeId>,
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
        };
        let manager = Self {
            ctx,
            store,
            pools: RwLock::new(HashMap::new()),
            locks: VolumeLocks::default(),
            admin: tokio::sync::Mutex::new(()),
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
        let capabilities = backends::supported_kinds()
            .into_iter()
            .find(|(k, _)| *k == entry.config.kind())
            .map(|(_, c)| c)
            .ok_or_else(|| StorageError::Internal(format!("pool {id} has an unsupported kind")))?;
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

    // ---- volumes ----

    async fn volume(&self, backend: &dyn Backend, id: VolumeId) -> Result<VolumeInfo> {
        backend
            .get_volume(id)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("volume {id} does not exist in this pool")))
    }

    pub async fn get_volume(&self, pool: PoolId, id: VolumeId) -> Result<VolumeInfo> {
        let backend = self.backend(pool).await?;
        self.volume(backend.as_ref(), id).await
    }

    /// A page of volumes ordered by id, and the id to continue after (None on the last page).
    pub async fn list_volumes(
        &self,
        pool: PoolId,
        after: Option<VolumeId>,
        page_size: usize,
    ) -> Result<(Vec<VolumeInfo>, Option<VolumeId>)> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(StorageError::invalid(format!("page size {n} is above the maximum of {MAX_PAGE_SIZE}")));
            }
            n => n,
        };
        let backend = self.backend(pool).await?;
        let mut page = backend.list_volumes(after, limit + 1).await?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|v| v.id)
        } else {
            None
        };
        Ok((page, next))
    }

    pub async fn create_volume(
        &self,
        pool: PoolId,
        id: VolumeId,
        spec: VolumeSpec,
        source: VolumeSource,
        progress: ProgressSink<'_>,
    ) -> Result<VolumeInfo> {
        if let Some(size) = spec.size_bytes {
            validate_size("volume size", size)?;
        }
        let backend = self.backend(pool).await?;
        let caps = backend.capabilities();
        if let Some(format) = spec.format
            && !caps.formats.contains(&format) {
                return Err(StorageError::invalid(format!("{} pools do not store {format} volumes", backend.kind())));
            }
        if spec.provisioning == Provisioning::Thin && !caps.thin_provisioning {
            return Err(StorageError::invalid(format!("{} pools only make thick volumes", backend.kind())));
        }
        let default_format = caps.formats[0];
        let _guard = self.locks.exclusive(pool, id, "a create")?;

        match source {
            VolumeSource::Empty => {
                let size = spec.size_bytes.ok_or_else(|| StorageError::invalid("an empty volume needs a size"))?;
                let format = spec.format.unwrap_or(default_format);
                let expected = Expected { format: Some(format), size_bytes: Some(size), backing: None };
                if let Some(v) = self.existing(backend.as_ref(), id, &expected).await? {
                    return Ok(v);
                }
                self.ensure_space(backend.as_ref(), spec.provisioning, size).await?;
                let new = NewVolume { id, format, size_bytes: size, provisioning: spec.provisioning, content: NewVolumeContent::Empty };
                backend.create_volume(&new, progress).await
            }
            VolumeSource::Clone { source, mode } => {
                if source == id {
                    return Err(StorageError::invalid("a volume cannot be cloned onto itself"));
                }
                let _source_guard = self.locks.shared(pool, source, "a clone (as its source)")?;
                let base = self.volume(backend.as_ref(), source).await?;
                let mode = mode.unwrap_or(if caps.linked_clone { CloneMode::Linked } else { CloneMode::Full });
                let size = self.size_from_source(spec.size_bytes, base.size_bytes, "source volume")?;
                match mode {
                    CloneMode::Linked => {
                        if !caps.linked_clone {
                            return Err(StorageError::precondition(format!(
                                "{} pools cannot make linked clones; ask for a full clone",
                                backend.kind()
                            )));
                        }
                        if spec.provisioning == Provisioning::Thick {
                            return Err(StorageError::invalid("a linked clone shares its source's data and cannot be thick"));
                        }
                        if spec.format.is_some_and(|f| f != VolumeFormat::Qcow2) {
                            return Err(StorageError::invalid("linked clones are qcow2 volumes"));
                        }
                        let expected = Expected { format: Some(VolumeFormat::Qcow2), size_bytes: Some(size), backing: Some(source) };
                        if let Some(v) = self.existing(backend.as_ref(), id, &expected).await? {
                            return Ok(v);
                        }
                        let content = NewVolumeContent::LinkedClone { base: &base };
                        let new = NewVolume { id, format: VolumeFormat::Qcow2, size_bytes: size, provisioning: Provisioning::Thin, content };
                        backend.create_volume(&new, progress).await
                    }
                    CloneMode::Full => {
                        let format = spec.format.unwrap_or(base.format);
                        let content = NewVolumeContent::Copy { source: &base, snapshot: None };
                        self.create_copy(backend.as_ref(), id, format, size, spec.provisioning, content, progress).await
                    }
                }
            }
            VolumeSource::Snapshot { volume, name } => {
                let _source_guard = self.locks.shared(pool, volume, "a copy of one of its snapshots")?;
                let base = self.volume(backend.as_ref(), volume).await?;
                if !backend.list_snapshots(&base).await?.iter().any(|s| s.name == name.as_str()) {
                    return Err(StorageError::NotFound(format!("volume {volume} has no snapshot named {name}")));
                }
                let size = self.size_from_source(spec.size_bytes, base.size_bytes, "snapshot")?;
                let format = spec.format.unwrap_or(base.format);
                let content = NewVolumeContent::Copy { source: &base, snapshot: Some(&name) };
                self.create_copy(backend.as_ref(), id, format, size, spec.provisioning, content, progress).await
            }
            VolumeSource::Image { path, format: image_format } => {
                let format = spec.format.unwrap_or(default_format);
                let expected = Expected { format: Some(format), size_bytes: spec.size_bytes, backing: None };
                if let Some(v) = self.existing(backend.as_ref(), id, &expected).await? {
                    return Ok(v);
                }
                let path = image::resolve_import_path(&path, &self.ctx.import_dirs)?;
                progress(crate::model::Progress { phase: "inspecting", done_bytes: 0, total_bytes: 0 });
                let image = image::inspect_untrusted(&self.ctx.qemu_img, &path, image_format).await?;
                let size = self.size_from_source(spec.size_bytes, image.virtual_size, "image")?;
                self.ensure_space(backend.as_ref(), spec.provisioning, size).await?;
                let new = NewVolume { id, format, size_bytes: size, provisioning: spec.provisioning, content: NewVolumeContent::Image(&image) };
                backend.create_volume(&new, progress).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_copy(
        &self,
        backend: &dyn Backend,
        id: VolumeId,
        format: VolumeFormat,
        size: u64,
        provisioning: Provisioning,
        content: NewVolumeContent<'_>,
        progress: ProgressSink<'_>,
    ) -> Result<VolumeInfo> {
        let expected = Expected { format: Some(format), size_bytes: Some(size), backing: None };
        if let Some(v) = self.existing(backend, id, &expected).await? {
            return Ok(v);
        }
        self.ensure_space(backend, provisioning, size).await?;
        let new = NewVolume { id, format, size_bytes: size, provisioning, content };
        backend.create_volume(&new, progress).await
    }

    fn size_from_source(&self, requested: Option<u64>, source_size: u64, what: &str) -> Result<u64> {
        match requested {
            None => Ok(source_size),
            Some(size) if size < source_size => Err(StorageError::invalid(format!(
                "requested size {size} bytes is smaller than the {what} ({source_size} bytes); volumes never shrink"
            ))),
            Some(size) => Ok(size),
        }
    }

    /// A repeated create: the same spec returns the volume, another is refused.
    async fn existing(&self, backend: &dyn Backend, id: VolumeId, expected: &Expected) -> Result<Option<VolumeInfo>> {
        let Some(v) = backend.get_volume(id).await? else { return Ok(None) };
        let same = expected.format.is_none_or(|f| f == v.format)
            && expected.size_bytes.is_none_or(|s| s == v.size_bytes)
            && expected.backing == v.backing;
        if same {
            Ok(Some(v))
        } else {
            Err(StorageError::AlreadyExists(format!(
                "volume {id} already exists with another spec ({} {} bytes{}); delete it or use another id",
                v.format,
                v.size_bytes,
                v.backing.map(|b| format!(", linked to {b}")).unwrap_or_default()
            )))
        }
    }

    async fn ensure_space(&self, backend: &dyn Backend, provisioning: Provisioning, size: u64) -> Result<()> {
        if provisioning != Provisioning::Thick {
            return Ok(());
        }
        let free = backend.free_bytes().await?;
        if size > free {
            return Err(StorageError::ResourceExhausted(format!(
                "a thick volume of {size} bytes does not fit: the pool has {free} bytes free"
            )));
        }
        Ok(())
    }

    /// Grows a volume. With `live`, a VM has it open and the growth goes
    /// through the hypervisor (so the guest sees it) instead of the backend.
    pub async fn resize_volume(
        &self,
        pool: PoolId,
        id: VolumeId,
        new_size: u64,
        live: Option<&dyn LiveResize>,
    ) -> Result<VolumeInfo> {
        validate_size("new size", new_size)?;
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a resize")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        if new_size < volume.size_bytes {
            return Err(StorageError::invalid(format!(
                "volume {id} is {} bytes; shrinking it to {new_size} bytes is not supported (it would destroy data)",
                volume.size_bytes
            )));
        }
        if new_size == volume.size_bytes {
            return Ok(volume);
        }
        // A base read by linked clones is never written (DESIGN.md rule 12).
        self.refuse_if_dependents(backend.as_ref(), id, "resized").await?;
        match live {
            None => backend.resize_volume(&volume, new_size).await,
            Some(live) => {
                if !backend.capabilities().live_resize {
                    return Err(StorageError::precondition(format!(
                        "{} pools cannot grow a volume while a VM uses it; detach it first",
                        backend.kind()
                    )));
                }
                live.grow(&volume, new_size).await?;
                self.volume(backend.as_ref(), id).await
            }
        }
    }

    /// Holds a volume for an operation done outside the engine (hot-plug):
    /// other operations on it are refused until the guard is dropped.
    pub fn hold_volume(&self, pool: PoolId, id: VolumeId, operation: &'static str) -> Result<crate::locks::VolumeGuard> {
        self.locks.exclusive(pool, id, operation)
    }

    /// Makes a linked clone independent of its base.
    pub async fn flatten_volume(&self, pool: PoolId, id: VolumeId, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a flatten")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        if volume.backing.is_none() {
            return Ok(volume);
        }
        backend.flatten_volume(&volume, progress).await
    }

    pub async fn delete_volume(&self, pool: PoolId, id: VolumeId) -> Result<()> {
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a delete")?;
        // The backend finds it, checks its dependents and deletes it in one go.
        backend.delete_volume(id).await
    }

    /// Inspects an image to import, as an import would, without copying it.
    pub async fn inspect_image(&self, path: &std::path::Path, format: crate::model::ImageFormat) -> Result<image::InspectedImage> {
        let path = image::resolve_import_path(path, &self.ctx.import_dirs)?;
        image::inspect_untrusted(&self.ctx.qemu_img, &path, format).await
    }

    async fn refuse_if_dependents(&self, backend: &dyn Backend, id: VolumeId, action: &str) -> Result<()> {
        let dependents = backend.dependents(id).await?;
        if dependents.is_empty() {
            return Ok(());
        }
        Err(crate::backend::dependents_error(id, &dependents, action))
    }

    /// The `<disk>` that gives a VM the volume; read-write is refused for a
    /// base of linked clones (read-only is how a VM may use one).
    pub async fn attach_info(
        &self,
        pool: PoolId,
        id: VolumeId,
        bus: DiskBus,
        read_only: bool,
        used_targets: &[String],
        domain_xml: Option<&str>,
    ) -> Result<DiskDefinition> {
        let backend = self.backend(pool).await?;
        let volume = self.volume(backend.as_ref(), id).await?;
        if !read_only {
            self.refuse_if_dependents(backend.as_ref(), id, "attached read-write (attach it read-only)").await?;
        }
        let mut used = used_targets.to_vec();
        if let Some(xml) = domain_xml {
            used.extend(xml::targets_in_domain(xml)?);
        }
        let (source, driver) = backend.disk(&volume)?;
        Ok(DiskDefinition { source, driver, target_dev: xml::pick_target(bus, &used)?, bus, serial: id.to_string(), read_only })
    }

    // ---- snapshots ----

    async fn snapshot_capable(&self, pool: PoolId) -> Result<Arc<dyn Backend>> {
        let backend = self.backend(pool).await?;
        if !backend.capabilities().snapshots {
            return Err(StorageError::precondition(format!("{} pools have no snapshots", backend.kind())));
        }
        Ok(backend)
    }

    pub async fn list_snapshots(&self, pool: PoolId, id: VolumeId) -> Result<Vec<SnapshotInfo>> {
        let backend = self.backend(pool).await?;
        let volume = self.volume(backend.as_ref(), id).await?;
        backend.list_snapshots(&volume).await
    }

    pub async fn create_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<SnapshotInfo> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.snapshot_capable(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        self.refuse_if_dependents(backend.as_ref(), id, "snapshotted").await?;
        backend.create_snapshot(&volume, &name).await
    }

    pub async fn revert_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<VolumeInfo> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.snapshot_capable(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot revert")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        // Linked clones read the base's current data: reverting it would corrupt them.
        self.refuse_if_dependents(backend.as_ref(), id, "reverted").await?;
        backend.revert_snapshot(&volume, &name).await?;
        self.volume(backend.as_ref(), id).await
    }

    pub async fn delete_snapshot(&self, pool: PoolId, id: VolumeId, name: &str) -> Result<()> {
        let name = Name::parse("snapshot", name)?;
        let backend = self.snapshot_capable(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "a snapshot delete")?;
        let Some(volume) = backend.get_volume(id).await? else { return Ok(()) };
        backend.delete_snapshot(&volume, &name).await
    }
}
