//! A loop device over a sparse file in a temp dir, detached when dropped
//! (loop devices are host-wide: never assume a number, always detach).

use std::io;
use std::path::PathBuf;
use std::process::Command;

pub struct LoopDevice {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    pub fn attach(size_mib: u64) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-loop-").tempdir()?;
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)?.set_len(size_mib << 20)?;
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&file).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(Self { path, _dir: dir })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
