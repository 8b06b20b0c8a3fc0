//! Volume files on the export: lookup, listing, create, delete, resize.

use std::sync::Arc;

use super::NfsBackend;
use super::client::NfsClient;
use super::clients::Clients;
use crate::backend::{NewVolume, NewVolumeContent};
use crate::backends::image_files::{self, FileFacts};
use crate::error::{Result, StorageError};
use crate::ids::VolumeId;
use crate::model::{ImageFormat, ProgressSink, Provisioning, VolumeFormat, VolumeInfo};
use crate::tools::qemu_img::{Backing, ConvertOptions, CreateOptions, ImportTarget, Preallocation};

fn file_path(name: &str) -> String {
    format!("/{name}")
}

impl NfsBackend {
    pub(super) async fn lookup(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        let export = self.export().clone();
        self.clients
            .run(move |c| {
                for format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
                    if let Some(v) = describe(c, &export, id, format)? {
                        return Ok(Some(v));
                    }
                }
                Ok(None)
            })
            .await
    }

    pub(super) async fn list_page(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        let export = self.export().clone();
        self.clients
            .run(move |c| {
                let entries = c.read_dir("/")?;
                let ids = image_files::volume_ids(entries.iter().map(|e| e.name.as_str()));
                let mut page = Vec::with_capacity(limit.min(ids.len()));
                for (id, format) in image_files::page(ids, after) {
                    if page.len() == limit {
                        break;
                    }
                    // One deleted since the listing is skipped.
                    if let Some(v) = describe(c, &export, id, format)? {
                        page.push(v);
                    }
                }
                Ok(page)
            })
            .await
    }

    pub(super) async fn find_dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>> {
        let export = self.export().clone();
        self.clients
            .run(move |c| {
                let entries = c.read_dir("/")?;
                let mut deps = Vec::new();
                for (other, format) in image_files::volume_ids(entries.iter().map(|e| e.name.as_str())) {
                    if format == VolumeFormat::Qcow2 && describe(c, &export, other, format)?.is_some_and(|v| v.backing == Some(id)) {
                        deps.push(other);
                    }
                }
                Ok(deps)
            })
            .await
    }

    /// Removes half-made files of creates that died (see [`image_files::is_leftover`]).
    pub(super) async fn remove_stale_partials(&self) -> Result<()> {
        self.clients
            .run(|c| {
                for entry in c.read_dir("/")? {
                    if image_files::is_leftover(&entry.name, entry.mtime_unix_seconds, true) {
                        tracing::info!(file = %entry.name, "removing a volume left half-made by an interrupted create");
                        c.unlink(&file_path(&entry.name))?;
                    }
                }
                Ok(())
            })
            .await
    }

    pub(super) async fn create(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        if new.provisioning == Provisioning::Thick {
            return Err(StorageError::invalid("NFS volumes are thin-provisioned (the server allocates); ask for a thin volume"));
        }
        let partial_name = image_files::partial_file_name(new.id, new.format);
        let final_name = image_files::volume_file_name(new.id, new.format);
        let partial = PartialNfsFile::claim(&self.clients, partial_name.clone()).await?;
        let target = self.url(&partial_name);
        let tool_err = |e| self.tool_error(new.id, e);
        let empty = |size| CreateOptions { format: new.format.into(), size_bytes: Some(size), preallocation: Preallocation::Off, backing: None };
        let copied_size = match new.content {
            NewVolumeContent::Empty => {
                self.qemu.create(&target, &empty(new.size_bytes)).await.map_err(tool_err)?;
                new.size_bytes
            }
            NewVolumeContent::LinkedClone { base } => {
                // By URL: QEMU's NFS driver resolves a relative backing name
                // against the clone's own file name, not its directory.
                let base_name = self.export().qemu_url(&image_files::volume_file_name(base.id, base.format));
                let opts = CreateOptions {
                    format: ImageFormat::Qcow2,
                    size_bytes: Some(new.size_bytes),
                    preallocation: Preallocation::Off,
                    backing: Some(Backing { file: &base_name, format: base.format.into() }),
                };
                self.qemu.create(&target, &opts).await.map_err(|e| self.tool_error(base.id, e))?;
                new.size_bytes
            }
            NewVolumeContent::Copy { source, snapshot } => {
                let source_url = self.volume_url(source.id, source.format);
                let opts = ConvertOptions {
                    source: &source_url,
                    source_format: source.format.into(),
                    snapshot: snapshot.map(|s| s.as_str()),
                    target: &target,
                    target_format: new.format.into(),
                    preallocation: Preallocation::Off,
                    target_exists: false,
                };
                crate::progress::convert(&self.qemu, &opts, source.size_bytes, progress)
                    .await
                    .map_err(|e| self.tool_error(source.id, e))?;
                source.size_bytes
            }
            NewVolumeContent::WholeFile { .. } => return Err(crate::backend::no_whole_file_copy("nfs")),
            NewVolumeContent::Image(image) => {
                // Made first at its final size; the confined qemu-img only fills it.
                self.qemu.create(&target, &empty(new.size_bytes)).await.map_err(tool_err)?;
                crate::progress::import(&self.qemu, image, ImportTarget::Nfs { url: &target }, new.format.into(), progress)
                    .await
                    .map_err(tool_err)?;
                new.size_bytes
            }
        };
        if new.size_bytes > copied_size {
            self.qemu.resize(&target, new.format.into(), new.size_bytes, Preallocation::Off).await.map_err(tool_err)?;
        }
        let (id, format, export) = (new.id, new.format, self.export().clone());
        partial
            .commit(move |c| {
                if c.stat(&file_path(&final_name))?.is_some() {
                    return Err(StorageError::AlreadyExists(format!("volume {id} already exists on {export}")));
                }
                c.rename(&file_path(&partial_name), &file_path(&final_name))?;
                describe(c, &export, id, format)?
                    .ok_or_else(|| StorageError::Internal(format!("volume {id} vanished right after it was created")))
            })
            .await
    }

    pub(super) async fn delete(&self, volume: &VolumeInfo) -> Result<()> {
        let name = image_files::volume_file_name(volume.id, volume.format);
        self.clients.run(move |c| c.unlink(&file_path(&name)).map(drop)).await
    }

    pub(super) async fn resize(&self, volume: &VolumeInfo, new_size: u64) -> Result<VolumeInfo> {
        let url = self.volume_url(volume.id, volume.format);
        self.qemu
            .resize(&url, volume.format.into(), new_size, Preallocation::Off)
            .await
            .map_err(|e| self.tool_error(volume.id, e))?;
        self.lookup(volume.id).await?.ok_or_else(|| StorageError::NotFound(format!("volume {} disappeared during resize", volume.id)))
    }

    /// Copies the base's data into the clone and drops the link.
    pub(super) async fn flatten(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        let url = self.volume_url(volume.id, volume.format);
        crate::progress::flatten(&self.qemu, &url, volume.size_bytes, progress).await.map_err(|e| self.tool_error(volume.id, e))?;
        self.lookup(volume.id).await?.ok_or_else(|| StorageError::NotFound(format!("volume {} disappeared during flatten", volume.id)))
    }
}

/// A volume's facts from its file on the export (GETATTR, then the header).
fn describe(c: &mut NfsClient, export: &super::client::NfsExport, id: VolumeId, format: VolumeFormat) -> Result<Option<VolumeInfo>> {
    let name = image_files::volume_file_name(id, format);
    let path = file_path(&name);
    let Some(stat) = c.stat(&path)? else { return Ok(None) };
    let Some(mut reader) = c.open_read(&path)? else { return Ok(None) };
    let facts = FileFacts { len: stat.size, allocated_bytes: stat.used };
    image_files::describe(&mut reader, id, format, facts, export.qemu_url(&name), &export.qemu_url(""))
        .map(Some)
        .map_err(|e| StorageError::io(format!("cannot read the header of {name} on {export}"), e))
}

/// A file being built under its partial name: committed by a rename, removed
/// if the create fails or its future is dropped.
struct PartialNfsFile {
    clients: Arc<Clients>,
    name: String,
    committed: bool,
}

impl PartialNfsFile {
    /// Claims the name, removing a leftover of an earlier attempt at the same create.
    async fn claim(clients: &Arc<Clients>, name: String) -> Result<Self> {
        let path = file_path(&name);
        if clients.run(move |c| c.unlink(&path)).await? {
            tracing::info!(file = %name, "removed leftover partial file");
        }
        Ok(Self { clients: clients.clone(), name, committed: false })
    }

    async fn commit<T: Send + 'static>(mut self, work: impl FnOnce(&mut NfsClient) -> Result<T> + Send + 'static) -> Result<T> {
        let done = self.clients.run(work).await;
        self.committed = done.is_ok();
        done
    }
}

impl Drop for PartialNfsFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let (clients, path) = (self.clients.clone(), file_path(&self.name));
        // Off the runtime; a server that cannot be reached now leaves it to
        // the next activation's sweep.
        let remove = move || {
            if let Err(e) = clients.run_blocking(|c| c.unlink(&path)) {
                tracing::warn!(file = %path, error = %e, "cannot remove a half-made volume file; the pool's next activation will");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
