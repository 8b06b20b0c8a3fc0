//! Volumes read from another node: the source node exports a volume
//! read-only over NBD (qemu-nbd), reachable only with TLS keyed by a
//! one-use pre-shared key (TLS-PSK) that the control plane gives to both
//! nodes for one move; the target node pulls it with qemu-img. The key is
//! kept in a 0600 file of a 0700 directory under the node's state dir, as
//! QEMU's `tls-creds-psk` reads it (`keys.psk`: `identity:hexkey`), and
//! removed when the export or the pull ends. It never appears on a command
//! line.

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// The id of the TLS credentials object on QEMU's command line.
pub const TLS_CREDS_ID: &str = "lqnbd";

/// A one-use TLS-PSK identity and key (64 hex digits: 32 random bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    identity: String,
    key_hex: String,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk").field("identity", &self.identity).field("key_hex", &"<redacted>").finish()
    }
}

impl Psk {
    pub fn parse(identity: &str, key_hex: &str) -> Result<Self> {
        let ok_identity = !identity.is_empty() && identity.len() <= 64 && identity.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_identity {
            return Err(StorageError::invalid("the export's PSK identity must be 1-64 letters, digits or dashes"));
        }
        if key_hex.len() != 64 || !key_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::invalid("the export's PSK key must be 64 hex digits (32 bytes)"));
        }
        Ok(Self { identity: identity.to_owned(), key_hex: key_hex.to_ascii_lowercase() })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// The directory QEMU reads a PSK from; removed on drop.
#[derive(Debug)]
pub struct PskDir {
    dir: PathBuf,
}

impl PskDir {
    /// Makes `parent/<id>/keys.psk` (the directory 0700, the file 0600).
    pub fn create(parent: &Path, id: &uuid::Uuid, psk: &Psk) -> Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |e: std::io::Error| StorageError::Internal(format!("cannot keep the export key under {}: {e}", parent.display()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io)?;
        let dir = parent.join(id.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io)?;
        let made = Self { dir };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(made.dir.join("keys.psk")).map_err(io)?;
        writeln!(file, "{}:{}", psk.identity, psk.key_hex).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(made)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The `--object` value of QEMU's TLS credentials read from here.
    pub fn tls_object(&self, endpoint: &str, identity: Option<&str>) -> std::ffi::OsString {
        let mut object = std::ffi::OsString::from(format!("tls-creds-psk,id={TLS_CREDS_ID},endpoint={endpoint},dir="));
        // Commas are doubled in QEMU option values.
        object.push(self.dir.to_string_lossy().replace(',', ",,"));
        if let Some(identity) = identity {
            object.push(format!(",username={identity}"));
        }
        object
    }
}

impl Drop for PskDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove an export key's directory");
        }
    }
}

/// A volume exported by another node, as a pull reads it.
#[derive(Debug)]
pub struct NbdSource {
    pub host: std::net::IpAddr,
    pub port: u16,
    pub export_name: String,
    pub psk: Psk,
    /// Where the client's copy of the key is kept during the pull.
    pub psk_dir: PskDir,
}

impl NbdSource {
    /// The image option string qemu-img opens: raw data over NBD with TLS.
    pub fn image_opts(&self) -> String {
        let host = match self.host {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        format!(
            "driver=raw,file.driver=nbd,file.server.type=inet,file.server.host={host},file.server.port={},file.export={},file.tls-creds={TLS_CREDS_ID}",
            self.port, self.export_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_kept_private() {
        assert!(Psk::parse("move-1", &"ab".repeat(32)).is_ok());
        for (id, key) in [("", "ab".repeat(32)), ("a:b", "ab".repeat(32)), ("a,b", "ab".repeat(32)), ("m", "ab".repeat(31)), ("m", "zz".repeat(32))] {
            assert!(Psk::parse(id, &key).is_err(), "{id:?} {key}");
        }
        let psk = Psk::parse("move-1", &"AB".repeat(32)).unwrap();
        assert!(!format!("{psk:?}").contains("ab"), "the key is never printed");
        let parent = tempfile::tempdir().unwrap();
        let dir = PskDir::create(parent.path(), &uuid::Uuid::new_v4(), &psk).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("keys.psk");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("move-1:{}\n", "ab".repeat(32)));
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists(), "removed with its owner");
    }
}
