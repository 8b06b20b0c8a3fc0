//! LVM, typed: every command confined to one device by a private config
//! (its filter accepts that device only, so the host's other disks are never
//! scanned or touched), argv only, reports read as JSON, each run bounded by
//! a timeout. Used by iSCSI pools in LVM mode, where one LUN holds the
//! volume group.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ToolCommand;
use crate::error::{Result, StorageError, ToolError};

#[derive(Debug, Clone)]
pub struct Lvm {
    config_dir: PathBuf,
    device: PathBuf,
    timeout: Duration,
}

/// A volume group's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgInfo {
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub extent_bytes: u64,
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvInfo {
    pub name: String,
    pub size_bytes: u64,
    pub path: PathBuf,
}

/// Checks a volume group name (LVM's rules, no leading '-').
pub fn check_vg_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b));
    if ok { Ok(()) } else { Err(StorageError::invalid(format!("{name:?} is not a volume group name: letters, digits and + _ . - (not first)"))) }
}

impl Lvm {
    /// Writes the private config under `config_dir` that lets LVM see only
    /// `device`. `activation` is off where the kernel has no device-mapper
    /// (metadata only).
    pub fn new(config_dir: &Path, device: &Path, activation: bool, timeout: Duration) -> Result<Self> {
        let dev = device.to_str().filter(|d| d.starts_with('/') && !d.contains(['|', '"', '\n', '\\']));
        let Some(dev) = dev else {
            return Err(StorageError::invalid(format!("{} cannot be an LVM device path", device.display())));
        };
        // The filter is a regular expression: the path matches only itself.
        let escaped: String = dev.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '/' { vec![c] } else { vec!['\\', c] }).collect();
        let lock = config_dir.join("lock");
        std::fs::create_dir_all(&lock).map_err(|e| StorageError::io(format!("cannot create {}", lock.display()), e))?;
        let conf = format!(
            "devices {{\n  dir = \"/dev\"\n  scan = [ \"/dev\" ]\n  obtain_device_list_from_udev = 0\n  external_device_info_source = \"none\"\n  \
             use_devicesfile = 0\n  hints = \"none\"\n  filter = [ \"a|^{escaped}$|\", \"r|.*|\" ]\n  global_filter = [ \"a|^{escaped}$|\", \"r|.*|\" ]\n}}\n\
             global {{\n  activation = {}\n  locking_dir = \"{}\"\n  event_activation = 0\n}}\n\
             activation {{\n  udev_sync = 0\n  udev_rules = 0\n  monitoring = 0\n}}\n\
             backup {{\n  backup = 1\n  backup_dir = \"{}\"\n  archive = 0\n}}\n",
            u8::from(activation),
            lock.display(),
            config_dir.join("backup").display()
        );
        crate::fsutil::atomic_write(&config_dir.join("lvm.conf"), conf.as_bytes(), 0o600)?;
        Ok(Self { config_dir: config_dir.to_owned(), device: device.to_owned(), timeout })
    }

    fn command(&self, program: &str) -> ToolCommand {
        ToolCommand::new(program, self.timeout)
            .env("LVM_SYSTEM_DIR", &self.config_dir)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
    }

    fn lv(vg: &str, lv: &str) -> String {
        format!("{vg}/{lv}")
    }

    pub async fn pvcreate(&self) -> Result<()> {
        self.command("pvcreate").arg("--").arg(&self.device).run().await.map(drop).map_err(|e| self.error(e))
    }

    /// Wipes the LVM label pvcreate wrote (the undo of a failed group create).
    pub async fn pvremove(&self) -> Result<()> {
        self.command("pvremove").args(["-y", "--"]).arg(&self.device).run().await.map(drop).map_err(|e| self.error(e))
    }

    pub async fn vgcreate(&self, vg: &str) -> Result<()> {
        check_vg_name(vg)?;
        self.command("vgcreate").args(["--", vg]).arg(&self.device).run().await.map(drop).map_err(|e| self.error(e))
    }

    pub async fn vgremove(&self, vg: &str) -> Result<()> {
        check_vg_name(vg)?;
        self.command("vgremove").args(["-f", "-y", "--", vg]).run().await.map(drop).map_err(|e| self.error(e))
    }

    /// The group, or None if the device holds no such group.
    pub async fn vgs(&self, vg: &str) -> Result<Option<VgInfo>> {
        check_vg_name(vg)?;
        let out = self
            .command("vgs")
            .args(["--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,vg_extent_size"])
            .run()
            .await
            .map_err(|e| self.error(e))?;
        let report: Report<VgRow> = parse(&out.stdout)?;
        report
            .rows()
            .into_iter()
            .find(|r| r.vg_name == vg)
            .map(|r| Ok(VgInfo { size_bytes: number(&r.vg_size)?, free_bytes: number(&r.vg_free)?, extent_bytes: number(&r.vg_extent_size)? }))
            .transpose()
    }

    /// The group's logical volumes.
    pub async fn lvs(&self, vg: &str) -> Result<Vec<LvInfo>> {
        check_vg_name(vg)?;
        let out = self
            .command("lvs")
            .args(["--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,vg_name,lv_size,lv_path", "--", vg])
            .run()
            .await
            .map_err(|e| self.error(e))?;
        let report: Report<LvRow> = parse(&out.stdout)?;
        report
            .rows()
            .into_iter()
            .filter(|r| r.vg_name == vg)
            .map(|r| Ok(LvInfo { size_bytes: number(&r.lv_size)?, path: PathBuf::from(&r.lv_path), name: r.lv_name }))
            .collect()
    }

    /// A new logical volume of at least `size_bytes` (LVM rounds up to extents).
    pub async fn lvcreate(&self, vg: &str, lv: &str, size_bytes: u64) -> Result<()> {
        check_vg_name(vg)?;
        check_vg_name(lv)?;
        self.command("lvcreate")
            .args(["-Zn", "-Wn", "--yes", "-n", lv, "-L"])
            .arg(format!("{size_bytes}b"))
            .args(["--", vg])
            .run()
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    pub async fn lvextend(&self, vg: &str, lv: &str, size_bytes: u64) -> Result<()> {
        check_vg_name(vg)?;
        check_vg_name(lv)?;
        self.command("lvextend")
            .arg("-L")
            .arg(format!("{size_bytes}b"))
            .arg("--")
            .arg(Self::lv(vg, lv))
            .run()
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    pub async fn lvremove(&self, vg: &str, lv: &str) -> Result<()> {
        check_vg_name(vg)?;
        check_vg_name(lv)?;
        self.command("lvremove").args(["-y", "--"]).arg(Self::lv(vg, lv)).run().await.map(drop).map_err(|e| self.error(e))
    }

    pub async fn lvrename(&self, vg: &str, from: &str, to: &str) -> Result<()> {
        check_vg_name(vg)?;
        check_vg_name(from)?;
        check_vg_name(to)?;
        self.command("lvrename").args(["--", vg, from, to]).run().await.map(drop).map_err(|e| self.error(e))
    }

    /// Activates the volume (its device-mapper device appears at its path)
    /// after reloading the group's metadata, which another node may have
    /// changed; or deactivates it.
    pub async fn lvchange_active(&self, vg: &str, lv: &str, active: bool) -> Result<()> {
        check_vg_name(vg)?;
        check_vg_name(lv)?;
        let flag = if active { "-ay" } else { "-an" };
        self.command("lvchange").args([flag, "--"]).arg(Self::lv(vg, lv)).run().await.map_err(|e| self.error(e))?;
        if active {
            // An LV already active here keeps its old table until refreshed
            // (another node may have grown it).
            self.command("lvchange").args(["--refresh", "--"]).arg(Self::lv(vg, lv)).run().await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// What an LVM failure means: a full group is out of space; a name in
    /// use already exists; a volume that is not there is not found.
    fn error(&self, err: ToolError) -> StorageError {
        let stderr = err.stderr();
        if stderr.contains("already exists in volume group") {
            StorageError::AlreadyExists(last_line(stderr))
        } else if stderr.contains("Failed to find logical volume") {
            StorageError::NotFound(last_line(stderr))
        } else if stderr.contains("insufficient free space") {
            StorageError::ResourceExhausted(format!(
                "the volume group on {} is full: {}",
                self.device.display(),
                stderr.lines().find(|l| l.contains("insufficient")).unwrap_or_default().trim()
            ))
        } else {
            StorageError::Tool(err)
        }
    }
}

fn last_line(stderr: &str) -> String {
    stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<Section<T>>,
}

#[derive(Deserialize)]
struct Section<T> {
    #[serde(alias = "vg", alias = "lv")]
    rows: Vec<T>,
}

impl<T> Report<T> {
    fn rows(self) -> Vec<T> {
        self.report.into_iter().flat_map(|s| s.rows).collect()
    }
}

#[derive(Deserialize)]
struct VgRow {
    vg_name: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
}

#[derive(Deserialize)]
struct LvRow {
    lv_name: String,
    vg_name: String,
    lv_size: String,
    lv_path: String,
}

fn parse<T: for<'de> Deserialize<'de>>(stdout: &[u8]) -> Result<T> {
    serde_json::from_slice(stdout).map_err(|e| StorageError::Internal(format!("LVM's JSON report: {e}")))
}

/// LVM's JSON holds numbers as strings.
fn number(text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| StorageError::Internal(format!("LVM reported {text:?} where a byte count belongs")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_volume_names_follow_lvm_rules() {
        for ok in ["lqvg", "vg_san-1", "a.b+c"] {
            assert!(check_vg_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-vg", "vg name", "vg/x", "..", "vg;rm", &"v".repeat(128)] {
            assert!(check_vg_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reports_parse_from_lvm_json() {
        let vg = r#"{"report":[{"vg":[{"vg_name":"lqvg","vg_size":"1069547520","vg_free":"962592768","vg_extent_size":"4194304"}]}]}"#;
        let rows = parse::<Report<VgRow>>(vg.as_bytes()).unwrap().rows();
        assert_eq!((number(&rows[0].vg_size).unwrap(), number(&rows[0].vg_free).unwrap()), (1069547520, 962592768));
        assert!(number("12x").is_err());
    }
}
