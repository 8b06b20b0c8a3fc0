//! Where a local pool lives: the pool directory, checked against the node's roots.

use std::path::{Component, Path, PathBuf};

use crate::backends::OpenMode;
use crate::error::{Result, StorageError};

/// Resolves the pool directory: absolute, inside one of `roots` once symlinks
/// are resolved, and a directory. In [`OpenMode::Create`] a missing directory
/// is created (its existing ancestors must already be inside a root).
pub fn resolve_pool_dir(requested: &Path, roots: &[PathBuf], mode: OpenMode) -> Result<PathBuf> {
    let show = requested.display();
    if !requested.is_absolute() {
        return Err(StorageError::invalid(format!("pool path {show} must be absolute")));
    }
    if requested.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(StorageError::invalid(format!("pool path {show} must not contain '.' or '..'")));
    }
    let roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let check_inside = |canonical: &Path| -> Result<()> {
        if roots.iter().any(|r| canonical.starts_with(r)) {
            return Ok(());
        }
        let list: Vec<_> = roots.iter().map(|r| r.display().to_string()).collect();
        Err(StorageError::invalid(format!(
            "pool path {show} resolves to {}, which is outside this node's local pool roots ({}); \
             choose a directory inside one of them",
            canonical.display(),
            if list.is_empty() { "none configured".to_owned() } else { list.join(", ") }
        )))
    };

    match requested.canonicalize() {
        Ok(canonical) => {
            check_inside(&canonical)?;
            if !canonical.is_dir() {
                return Err(StorageError::invalid(format!("pool path {show} is not a directory")));
            }
            Ok(canonical)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if mode == OpenMode::Reopen {
                return Err(StorageError::Unavailable(format!(
                    "pool directory {show} is missing; if it is on a separate disk, mount it"
                )));
            }
            // Create from the deepest existing ancestor, resolved, so that a
            // symlinked ancestor cannot lead the new directory out of the roots.
            let mut existing = requested.to_path_buf();
            let mut missing = Vec::new();
            while !existing.exists() {
                missing.push(existing.file_name().expect("absolute path below /").to_owned());
                existing.pop();
            }
            let ancestor = existing
                .canonicalize()
                .map_err(|e| StorageError::io(format!("cannot resolve {}", existing.display()), e))?;
            check_inside(&ancestor)?;
            let target = missing.iter().rev().fold(ancestor, |p, c| p.join(c));
            std::fs::create_dir_all(&target)
                .map_err(|e| StorageError::io(format!("cannot create pool directory {}", target.display()), e))?;
            let canonical = target
                .canonicalize()
                .map_err(|e| StorageError::io(format!("cannot resolve {}", target.display()), e))?;
            check_inside(&canonical)?;
            Ok(canonical)
        }
        Err(e) => Err(StorageError::io(format!("cannot resolve pool path {show}"), e)),
    }
}

