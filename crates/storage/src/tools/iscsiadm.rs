//! open-iscsi's iscsiadm, typed, for iSCSI pools in LVM mode (the LUN that
//! holds the volume group is logged in on every node): node records, login
//! and logout, argv only, each run bounded by a timeout. The CHAP secret
//! never goes on a command line (where every user could read it in
//! /proc/PID/cmdline): it is appended to the node's record file (0600),
//! which iscsiadm reads, the last value of a key winning.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ToolCommand;
use crate::backends::iscsi::config::{Chap, IscsiName, Portal};
use crate::error::{Result, StorageError, ToolError};

/// iscsiadm's "no records found": what deleting a missing record answers.
const NO_RECORDS: i32 = 21;

#[derive(Debug, Clone)]
pub struct Iscsiadm {
    /// The program (open-iscsi's `iscsiadm`, found on PATH by default).
    pub program: String,
    pub timeout: Duration,
    /// Where iscsiadm keeps node records (`/etc/iscsi/nodes`).
    pub nodes_dir: PathBuf,
}

impl Default for Iscsiadm {
    fn default() -> Self {
        Self { program: "iscsiadm".into(), timeout: Duration::from_secs(60), nodes_dir: PathBuf::from("/etc/iscsi/nodes") }
    }
}

impl Iscsiadm {
    fn node(&self, target: &IscsiName, portal: &Portal) -> ToolCommand {
        ToolCommand::new(&self.program, self.timeout).args(["-m", "node", "-T", target.as_str(), "-p"]).arg(portal.address())
    }

    /// The record of (target, portal) as iscsiadm files it when no TPGT is given.
    pub fn record_file(&self, target: &IscsiName, portal: &Portal) -> PathBuf {
        let host = portal.host.trim_start_matches('[').trim_end_matches(']');
        self.nodes_dir.join(target.as_str()).join(format!("{host},{}", portal.port))
    }

    /// Creates (or replaces) the node record, with CHAP (and mutual CHAP) when given.
    pub async fn add_node(&self, target: &IscsiName, portal: &Portal, chap: Option<&Chap>) -> Result<()> {
        self.node(target, portal).args(["-o", "new"]).run().await.map_err(|e| fail("create the node record of", target, e))?;
        let mut update = self.node(target, portal).args(["-o", "update", "-n", "node.startup", "-v", "manual"]);
        if let Some(chap) = chap {
            update = update.args(["-n", "node.session.auth.authmethod", "-v", "CHAP", "-n", "node.session.auth.username", "-v"]).arg(&chap.username);
            if let Some(mutual) = &chap.mutual {
                update = update.args(["-n", "node.session.auth.username_in", "-v"]).arg(&mutual.username);
            }
        }
        update.run().await.map_err(|e| fail("update the node record of", target, e))?;
        if let Some(chap) = chap {
            let file = self.record_file(target, portal);
            let mut secrets = vec![("node.session.auth.password", chap.secret())];
            if let Some(mutual) = &chap.mutual {
                secrets.push(("node.session.auth.password_in", mutual.secret()));
            }
            append_secrets(&file, &secrets)?;
        }
        Ok(())
    }

    /// Logs in (needs the kernel initiator and iscsid).
    pub async fn login(&self, target: &IscsiName, portal: &Portal) -> Result<()> {
        self.node(target, portal).arg("--login").run().await.map(drop).map_err(|e| {
            StorageError::Unavailable(format!("cannot log in to iSCSI target {target} at {portal}: {}", last_line(&e)))
        })
    }

    pub async fn logout(&self, target: &IscsiName, portal: &Portal) -> Result<()> {
        self.node(target, portal).arg("--logout").accept_exit_codes(&[0, NO_RECORDS]).run().await.map(drop).map_err(|e| fail("log out of", target, e))
    }

    /// Removes the node record; a missing one is fine.
    pub async fn delete_node(&self, target: &IscsiName, portal: &Portal) -> Result<()> {
        self.node(target, portal)
            .args(["-o", "delete"])
            .accept_exit_codes(&[0, NO_RECORDS])
            .run()
            .await
            .map(drop)
            .map_err(|e| fail("delete the node record of", target, e))
    }
}

/// Where udev puts the stable names of block devices.
pub const BY_PATH_DIR: &str = "/dev/disk/by-path";

/// The stable name udev gives a logged-in LUN (in `by_path_dir`, normally
/// [`BY_PATH_DIR`]): never a guessed `sdX`.
pub fn by_path(by_path_dir: &Path, target: &IscsiName, portal: &Portal, lun: u32) -> PathBuf {
    by_path_dir.join(format!("ip-{}-iscsi-{}-lun-{lun}", portal.address(), target))
}

fn append_secrets(file: &Path, secrets: &[(&str, &str)]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| StorageError::io(format!("cannot open the node record {}", file.display()), e))?;
    let lines: String = secrets.iter().map(|(key, secret)| format!("{key} = {secret}\n")).collect();
    f.write_all(lines.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io(format!("cannot write the node record {}", file.display()), e))
}

fn last_line(e: &ToolError) -> String {
    e.stderr().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

fn fail(what: &str, target: &IscsiName, e: ToolError) -> StorageError {
    StorageError::Internal(format!("iscsiadm could not {what} {target}: {}", last_line(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luns_are_found_by_their_stable_path() {
        let t = IscsiName::parse("iqn.2024-01.io.limiquantix:tgt1").unwrap();
        let p = Portal::parse("10.0.0.30").unwrap();
        assert_eq!(by_path(Path::new(BY_PATH_DIR), &t, &p, 3), PathBuf::from("/dev/disk/by-path/ip-10.0.0.30:3260-iscsi-iqn.2024-01.io.limiquantix:tgt1-lun-3"));
        let adm = Iscsiadm::default();
        assert_eq!(adm.record_file(&t, &p), PathBuf::from("/etc/iscsi/nodes/iqn.2024-01.io.limiquantix:tgt1/10.0.0.30,3260"));
    }
}
