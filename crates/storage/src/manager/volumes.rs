//! Volume operations: the checks every backend shares (ids, sizes, one
//! operation per volume, idempotent create and delete, dependent clones,
//! space) before the backend does the work.

use super::*;
use crate::xml::BackingImage;
use crate::image::{ImageSource, InspectedImage};

/// What an existing volume must look like for a repeated create to succeed.
struct Expected {
    format: Option<VolumeFormat>,
    size_bytes: Option<u64>,
    backing: Option<VolumeId>,
}

impl StorageManager {

    pub(super) async fn volume(&self, backend: &dyn Backend, id: VolumeId) -> Result<VolumeInfo> {
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
        if let Some(refusal) = backend.refuses_creates() {
            return Err(refusal);
        }
        let caps = backend.capabilities();
        if let Some(format) = spec.format
            && !caps.formats.contains(&format) {
                return Err(StorageError::invalid(format!("{} pools do not store {format} volumes", backend.kind())));
            }
        let provisioning = spec.provisioning.unwrap_or(if caps.thin_provisioning { Provisioning::Thin } else { Provisioning::Thick });
        if provisioning == Provisioning::Thin && !caps.thin_provisioning {
            return Err(StorageError::invalid(format!("{} pools only make thick volumes", backend.kind())));
        }
        // Sizes as the storage allocates them (LVM: whole extents), so a
        // retried create finds the volume it made.
        let spec = VolumeSpec { size_bytes: spec.size_bytes.map(|s| backend.round_size(s)), provisioning: Some(provisioning), ..spec };
        let default_format = caps.formats[0];
        let _guard = self.locks.exclusive(pool, id, "a create")?;

        match source {
            VolumeSource::Empty => {
                let size = spec.size_bytes.ok_or_else(|| StorageError::invalid("an empty volume needs a size"))?;
                let format = spec.format.unwrap_or(default_format);
                let expected = Expected { format: Some(format), size_bytes: Some(size), backing: None };
                let looks_first = !backend.create_checks_itself();
                if looks_first {
                    if let Some(v) = self.existing(backend.as_ref(), id, &expected).await? {
                        return Ok(v);
                    }
                    self.ensure_space(backend.as_ref(), provisioning, size).await?;
                }
                let new = NewVolume { id, format, size_bytes: size, provisioning, content: NewVolumeContent::Empty };
                match backend.create_volume(&new, progress).await {
                    // A retried create: the same spec is the volume it made.
                    Err(StorageError::AlreadyExists(why)) if !looks_first => {
                        self.existing(backend.as_ref(), id, &expected).await?.ok_or(StorageError::AlreadyExists(why))
                    }
                    other => other,
                }
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
                        if provisioning == Provisioning::Thick {
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
                        self.create_copy(backend.as_ref(), id, format, size, provisioning, content, progress).await
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
                self.create_copy(backend.as_ref(), id, format, size, provisioning, content, progress).await
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
                let size = backend.round_size(self.size_from_source(spec.size_bytes, image.virtual_size, "image")?);
                self.ensure_space(backend.as_ref(), provisioning, size).await?;
                let new = NewVolume { id, format, size_bytes: size, provisioning, content: NewVolumeContent::Image(&image) };
                backend.create_volume(&new, progress).await
            }
            VolumeSource::OtherPool { pool: from, volume, with_snapshots } => {
                if from == pool {
                    return Err(StorageError::invalid("a copy into another pool needs another pool; clone within one"));
                }
                let format = spec.format.unwrap_or(default_format);
                let source = OtherPoolCopy { pool: from, volume, with_snapshots };
                self.create_from_other_pool(backend.as_ref(), id, source, spec, format, provisioning, progress).await
            }
            VolumeSource::Remote { host, port, export, psk, size_bytes } => {
                let format = spec.format.unwrap_or(default_format);
                let size = backend.round_size(self.size_from_source(spec.size_bytes, size_bytes, "exported volume")?);
                let psk_dir = crate::nbd::PskDir::create(&self.ctx.state_dir.join("pulls"), id.as_uuid(), &psk)?;
                let nbd = crate::nbd::NbdSource { host, port, export_name: export.to_string(), psk, psk_dir };
                let image = InspectedImage { source: ImageSource::Remote(Arc::new(nbd)), format: crate::model::ImageFormat::Raw, virtual_size: size_bytes };
                let content = NewVolumeContent::Image(&image);
                // A pull that breaks off is most likely the exporting node gone
                // (restarted, unreachable): worth trying again with a new export.
                self.create_copy(backend.as_ref(), id, format, size, provisioning, content, progress).await.map_err(|e| match e {
                    e @ (StorageError::Internal(_) | StorageError::Tool(_) | StorageError::Io { .. }) => {
                        StorageError::Unavailable(format!("the copy from the exporting node broke off: {e}"))
                    }
                    other => other,
                })
            }
        }
    }

    /// Moves a volume a VM has open into pool `to` of this node: an empty
    /// volume of its size is made there, the VM's disk is mirrored onto it
    /// and switched to it by `mirror`. The new volume is complete (the VM
    /// uses it) or, on any failure, deleted again while the VM stays on its
    /// source. The source is left for the caller to delete.
    pub async fn live_copy(
        &self,
        to: PoolId,
        from: PoolId,
        id: VolumeId,
        format: Option<VolumeFormat>,
        mirror: &dyn crate::manager::LiveMirror,
        progress: ProgressSink<'_>,
    ) -> Result<VolumeInfo> {
        if from == to {
            return Err(StorageError::invalid("a move needs another pool"));
        }
        let source_backend = self.backend(from).await?;
        let source = self.volume(source_backend.as_ref(), id).await?;
        let backend = self.backend(to).await?;
        let caps = backend.capabilities();
        let format = format.unwrap_or(if caps.formats.contains(&source.format) { source.format } else { caps.formats[0] });
        if !caps.formats.contains(&format) {
            return Err(StorageError::invalid(format!("{} pools do not store {format} volumes", backend.kind())));
        }
        let _guard = self.locks.exclusive(to, id, "a live move")?;
        // A destination left by an earlier try (a node restart) may still be
        // written by its mirror: the mirror is abandoned, the destination
        // made again from scratch.
        mirror.abandon(id).await?;
        if backend.get_volume(id).await?.is_some() {
            backend.delete_volume(id).await?;
        }
        self.ensure_space(backend.as_ref(), Provisioning::Thin, source.size_bytes).await?;
        let provisioning = if caps.thin_provisioning { Provisioning::Thin } else { Provisioning::Thick };
        let new = NewVolume { id, format, size_bytes: backend.round_size(source.size_bytes), provisioning, content: NewVolumeContent::Empty };
        let target = backend.create_volume(&new, &|_| {}).await?;
        let result = async {
            backend.prepare_disk(&target).await?;
            let (disk_source, driver) = backend.disk(&target)?;
            mirror.mirror(id, &xml::mirror_destination_xml(&disk_source, &driver), progress).await
        }
        .await;
        match result {
            Ok(()) => self.volume(backend.as_ref(), id).await,
            Err(e) => {
                if let Err(cleanup) = backend.delete_volume(id).await {
                    tracing::warn!(volume = %id, pool = %to, error = %cleanup, "cannot delete the destination of a failed live move");
                }
                Err(e)
            }
        }
    }

    /// A copy of a volume of another pool of this node into `backend`.
    #[allow(clippy::too_many_arguments)]
    async fn create_from_other_pool(
        &self,
        backend: &dyn Backend,
        id: VolumeId,
        source: OtherPoolCopy,
        spec: VolumeSpec,
        format: VolumeFormat,
        provisioning: Provisioning,
        progress: ProgressSink<'_>,
    ) -> Result<VolumeInfo> {
        let OtherPoolCopy { pool: from, volume, with_snapshots } = source;
        let source_backend = self.backend(from).await?;
        let _source_guard = self.locks.shared(from, volume, "a copy into another pool")?;
        let base = self.volume(source_backend.as_ref(), volume).await?;
        let location = source_backend.read_location(&base)?;
        let size = backend.round_size(self.size_from_source(spec.size_bytes, base.size_bytes, "source volume")?);
        let image;
        let content = if with_snapshots {
            // The qcow2 file itself, its snapshots inside.
            let self_contained = base.format == VolumeFormat::Qcow2 && format == VolumeFormat::Qcow2 && base.backing.is_none() && size == base.size_bytes;
            let path = match &location {
                crate::tools::qemu_img::VolumeLocation::File { path, .. } if self_contained => path,
                _ => {
                    return Err(StorageError::precondition(format!(
                        "volume {volume}'s snapshots move with it only as a self-contained qcow2 file of the same size (not a linked clone, not from a {} pool)",
                        source_backend.kind()
                    )));
                }
            };
            NewVolumeContent::WholeFile { path, source: &base }
        } else {
            image = InspectedImage { source: ImageSource::Volume(location), format: base.format.into(), virtual_size: base.size_bytes };
            NewVolumeContent::Image(&image)
        };
        self.create_copy(backend, id, format, size, provisioning, content, progress).await
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
    /// Writes an image over an existing volume (a storage array's LUN),
    /// replacing all it held; the caller has had the user confirm that.
    pub async fn write_image(
        &self,
        pool: PoolId,
        id: VolumeId,
        path: &std::path::Path,
        format: crate::model::ImageFormat,
        progress: ProgressSink<'_>,
    ) -> Result<VolumeInfo> {
        let backend = self.backend(pool).await?;
        let _guard = self.locks.exclusive(pool, id, "an image write")?;
        let volume = self.volume(backend.as_ref(), id).await?;
        let path = image::resolve_import_path(path, &self.ctx.import_dirs)?;
        progress(crate::model::Progress { phase: "inspecting", done_bytes: 0, total_bytes: 0 });
        let image = image::inspect_untrusted(&self.ctx.qemu_img, &path, format).await?;
        if image.virtual_size > volume.size_bytes {
            return Err(StorageError::invalid(format!(
                "the image is {} bytes, more than volume {id} holds ({} bytes)",
                image.virtual_size, volume.size_bytes
            )));
        }
        backend.write_image(&volume, &image, progress).await?;
        self.volume(backend.as_ref(), id).await
    }

    pub async fn inspect_image(&self, path: &std::path::Path, format: crate::model::ImageFormat) -> Result<image::InspectedImage> {
        let path = image::resolve_import_path(path, &self.ctx.import_dirs)?;
        image::inspect_untrusted(&self.ctx.qemu_img, &path, format).await
    }

    pub(super) async fn refuse_if_dependents(&self, backend: &dyn Backend, id: VolumeId, action: &str) -> Result<()> {
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
        backend.prepare_disk(&volume).await?;
        let (source, driver) = backend.disk(&volume)?;
        let backing_chain = if backend.backing_chain_in_disk_xml() { self.backing_chain(backend.as_ref(), &volume).await? } else { Vec::new() };
        let target_dev = xml::pick_target(bus, &used)?;
        Ok(DiskDefinition { source, driver, target_dev, bus, serial: id.to_string(), read_only, backing_chain })
    }

    /// The volumes under a linked clone, nearest first, as disk sources.
    async fn backing_chain(&self, backend: &dyn Backend, volume: &VolumeInfo) -> Result<Vec<BackingImage>> {
        const MAX_DEPTH: usize = 16;
        let mut chain = Vec::new();
        let mut next = volume.backing;
        while let Some(base_id) = next {
            if chain.len() == MAX_DEPTH {
                return Err(StorageError::Internal(format!("volume {} has a backing chain deeper than {MAX_DEPTH}", volume.id)));
            }
            let base = backend
                .get_volume(base_id)
                .await?
                .ok_or_else(|| StorageError::precondition(format!("volume {}'s base {base_id} is missing", volume.id)))?;
            chain.push(BackingImage { source: backend.disk(&base)?.0, format: base.format });
            next = base.backing;
        }
        Ok(chain)
    }
}

/// What a copy into another pool reads.
struct OtherPoolCopy {
    pool: PoolId,
    volume: VolumeId,
    with_snapshots: bool,
}
