//! A loop device over a sparse file in a temp dir, detached when dropped
//! (loop devices are host-wide: never assume a number, always detach).

use std::io;
use std::path::PathBuf;
use std::process::Command;

pub struct LoopDevice {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl LoopDevice {
    pub fn attach(size_mib: u64) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-loop-").tempdir()?;
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)?.set_len(size_mib << 20)?;
        let mut device = Self::over(&file)?;
        device._dir = Some(dir);
        Ok(device)
    }

    /// A loop device over an existing file (an iSCSI LUN's backing file:
    /// what the device holds is what the target serves).
    pub fn over(file: &std::path::Path) -> io::Result<Self> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Self { path, _dir: None })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
