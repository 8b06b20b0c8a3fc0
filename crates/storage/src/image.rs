//! Untrusted disk images (DESIGN.md rule 10). An image from outside is only
//! used after it was found under an allowed import directory and inspected:
//! its real format must be the declared one, and it must not reference any
//! other file (backing file, external data file, VMDK extents elsewhere).

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::model::{ImageFormat, MAX_VOLUME_BYTES};
use crate::tools::QemuImg;
use crate::tools::qemu_img::ImageInfo;

/// An image that passed inspection.
#[derive(Debug, Clone)]
pub struct InspectedImage {
    /// Canonical path (no symlinks) under an import directory.
    pub path: PathBuf,
    pub format: ImageFormat,
    pub virtual_size: u64,
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

/// Inspects an image declared to be `declared`; see the module docs.
pub async fn inspect_untrusted(qemu: &QemuImg, path: &Path, declared: ImageFormat) -> Result<InspectedImage> {
    let refuse = |why: String| StorageError::invalid(format!("image {} refused: {why}", path.display()));
    let probe_err = |e: crate::error::ToolError| {
        refuse(format!("qemu-img cannot read it as an image ({})", e.stderr().lines().last().unwrap_or("")))
    };

    // What the content really is. A raw file that holds a qcow2 header is the
    // classic attack: probed later, its backing file would be read from the host.
    let probed = qemu.info_untrusted(path, None).await.map_err(probe_err)?;
    if probed.format != declared.as_str() {
        return Err(refuse(format!(
            "it was declared {declared} but its content is a {} image; import it with the right format",
            probed.format
        )));
    }

    let info = qemu.info_untrusted(path, Some(declared)).await.map_err(probe_err)?;
    check_self_contained(&info, path).map_err(refuse)?;
    if info.virtual_size == 0 || info.virtual_size > MAX_VOLUME_BYTES {
        return Err(refuse(format!("its virtual size {} bytes is not usable", info.virtual_size)));
    }

    if declared != ImageFormat::Raw {
        let report = qemu.check(path, declared).await.map_err(|e| {
            refuse(format!("its consistency check failed: {}", e.stderr().lines().last().unwrap_or("")))
        })?;
        if report.corruptions > 0 || report.check_errors > 0 {
            return Err(refuse(format!(
                "it is corrupt ({} corruptions, {} check errors)",
                report.corruptions, report.check_errors
            )));
        }
    }
    Ok(InspectedImage { path: path.to_owned(), format: declared, virtual_size: info.virtual_size })
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
