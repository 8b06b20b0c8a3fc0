//! Ceph RBD pools, native: librados and librbd through our own bindings
//! (limiquantix-ceph-sys). One connection per pool, reused by every call;
//! every call runs on the blocking pool and is bounded by the client
//! timeouts of the node's config, so a dead cluster gives UNAVAILABLE, never
//! a hung daemon. Images are named `lq-<uuid>`.

mod object_lock;
mod config;
mod create;
mod pool;
mod purge;
mod rados;
mod rbd;
mod snapshots;
mod staging;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, NewVolume};
use crate::backends::{EngineContext, OpenMode};
use crate::error::{Result, StorageError};
use crate::ids::{Name, PoolId, VolumeId};
use crate::model::{Capabilities, CephPoolConfig, PoolCapacity, PoolKind, ProgressSink, SnapshotInfo, VolumeFormat, VolumeInfo};
use crate::tools::QemuImg;
use crate::xml::{DiskAuth, DiskDriver, DiskSource, NetHost, SecretRef};

pub use config::{decode_base64, parse_monitor, validate};
use rados::{Cluster, ConnectConfig, IoCtx};

/// librados client timeouts (from the node config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CephTimeouts {
    pub mon_op: Duration,
    pub osd_op: Duration,
    pub mount: Duration,
}

impl Default for CephTimeouts {
    fn default() -> Self {
        Self { mon_op: Duration::from_secs(10), osd_op: Duration::from_secs(10), mount: Duration::from_secs(10) }
    }
}

const IMAGE_PREFIX: &str = "lq-";
/// Snapshots the backend makes for linked clones: `lq-clone-<child id>`.
const CLONE_SNAP_PREFIX: &str = "lq-clone-";

pub fn image_name(id: VolumeId) -> String {
    format!("{IMAGE_PREFIX}{id}")
}

pub(crate) fn parse_image_name(name: &str) -> Option<VolumeId> {
    name.strip_prefix(IMAGE_PREFIX)?.parse().ok()
}

pub(crate) struct Inner {
    pool_id: PoolId,
    config: CephPoolConfig,
    /// The volumes' I/O context (pool and namespace).
    io: IoCtx,
    cluster: Arc<Cluster>,
    qemu: QemuImg,
    files: config::ClientFiles,
    /// Wakes the trash purger.
    purge: tokio::sync::Notify,
}

pub struct CephBackend {
    inner: Arc<Inner>,
    purger: tokio::task::JoinHandle<()>,
}

impl CephBackend {
    pub fn capabilities_of_kind() -> Capabilities {
        Capabilities {
            thin_provisioning: true,
            linked_clone: true,
            snapshots: true,
            shared: true,
            live_resize: true,
            array_managed: false,
            one_metadata_writer: false,
            formats: vec![VolumeFormat::Raw],
        }
    }

    /// Connects and checks the pool; creates it (application rbd) only when
    /// the config asks for it and this is the first opening.
    pub async fn open(pool_id: PoolId, config: &CephPoolConfig, ctx: &EngineContext, mode: OpenMode) -> Result<Self> {
        validate(config)?;
        let mut config = config.clone();
        // A key read from a file keeps its newline; librados, the keyring and
        // the libvirt secret (base64-decoded) must all get the key alone.
        config.key = crate::model::Secret::new(config.key.expose().trim().to_owned());
        let (timeouts, dir, qemu) = (ctx.ceph_timeouts, client_dir(ctx), ctx.qemu_img.clone());
        let inner = tokio::task::spawn_blocking(move || -> Result<Inner> {
            let monitors: Vec<String> = config.monitors.iter().map(|m| config::monitor_addr(m)).collect::<Result<_>>()?;
            let connect = ConnectConfig {
                monitors: &monitors,
                client_id: &config.client_id,
                key: config.key.expose(),
                mon_op_timeout: timeouts.mon_op,
                osd_op_timeout: timeouts.osd_op,
                mount_timeout: timeouts.mount,
            };
            let cluster = Cluster::connect(&connect)
                .map_err(|e| e.in_context(&format!("connecting to Ceph as client.{}", config.client_id)))?;
            pool::ensure_pool(&cluster, &config, mode == OpenMode::Create)?;
            let pool_io = cluster.ioctx(&config.ceph_pool, "").map_err(StorageError::from)?;
            if !config.rados_namespace.is_empty() && !rbd::namespace_exists(&pool_io, &config.rados_namespace)? {
                if config.create_if_missing && mode == OpenMode::Create {
                    rbd::namespace_create(&pool_io, &config.rados_namespace)?;
                } else {
                    return Err(StorageError::NotFound(format!(
                        "RADOS namespace {} does not exist in Ceph pool {}; create it (rbd namespace create) or set create_if_missing",
                        config.rados_namespace, config.ceph_pool
                    )));
                }
            }
            let io = cluster.ioctx(&config.ceph_pool, &config.rados_namespace)?;
            let files = config::ClientFiles::write(&dir, pool_id, &config)?;
            drop(pool_io);
            Ok(Inner {
                pool_id,
                config,
                io,
                cluster,
                qemu,
                files,
                purge: tokio::sync::Notify::new(),
            })
        })
        .await
        .map_err(|e| StorageError::Internal(format!("Ceph connect task failed: {e}")))??;
        let inner = Arc::new(inner);
        let purger = tokio::spawn(purge::purge_loop(Arc::downgrade(&inner)));
        Ok(Self { inner, purger })
    }

    /// Runs `f` on the blocking pool with the pool's handles.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Arc<Inner>) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StorageError::Internal(format!("Ceph task failed: {e}")))?
    }

    /// Runs a long blocking librbd job (copy, flatten) that reports progress
    /// through its hook; dropping the future sets the hook's cancel flag.
    async fn with_progress<T: Send + 'static>(
        &self,
        progress: ProgressSink<'_>,
        f: impl FnOnce(&Arc<Inner>, &mut rbd::ProgressHook<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        crate::progress::run_blocking(progress, move |cancel, report| {
            let mut total = 0;
            let out = f(&inner, &mut rbd::ProgressHook {
                report: &mut |done, all| {
                    total = all;
                    report(done, all)
                },
                cancel,
            })?;
            // librbd's last report can stop short of the total.
            report(total, total);
            Ok(out)
        })
        .await
    }
}

impl Drop for CephBackend {
    fn drop(&mut self) {
        self.purger.abort();
    }
}

#[async_trait]
impl Backend for CephBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Ceph
    }

    fn capabilities(&self) -> Capabilities {
        Self::capabilities_of_kind()
    }

    fn location(&self) -> String {
        let c = &self.inner.config;
        let ns = if c.rados_namespace.is_empty() { String::new() } else { format!("/{}", c.rados_namespace) };
        format!("ceph {}{ns} via {}", c.ceph_pool, c.monitors.join(","))
    }

    async fn activate(&self) -> Result<()> {
        // Whatever a crash left in the trash is purged again.
        self.inner.purge.notify_one();
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        self.inner.files.remove();
        Ok(())
    }

    async fn capacity(&self) -> Result<PoolCapacity> {
        self.blocking(|i| pool::capacity(i)).await
    }

    async fn free_bytes(&self) -> Result<u64> {
        self.blocking(|i| pool::free_bytes(i)).await
    }

    async fn get_volume(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        self.blocking(move |i| volumes::describe(i, id)).await
    }

    async fn list_volumes(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        self.blocking(move |i| volumes::list_page(i, after, limit)).await
    }

    async fn dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>> {
        self.blocking(move |i| volumes::dependents(i, id)).await
    }

    async fn create_volume(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        create::create(self, new, progress).await
    }

    async fn delete_volume(&self, id: VolumeId) -> Result<()> {
        self.blocking(move |i| volumes::delete(i, id)).await?;
        self.inner.purge.notify_one();
        Ok(())
    }

    async fn resize_volume(&self, volume: &VolumeInfo, new_size_bytes: u64) -> Result<VolumeInfo> {
        let id = volume.id;
        self.blocking(move |i| {
            rbd::Image::open(&i.io, &image_name(id))?.grow(new_size_bytes)?;
            volumes::describe(i, id)?.ok_or_else(|| StorageError::NotFound(format!("volume {id} vanished")))
        })
        .await
    }

    async fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<SnapshotInfo>> {
        let id = volume.id;
        self.blocking(move |i| snapshots::list(i, id)).await
    }

    async fn create_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<SnapshotInfo> {
        let (id, name) = (volume.id, name.clone());
        self.blocking(move |i| snapshots::create(i, id, &name)).await
    }

    async fn revert_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        let (id, name) = (volume.id, name.clone());
        self.blocking(move |i| snapshots::revert(i, id, &name)).await
    }

    async fn delete_snapshot(&self, volume: &VolumeInfo, name: &Name) -> Result<()> {
        let (id, name) = (volume.id, name.clone());
        self.blocking(move |i| snapshots::delete(i, id, &name)).await
    }

    async fn flatten_volume(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        volumes::flatten(self, volume.id, progress).await
    }

    fn read_location(&self, volume: &VolumeInfo) -> Result<crate::tools::qemu_img::VolumeLocation> {
        let i = &self.inner;
        Ok(crate::tools::qemu_img::VolumeLocation::Rbd {
            pool: i.config.ceph_pool.clone(),
            namespace: i.config.rados_namespace.clone(),
            image: image_name(volume.id),
            conf: i.files.conf.clone(),
            keyring: i.files.keyring.clone(),
            client_id: i.config.client_id.clone(),
        })
    }

    fn disk(&self, volume: &VolumeInfo) -> Result<(DiskSource, DiskDriver)> {
        let c = &self.inner.config;
        let hosts = c
            .monitors
            .iter()
            .map(|m| parse_monitor(m).map(|(host, port)| NetHost { name: xml_host_name(&host), port: Some(port) }))
            .collect::<Result<Vec<_>>>()?;
        let source = DiskSource::Rbd {
            pool: c.ceph_pool.clone(),
            namespace: (!c.rados_namespace.is_empty()).then(|| c.rados_namespace.clone()),
            image: image_name(volume.id),
            hosts,
            auth: Some(DiskAuth {
                username: c.client_id.clone(),
                secret: SecretRef::Ceph { uuid: libvirt_secret_uuid(self.inner.pool_id) },
            }),
        };
        Ok((source, DiskDriver::rbd()))
    }

    fn libvirt_secret(&self) -> Option<crate::backend::LibvirtSecret> {
        Some(crate::backend::LibvirtSecret {
            uuid: libvirt_secret_uuid(self.inner.pool_id),
            usage: crate::backend::SecretUsage::Ceph(format!("limiquantix pool {} client.{}", self.inner.pool_id, self.inner.config.client_id)),
            value: self.inner.config.key.clone(),
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970").as_secs() as i64
}

/// Where the node keeps the pools' client files (conf, keyring).
fn client_dir(ctx: &EngineContext) -> std::path::PathBuf {
    ctx.state_dir.join("ceph")
}

/// Removes what the node keeps for the pool (its key among them) without
/// reaching the cluster: also for a pool that never came up again.
pub fn forget(pool: PoolId, ctx: &EngineContext) {
    config::ClientFiles::at(&client_dir(ctx), pool).remove();
}

/// A monitor's host as libvirt's `<host name=...>` takes it: an IPv6
/// address without the brackets a host:port string needs.
fn xml_host_name(host: &str) -> String {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_owned()
}

/// The libvirt secret holding the pool's key: named after the pool, so every
/// node defines the same one.
pub fn libvirt_secret_uuid(pool: PoolId) -> String {
    pool.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_monitors_are_named_without_brackets_in_disk_xml() {
        let (host, port) = parse_monitor("[fd00::1]:6789").unwrap();
        assert_eq!((xml_host_name(&host), port), ("fd00::1".to_owned(), 6789));
        assert_eq!(xml_host_name("10.0.0.1"), "10.0.0.1");
        assert_eq!(xml_host_name("mon1.example"), "mon1.example");
    }
}
