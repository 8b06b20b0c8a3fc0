//! Untrusted disk images (DESIGN.md rule 10). An image from outside is only
//! used after it was found under an allowed import directory and inspected:
//! its real format must be the declared one, and it must not reference any
//! other file (backing file, external data file, VMDK extents elsewhere).
//!
//! The bytes checked are the bytes copied: the file is opened once, without
//! following any symbolic link, and every qemu-img run on it (inspection and
//! copy) reads that open file (as /proc/self/fd/N), confined so that it can
//! open nothing else. A file swapped in after the inspection is never read,
//! and a reference slipped into the open file is refused by the kernel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::model::{ImageFormat, MAX_VOLUME_BYTES};
use crate::tools::QemuImg;
use crate::tools::qemu_img::ImageInfo;

/// An image file opened for import: the one open file every step reads.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// Canonical path (no symlinks) under an import directory, for messages.
    pub path: PathBuf,
    file: Arc<std::fs::File>,
}

impl ImageFile {
    /// Opens `canonical` (from [`resolve_import_path`]) refusing any symbolic
    /// link on the way, and checks it is a regular file.
    pub fn open(canonical: &Path) -> Result<Self> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let fd = rustix::fs::openat2(
            rustix::fs::CWD,
            canonical,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| StorageError::invalid(format!("image {} cannot be opened without following links: {e}", canonical.display())))?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|e| StorageError::io(format!("cannot stat {}", canonical.display()), e))?;
        if !meta.is_file() {
            return Err(StorageError::invalid(format!("image path {} is not a regular file", canonical.display())));
        }
        Ok(Self { path: canonical.to_owned(), file: Arc::new(file) })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// The path a child given this descriptor opens it by.
    pub fn child_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.raw_fd()))
    }
}

/// What a new volume is filled from: an image from outside that passed
/// inspection (still open), or another pool's volume on this node.
#[derive(Debug, Clone)]
pub struct InspectedImage {
    pub source: ImageSource,
    pub format: ImageFormat,
    pub virtual_size: u64,
}

#[derive(Debug, Clone)]
pub enum ImageSource {
    Outside(ImageFile),
    Volume(crate::tools::qemu_img::VolumeLocation),
    /// A volume another node exports (see `nbd`).
    Remote(std::sync::Arc<crate::nbd::NbdSource>),
}

impl ImageSource {
    pub fn as_import(&self) -> crate::tools::qemu_img::ImportSource<'_> {
        match self {
            Self::Outside(file) => crate::tools::qemu_img::ImportSource::Outside(file),
            Self::Volume(location) => crate::tools::qemu_img::ImportSource::Volume(location),
            Self::Remote(nbd) => crate::tools::qemu_img::ImportSource::Remote(nbd),
        }
    }
}

/// Resolves `requested` (absolute) and checks that the file it names lies under
/// one of `import_dirs` once every symlink is resolved, and is a regular file.
pub fn resolve_import_path(requested: &Path, import_dirs: &[PathBuf]) -> Result<PathBuf> {
    if !requested.is_absolute() {
        return Err(StorageError::invalid(format!(
            "image path {} must be absolute",
            requested.display()
        )));
    }
    let outside = || {
        let dirs: Vec<_> = import_dirs.iter().map(|d| d.display().to_string()).collect();
        StorageError::invalid(format!(
            "image path {} is not inside an import directory of this node ({}); copy the image \
             into one of them first",
            requested.display(),
            if dirs.is_empty() { "none configured".to_owned() } else { dirs.join(", ") }
        ))
    };
    let canonical = match requested.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound(format!("image file {} does not exist", requested.display())));
        }
        Err(e) => return Err(StorageError::io(format!("cannot resolve {}", requested.display()), e)),
    };
    let inside = import_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|dir| canonical.starts_with(&dir) && canonical != dir);
    if !inside {
        return Err(outside());
    }
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| StorageError::io(format!("cannot stat {}", canonical.display()), e))?;
    if !meta.is_file() {
        return Err(StorageError::invalid(format!("image path {} is not a regular file", requested.display())));
    }
    Ok(canonical)
}

/// Opens and inspects an image declared to be `declared`; see the module docs.
pub async fn inspect_untrusted(qemu: &QemuImg, path: &Path, declared: ImageFormat) -> Result<InspectedImage> {
    let file = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || ImageFile::open(&path))
            .await
            .map_err(|e| StorageError::Internal(format!("open task failed: {e}")))??
    };
    let refuse = |why: String| StorageError::invalid(format!("image {} refused: {why}", path.display()));
    let own = file.child_path().display().to_string();
    let probe_err = |e: crate::error::ToolError| {
        let said = e.stderr().lines().last().unwrap_or("").to_owned();
        // Confined, qemu-img can open no other file: an image that needs one
        // (VMDK extents, a backing file) fails to open, naming it.
        match other_file_named(&said, &own) {
            Some(other) => refuse(format!("it keeps data in another file ({other}); import a single, self-contained image")),
            None => refuse(format!("qemu-img cannot read it as an image ({said})")),
        }
    };

    // What the content really is. A raw file that holds a qcow2 header is the
    // classic attack: probed later, its backing file would be read from the host.
    let probed = qemu.info_untrusted(&file, None).await.map_err(probe_err)?;
    if probed.format != declared.as_str() {
        return Err(refuse(format!(
            "it was declared {declared} but its content is a {} image; import it with the right format",
            probed.format
        )));
    }

    let info = qemu.info_untrusted(&file, Some(declared)).await.map_err(probe_err)?;
    check_self_contained(&info, &file.child_path()).map_err(refuse)?;
    if info.virtual_size == 0 || info.virtual_size > MAX_VOLUME_BYTES {
        return Err(refuse(format!("its virtual size {} bytes is not usable", info.virtual_size)));
    }

    if declared != ImageFormat::Raw {
        let report = qemu.check(&file, declared).await.map_err(|e| {
            refuse(format!("its consistency check failed: {}", e.stderr().lines().last().unwrap_or("")))
        })?;
        if report.corruptions > 0 || report.check_errors > 0 {
            return Err(refuse(format!(
                "it is corrupt ({} corruptions, {} check errors)",
                report.corruptions, report.check_errors
            )));
        }
    }
    Ok(InspectedImage { source: ImageSource::Outside(file), format: declared, virtual_size: info.virtual_size })
}

/// The file other than `own` that qemu-img could not open, from its message
/// ("Could not open 'X': ...").
fn other_file_named(stderr: &str, own: &str) -> Option<String> {
    stderr
        .split("Could not open '")
        .skip(1)
        .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name))
        .find(|name| *name != own)
        .map(|name| Path::new(name).file_name().map_or(name.to_owned(), |n| n.to_string_lossy().into_owned()))
}

fn check_self_contained(info: &ImageInfo, path: &Path) -> std::result::Result<(), String> {
    if let Some(backing) = &info.backing_filename {
        return Err(format!("it references a backing file ({backing:?}); flatten it before import"));
    }
    if info.encrypted {
        return Err("it is encrypted".into());
    }
    let Some(specific) = &info.format_specific else { return Ok(()) };
    let data = &specific.data;
    if let Some(data_file) = &data.data_file {
        return Err(format!("it references an external data file ({data_file:?})"));
    }
    if data.corrupt {
        return Err("QEMU marked it corrupt".into());
    }
    if specific.kind == "vmdk" {
        match data.create_type.as_deref() {
            Some("monolithicSparse" | "streamOptimized") => {}
            other => {
                return Err(format!(
                    "VMDK type {} keeps its data in other files; export it as a single-file \
                     (monolithicSparse or streamOptimized) VMDK",
                    other.unwrap_or("unknown")
                ));
            }
        }
        // A single-file VMDK names itself as its only extent.
        if let Some(extent) = data.extents.iter().find(|e| Path::new(&e.filename) != path) {
            return Err(format!("its extent {:?} is another file", extent.filename));
        }
    }
    Ok(())
}
