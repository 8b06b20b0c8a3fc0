//! A stand-in for iscsiadm where this kernel cannot log in (it has no iSCSI
//! initiator): node records are files in a temp database as iscsiadm keeps
//! them, `--login` makes the udev-style stable link of each LUN point at a
//! device given by the test (a loop device over the LUN's backing file, so
//! the bytes are the target's), `--logout` removes the links. Every call's
//! argv is logged, so tests can check what was run and that no secret was
//! on a command line. Login can be made to fail on demand.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct LoginShim {
    dir: tempfile::TempDir,
}

impl LoginShim {
    /// `devices`: for each LUN number, the device its link names.
    pub fn new(devices: &[(u32, &Path)]) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-iscsiadm-").tempdir()?;
        let me = Self { dir };
        std::fs::create_dir_all(me.nodes_dir())?;
        std::fs::create_dir_all(me.by_path_dir())?;
        let links: String = devices
            .iter()
            .map(|(lun, dev)| format!("    ln -sfn '{}' \"{}/ip-$P-iscsi-$T-lun-{lun}\"\n", dev.display(), me.by_path_dir().display()))
            .collect();
        let script = format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> '{log}'
T= P= op=
while [ $# -gt 0 ]; do
  case "$1" in
    -T) T=$2; shift ;;
    -p) P=$2; shift ;;
    -o) op=$2; shift ;;
    --login) op=login ;;
    --logout) op=logout ;;
  esac
  shift
done
rec="{nodes}/$T/$(echo "$P" | tr : ,)"
case "$op" in
  new) mkdir -p "{nodes}/$T" && : > "$rec" && chmod 600 "$rec" ;;
  update) [ -f "$rec" ] || {{ echo "iscsiadm: No records found" >&2; exit 21; }} ;;
  delete) [ -f "$rec" ] || {{ echo "iscsiadm: No records found" >&2; exit 21; }}; rm -f "$rec" ;;
  login)
    [ -f "$rec" ] || {{ echo "iscsiadm: No records found" >&2; exit 21; }}
    [ -e '{fail}' ] && {{ echo "iscsiadm: Could not log into all portals" >&2; exit 24; }}
{links}    ;;
  logout) rm -f "{by_path}/ip-$P-iscsi-$T-lun-"* ;;
esac
"#,
            log = me.log_file().display(),
            nodes = me.nodes_dir().display(),
            fail = me.dir.path().join("fail-login").display(),
            by_path = me.by_path_dir().display(),
        );
        let program = me.program();
        std::fs::write(&program, script)?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        Ok(me)
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("iscsiadm")
    }

    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.path().join("nodes")
    }

    pub fn by_path_dir(&self) -> PathBuf {
        self.dir.path().join("by-path")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The argv of every call so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_file()).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Makes every later login fail (or succeed again).
    pub fn fail_logins(&self, fail: bool) {
        let flag = self.dir.path().join("fail-login");
        if fail {
            std::fs::write(flag, "").expect("shim flag");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// The stable links that exist now (logged-in LUNs).
    pub fn links(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.by_path_dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}
