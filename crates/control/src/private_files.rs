//! Files that hold a key, a token or a private key: 0600 in a 0700
//! directory whatever the umask, made once and never rewritten in place.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context as _;
use limiquantix_storage::StorageError;
use limiquantix_storage::fsutil::{self, PartialFile};

/// The file's text, or None if it does not exist. A file others can read
/// is refused: its secret must be taken as leaked.
pub fn read(path: &Path, holds: &str) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            anyhow::ensure!(
                mode & 0o077 == 0,
                "{} holds {holds} and is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a new file (0600) in one step. Returns false, writing nothing, if
/// it exists already (another replica sharing the directory made it first).
pub fn create(path: &Path, content: &[u8]) -> anyhow::Result<bool> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fsutil::create_private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let staging = PartialFile::new(dir.join(format!(".{name}-{}", uuid::Uuid::new_v4())))?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(staging.path())?;
    file.write_all(content)?;
    file.sync_all()?;
    match staging.commit(path) {
        Ok(()) => Ok(true),
        Err(StorageError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
