//! Volume files of a local pool: lookup, listing, capacity, create, delete, resize.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::LocalBackend;
use crate::backends::image_files::{self, FileFacts};
use crate::backend::{NewVolume, NewVolumeContent};
use crate::error::{Result, StorageError};
use crate::fsutil::{PartialFile, fsync_dir};
use crate::ids::VolumeId;
use crate::model::{ImageFormat, PoolCapacity, ProgressSink, Provisioning, VolumeFormat, VolumeInfo};
use crate::sparse_copy;
use crate::tools::qemu_img::{Backing, ConvertOptions, CreateOptions, ImportTarget, Preallocation};

impl LocalBackend {
    /// Runs file-system work on the blocking pool: a stalled disk or mount
    /// then holds a blocking thread, never the async runtime the node's
    /// other pools and calls run on. On a pool with its own workers (a
    /// mount), at most that many threads can wait on its storage; when all
    /// do, calls are refused at once instead of piling up more threads.
    pub(super) async fn fs<T: Send + 'static>(&self, work: impl FnOnce(&Path) -> Result<T> + Send + 'static) -> Result<T> {
        let worker = match &self.workers {
            Some(w) => Some(w.clone().try_acquire_owned().map_err(|_| {
                StorageError::Unavailable(format!(
                    "every worker of the pool at {} is waiting on its storage (a server that does not answer?)",
                    self.dir.display()
                ))
            })?),
            None => None,
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work(&dir)
        })
        .await
        .map_err(|e| StorageError::Internal(format!("file-system task failed: {e}")))?
    }

    /// The volume, described from its file.
    pub(super) async fn lookup(&self, id: VolumeId) -> Result<Option<VolumeInfo>> {
        self.fs(move |dir| find_volume(dir, id)).await
    }

    /// The pool's file system: total, available and used bytes (statvfs).
    pub(super) async fn statvfs(&self) -> Result<PoolCapacity> {
        self.fs(|dir| {
            let st = rustix::fs::statvfs(dir).map_err(|e| StorageError::io(format!("statvfs {}", dir.display()), e.into()))?;
            Ok(PoolCapacity {
                total_bytes: st.f_blocks * st.f_frsize,
                free_bytes: st.f_bavail * st.f_frsize,
                allocated_bytes: (st.f_blocks - st.f_bfree) * st.f_frsize,
                counted: None,
            })
        })
        .await
    }

    /// Every volume file in the pool, ordered by id (one directory read, no file opened).
    fn scan_ids(dir: &Path) -> Result<Vec<(VolumeId, VolumeFormat)>> {
        let read = |e| StorageError::io(format!("cannot read {}", dir.display()), e);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read)? {
            names.push(entry.map_err(read)?.file_name().to_string_lossy().into_owned());
        }
        Ok(image_files::volume_ids(names.iter().map(String::as_str)))
    }

    pub(super) async fn list_page(&self, after: Option<VolumeId>, limit: usize) -> Result<Vec<VolumeInfo>> {
        self.fs(move |dir| {
            let ids = Self::scan_ids(dir)?;
            let mut page = Vec::with_capacity(limit.min(ids.len()));
            for (id, format) in image_files::page(ids, after) {
                if page.len() == limit {
                    break;
                }
                if let Some(v) = describe(dir, id, format)? {
                    page.push(v);
                }
            }
            Ok(page)
        })
        .await
    }

    pub(super) async fn find_dependents(&self, id: VolumeId) -> Result<Vec<VolumeId>> {
        self.fs(move |dir| {
            let mut deps = Vec::new();
            for (other, format) in Self::scan_ids(dir)? {
                // Only a qcow2 can be a linked clone; one deleted meanwhile is skipped.
                if format == VolumeFormat::Qcow2 && describe(dir, other, format)?.is_some_and(|v| v.backing == Some(id)) {
                    deps.push(other);
                }
            }
            deps.sort_unstable();
            Ok(deps)
        })
        .await
    }

    pub(super) async fn create(&self, new: &NewVolume<'_>, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        let final_path = self.volume_path(new.id, new.format);
        let partial_path = self.partial_path(new.id, new.format);
        let partial = self.fs(move |_| PartialFile::new(partial_path)).await?;
        let preallocation = match new.provisioning {
            Provisioning::Thin => Preallocation::Off,
            Provisioning::Thick => Preallocation::Falloc,
        };
        let tool_err = |e| self.tool_error(new.id, e);
        let copied_size = match new.content {
            NewVolumeContent::Empty if preallocation == Preallocation::Off => {
                // The common create: a few writes here instead of a qemu-img process.
                let (path, format, size) = (partial.path().to_owned(), new.format, new.size_bytes);
                self.fs(move |_| write_empty(&path, format, size)).await?;
                new.size_bytes
            }
            NewVolumeContent::Empty => {
                let opts = CreateOptions {
                    format: new.format.into(),
                    size_bytes: Some(new.size_bytes),
                    preallocation,
                    backing: None,
                };
                self.qemu.create(partial.path(), &opts).await.map_err(tool_err)?;
                new.size_bytes
            }
            NewVolumeContent::LinkedClone { base } => {
                let base_name = image_files::volume_file_name(base.id, base.format);
                let opts = CreateOptions {
                    format: ImageFormat::Qcow2,
                    size_bytes: Some(new.size_bytes),
                    preallocation: Preallocation::Off,
                    backing: Some(Backing { file: &base_name, format: base.format.into() }),
                };
                self.qemu.create(partial.path(), &opts).await.map_err(|e| self.tool_error(base.id, e))?;
                new.size_bytes
            }
            NewVolumeContent::Copy { source, snapshot } => {
                let source_path = self.volume_path(source.id, source.format);
                // A self-contained image copied as it is: the file itself, sparse, in the kernel.
                let whole_file = snapshot.is_none()
                    && source.backing.is_none()
                    && source.snapshot_count == 0
                    && new.format == source.format
                    && preallocation == Preallocation::Off;
                if whole_file {
                    // QEMU's lock tells whether a running VM writes to it: never copy a disk mid-write.
                    self.qemu.info(&source_path, source.format.into(), false).await.map_err(|e| self.tool_error(source.id, e))?;
                    copy_file(&source_path, partial.path(), self.qemu.copy_rate(), progress).await?;
                } else {
                    let opts = ConvertOptions {
                        source: &source_path,
                        source_format: source.format.into(),
                        snapshot: snapshot.map(|s| s.as_str()),
                        target: partial.path(),
                        target_format: new.format.into(),
                        preallocation,
                        target_exists: false,
                    };
                    crate::progress::convert(&self.qemu, &opts, source.size_bytes, progress)
                        .await
                        .map_err(|e| self.tool_error(source.id, e))?;
                }
                source.size_bytes
            }
            NewVolumeContent::WholeFile { path, source } => {
                // QEMU's lock tells whether a running VM writes to it: never copy a disk mid-write.
                self.qemu.info(path, source.format.into(), false).await.map_err(|e| self.tool_error(source.id, e))?;
                copy_file(path, partial.path(), self.qemu.copy_rate(), progress).await?;
                source.size_bytes
            }
            NewVolumeContent::Image(image) => {
                // The target is made first, at its final size; the confined
                // qemu-img only fills it.
                let (path, format, size) = (partial.path().to_owned(), new.format, new.size_bytes);
                if preallocation == Preallocation::Off {
                    let path = path.clone();
                    self.fs(move |_| write_empty(&path, format, size)).await?;
                } else {
                    let opts = CreateOptions { format: format.into(), size_bytes: Some(size), preallocation, backing: None };
                    self.qemu.create(&path, &opts).await.map_err(tool_err)?;
                }
                let target = self
                    .fs(move |_| {
                        std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(&path)
                            .map_err(|e| StorageError::io(format!("cannot open {}", path.display()), e))
                    })
                    .await?;
                crate::progress::import(&self.qemu, image, ImportTarget::File(&target), new.format.into(), progress)
                    .await
                    .map_err(|e| self.tool_error(new.id, e))?;
                new.size_bytes
            }
        };
        if new.size_bytes > copied_size {
            self.qemu
                .resize(partial.path(), new.format.into(), new.size_bytes, preallocation)
                .await
                .map_err(tool_err)?;
        }
        let (id, format) = (new.id, new.format);
        self.fs(move |dir| {
            partial.commit(&final_path)?;
            describe(dir, id, format)?.ok_or_else(|| StorageError::Internal(format!("volume {id} vanished right after it was created")))
        })
        .await
    }

    pub(super) async fn delete(&self, volume: &VolumeInfo) -> Result<()> {
        let path = self.volume_path(volume.id, volume.format);
        // qemu-img info without --force-share fails while a VM holds the image.
        self.qemu.info(&path, volume.format.into(), false).await.map_err(|e| self.tool_error(volume.id, e))?;
        self.fs(move |dir| match std::fs::remove_file(&path) {
            Ok(()) => fsync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("cannot delete {}", path.display()), e)),
        })
        .await
    }

    /// Copies the backing file's data into the overlay and drops the link
    /// (`qemu-img rebase -b ""`, the safe mode that merges the data).
    pub(super) async fn flatten(&self, volume: &VolumeInfo, progress: ProgressSink<'_>) -> Result<VolumeInfo> {
        let path = self.volume_path(volume.id, volume.format);
        crate::progress::flatten(&self.qemu, &path, volume.size_bytes, progress).await.map_err(|e| self.tool_error(volume.id, e))?;
        let (id, format) = (volume.id, volume.format);
        self.fs(move |dir| describe(dir, id, format)?.ok_or_else(|| StorageError::NotFound(format!("volume {id} disappeared during flatten"))))
            .await
    }

    pub(super) async fn resize(&self, volume: &VolumeInfo, new_size: u64) -> Result<VolumeInfo> {
        let path = self.volume_path(volume.id, volume.format);
        // A volume whose space is all allocated was made thick: keep it so.
        let preallocation = if volume.allocated_bytes >= volume.size_bytes && volume.backing.is_none() {
            Preallocation::Falloc
        } else {
            Preallocation::Off
        };
        self.qemu
            .resize(&path, volume.format.into(), new_size, preallocation)
            .await
            .map_err(|e| self.tool_error(volume.id, e))?;
        let (id, format) = (volume.id, volume.format);
        self.fs(move |dir| describe(dir, id, format)?.ok_or_else(|| StorageError::NotFound(format!("volume {id} disappeared during resize"))))
            .await
    }
}

/// Copies `src` into the new file `dst` with [`sparse_copy::copy_sparse`] on a
/// blocking thread at most at `rate` bytes/s, forwarding progress (data
/// bytes). Dropping the future stops the copy at its next chunk.
async fn copy_file(src: &Path, dst: &Path, rate: Option<u64>, progress: ProgressSink<'_>) -> Result<()> {
    let (src, dst) = (src.to_owned(), dst.to_owned());
    crate::progress::run_blocking(progress, move |cancel, report| {
        let io = |what: &str, p: &Path, e| StorageError::io(format!("cannot {what} {}", p.display()), e);
        let from = std::fs::File::open(&src).map_err(|e| io("open", &src, e))?;
        let to = std::fs::OpenOptions::new().write(true).create_new(true).open(&dst).map_err(|e| io("create", &dst, e))?;
        let throttle = crate::throttle::Throttle::new(rate);
        sparse_copy::copy_sparse(&from, &to, cancel, |done, total| {
            report(done, total);
            throttle.pace(done, cancel);
        })
        .map_err(|e| io("copy into", &dst, e))
    })
    .await
}

fn find_volume(dir: &Path, id: VolumeId) -> Result<Option<VolumeInfo>> {
    for format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
        if let Some(v) = describe(dir, id, format)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// A new, empty, thin volume file: a raw file of `size` bytes (a hole), or an
/// empty qcow2 image ([`crate::qcow2::write_empty`]).
fn write_empty(path: &Path, format: VolumeFormat, size: u64) -> Result<()> {
    let io = |e| StorageError::io(format!("cannot create {}", path.display()), e);
    let mut file = std::fs::File::create_new(path).map_err(io)?;
    match format {
        VolumeFormat::Raw => file.set_len(size).map_err(io),
        VolumeFormat::Qcow2 => crate::qcow2::write_empty(&mut file, size).map_err(io),
    }
}

/// Reads a volume's facts from its file: the size from the qcow2 header (or
/// the file length for raw), the space used from the file's blocks.
fn describe(dir: &Path, id: VolumeId, format: VolumeFormat) -> Result<Option<VolumeInfo>> {
    let path = dir.join(image_files::volume_file_name(id, format));
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("cannot open {}", path.display()), e)),
    };
    let meta = file.metadata().map_err(|e| StorageError::io(format!("cannot stat {}", path.display()), e))?;
    let facts = FileFacts { len: meta.len(), allocated_bytes: meta.blocks() * 512 };
    image_files::describe(&mut file, id, format, facts, path.display().to_string(), "")
        .map(Some)
        .map_err(|e| StorageError::io(format!("cannot read the qcow2 header of {}", path.display()), e))
}
