//! File-system helpers: atomic writes and files that commit or vanish.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Makes a directory entry change (create, rename, unlink) durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("cannot sync directory {}", dir.display()), e))
}

/// Creates `dir` (and missing parents) 0700: for directories that hold
/// secrets. Directories that already exist keep their mode.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StorageError::io(format!("cannot create directory {}", dir.display()), e))
}

/// A directory only this process's user can enter, narrowed to 0700 if it
/// exists with a wider mode: for directories the daemon alone owns.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StorageError::io(format!("cannot make {} private", dir.display()), e))
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// content: temp file in the same directory, fsync, rename, fsync directory.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| StorageError::Internal(format!("{} has no parent", path.display())))?;
    let name = path.file_name().expect("a file path").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |what: &str, e| StorageError::io(format!("cannot {what} {}", tmp.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .map_err(|e| StorageError::io(format!("cannot rename {} to {}", tmp.display(), path.display()), e))?;
    fsync_dir(dir)
}

/// A file being built under a temporary name. [`PartialFile::commit`] moves it
/// to its final name; dropping it uncommitted (failure, cancellation) removes it.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// Claims `path`, removing a leftover of an earlier interrupted attempt.
    pub fn new(path: PathBuf) -> Result<Self> {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed leftover partial file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("cannot remove {}", path.display()), e)),
        }
        Ok(Self { path, committed: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames to `final_path`, which must not exist, and makes it durable.
    pub fn commit(mut self, final_path: &Path) -> Result<()> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| StorageError::io(format!("cannot sync {}", self.path.display()), e))?;
        renameat_with(CWD, &self.path, CWD, final_path, RenameFlags::NOREPLACE).map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                StorageError::AlreadyExists(format!("{} already exists", final_path.display()))
            } else {
                StorageError::io(format!("cannot rename to {}", final_path.display()), e.into())
            }
        })?;
        self.committed = true;
        fsync_dir(final_path.parent().expect("a file path"))
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = std::fs::remove_file(&self.path)
                && e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove partial file");
                }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn partial_file_vanishes_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".x.partial");
        {
            let pf = PartialFile::new(tmp.clone()).unwrap();
            std::fs::write(pf.path(), b"data").unwrap();
        }
        assert!(!tmp.exists());
        let pf = PartialFile::new(tmp.clone()).unwrap();
        std::fs::write(pf.path(), b"data").unwrap();
        let done = dir.path().join("x");
        pf.commit(&done).unwrap();
        assert_eq!(std::fs::read(&done).unwrap(), b"data");
        assert!(!tmp.exists());
    }

    #[test]
    fn commit_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("x");
        std::fs::write(&done, b"old").unwrap();
        let pf = PartialFile::new(dir.path().join(".x.partial")).unwrap();
        std::fs::write(pf.path(), b"new").unwrap();
        assert!(matches!(pf.commit(&done), Err(StorageError::AlreadyExists(_))));
        assert_eq!(std::fs::read(&done).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
