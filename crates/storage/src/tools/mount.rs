//! mount(8) and umount(8) for the kernel NFS mounts of kernel-mode pools:
//! argv built from checked parts only (the options string comes from typed
//! fields, see `backends::nfs::config`), every run bounded by a timeout after
//! which the child is killed, and mount state read from mountinfo.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ToolCommand;
use crate::error::ToolError;

#[derive(Debug, Clone)]
pub struct Mounter {
    pub timeout: Duration,
}

impl Mounter {
    /// `mount --no-canonicalize -t nfs -o OPTIONS -- SOURCE TARGET`. Paths
    /// are used as given (the node's own), so the mount table shows exactly
    /// TARGET and nothing stats a mount that may hang.
    pub fn nfs_argv(source: &str, options: &str, target: &Path) -> Vec<OsString> {
        let mut argv: Vec<OsString> =
            ["--no-canonicalize", "-t", "nfs", "-o", options, "--", source].iter().map(OsString::from).collect();
        argv.push(target.as_os_str().to_owned());
        argv
    }

    pub async fn mount_nfs(&self, source: &str, options: &str, target: &Path) -> Result<(), ToolError> {
        ToolCommand::new("mount", self.timeout).args(Self::nfs_argv(source, options, target)).run().await.map(drop)
    }

    /// `umount --no-canonicalize -- TARGET`: without a stat of a mount that
    /// may hang, so a busy mount answers EBUSY at once.
    pub async fn unmount(&self, target: &Path) -> Result<(), ToolError> {
        ToolCommand::new("umount", self.timeout).args(["--no-canonicalize", "--"]).arg(target).run().await.map(drop)
    }

    /// Forced and lazy (`umount -f -l`): aborts what waits on a dead
    /// server and detaches the mount even while it is busy.
    pub async fn unmount_forced(&self, target: &Path) -> Result<(), ToolError> {
        ToolCommand::new("umount", self.timeout).args(["--no-canonicalize", "-f", "-l", "--"]).arg(target).run().await.map(drop)
    }
}

/// Whether something is mounted on `target`, from the calling thread's mountinfo
/// (reading it never touches the mount itself, so a dead server cannot
/// block it).
pub fn is_mounted(target: &Path) -> std::io::Result<bool> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    Ok(mount_points(&info).any(|p| p == target))
}

/// The mount points of a mountinfo text (5th field, octal escapes undone).
fn mount_points(info: &str) -> impl Iterator<Item = PathBuf> + '_ {
    info.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape)
}

fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_argv_is_fixed_words_and_checked_parts() {
        let argv = Mounter::nfs_argv("nas01:/srv/vm", "vers=4.1,hard,proto=tcp", Path::new("/var/lib/limiquantix/nfs/p1"));
        let words: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(words, ["--no-canonicalize", "-t", "nfs", "-o", "vers=4.1,hard,proto=tcp", "--", "nas01:/srv/vm", "/var/lib/limiquantix/nfs/p1"]);
    }

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = "36 25 0:32 / /mnt/with\\040space rw - tmpfs tmpfs rw\n37 25 0:33 / /var/lib/lq/nfs/p1 rw - nfs nas:/srv rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(points, [PathBuf::from("/mnt/with space"), PathBuf::from("/var/lib/lq/nfs/p1")]);
    }
}
