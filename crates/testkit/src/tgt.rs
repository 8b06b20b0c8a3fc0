//! tgt (a user-space iSCSI target) on 127.0.0.1 with a free port, in a temp
//! dir with its own control socket (see shared/recipes/tgt-iscsi.md), with
//! one target, file-backed LUNs with world-wide names of their own, and a
//! CHAP account. Stopped by deleting the target and the system (tgtd
//! ignores SIGTERM), SIGKILL as the last resort.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, wait_until};

pub const TARGET: &str = "iqn.2024-01.io.limiquantix.test:tgt1";
pub const CHAP_USER: &str = "lquser";
/// The target's own CHAP user, for mutual CHAP (see `add_mutual_chap`).
pub const MUTUAL_CHAP_USER: &str = "lqarray";

pub struct Tgt {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
    pub port: u16,
    chap_secret: String,
    /// Per-target random part of the LUNs' names: two targets never share one.
    id_prefix: String,
}

impl Tgt {
    /// A target with one disk LUN per size (LUN 1, 2, ...), CHAP required.
    pub fn start(lun_sizes_mib: &[u64]) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-tgt-").tempdir()?;
        let port = free_port()?;
        let mut cmd = Command::new("tgtd");
        cmd.args(["-f", "--iscsi", &format!("portal=127.0.0.1:{port}")])
            .env("TGT_IPC_SOCKET", dir.path().join("tgtd.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let daemon = ChildGuard::spawn("tgtd", &mut cmd)?;
        let random = crate::process::new_uuid()?.replace('-', "");
        let me = Self { dir, daemon, port, chap_secret: format!("lq-{}", &random[..20]), id_prefix: random[..9].to_owned() };
        wait_until("tgtd", Duration::from_secs(10), || me.tgtadm(&["--mode", "system", "--op", "show"]).is_ok())?;
        me.tgtadm(&["--mode", "target", "--op", "new", "--tid", "1", "--targetname", TARGET])?;
        for (i, size) in lun_sizes_mib.iter().enumerate() {
            me.add_lun(i as u32 + 1, i as u32 + 1, *size)?;
        }
        // The fixture's own CLI takes the secret on argv; product code never does.
        me.tgtadm(&["--mode", "account", "--op", "new", "--user", CHAP_USER, "--password", &me.chap_secret])?;
        me.tgtadm(&["--mode", "account", "--op", "bind", "--tid", "1", "--user", CHAP_USER])?;
        me.tgtadm(&["--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL"])?;
        Ok(me)
    }

    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn chap_secret(&self) -> &str {
        &self.chap_secret
    }

    /// Makes the target answer mutual CHAP as [`MUTUAL_CHAP_USER`] (tgt's
    /// outgoing account) and returns its secret.
    pub fn add_mutual_chap(&self) -> io::Result<String> {
        let secret = format!("lqm-{}", &crate::process::new_uuid()?.replace('-', "")[..20]);
        self.tgtadm(&["--mode", "account", "--op", "new", "--user", MUTUAL_CHAP_USER, "--password", &secret])?;
        self.tgtadm(&["--mode", "account", "--op", "bind", "--tid", "1", "--user", MUTUAL_CHAP_USER, "--outgoing"])?;
        Ok(secret)
    }

    /// The file behind the disk made as number `disk` (1, 2, ...).
    pub fn disk_file(&self, disk: u32) -> PathBuf {
        self.dir.path().join(format!("disk{disk}.img"))
    }

    /// The NAA name the LUN of disk `disk` reports (`naa.6…`, 32 hex digits).
    pub fn disk_wwn(&self, disk: u32) -> String {
        format!("naa.{}", self.scsi_id(disk))
    }

    fn scsi_id(&self, disk: u32) -> String {
        format!("6{}{disk:022x}", self.id_prefix)
    }

    fn add_lun(&self, lun: u32, disk: u32, size_mib: u64) -> io::Result<()> {
        let file = self.disk_file(disk);
        if !file.exists() {
            std::fs::File::create(&file)?.set_len(size_mib << 20)?;
        }
        let (lun, tid) = (lun.to_string(), "1");
        self.tgtadm(&["--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", &lun, "--backing-store", file.to_str().unwrap()])?;
        // The name stays with the disk whatever its LUN number (as on an array).
        let params = format!("scsi_id={},scsi_sn=LQ{disk:010}", self.scsi_id(disk));
        self.tgtadm(&["--mode", "logicalunit", "--op", "update", "--tid", tid, "--lun", &lun, "--params", &params])?;
        Ok(())
    }

    /// Renumbers two disks: the disk at LUN `a` moves to LUN `b` and back,
    /// each keeping its name, as an array does when LUNs are remapped.
    pub fn swap_luns(&self, a: u32, b: u32) -> io::Result<()> {
        for lun in [a, b] {
            self.tgtadm(&["--mode", "logicalunit", "--op", "delete", "--tid", "1", "--lun", &lun.to_string()])?;
        }
        self.add_lun(a, b, 0)?;
        self.add_lun(b, a, 0)
    }

    /// Freezes the target (SIGSTOP), for timeout tests.
    pub fn pause(&self) {
        self.daemon.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.daemon.signal(libc::SIGCONT);
    }

    pub fn tgtadm(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("tgtadm")
            .args(["--lld", "iscsi"])
            .args(args)
            .env("TGT_IPC_SOCKET", self.dir.path().join("tgtd.sock"))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("tgtadm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        self.resume();
        let _ = self.tgtadm(&["--mode", "target", "--op", "delete", "--force", "--tid", "1"]);
        let _ = self.tgtadm(&["--mode", "system", "--op", "delete"]);
        // tgtd exits within ~0.1 s of the system delete; SIGKILL otherwise.
        let _ = wait_until("tgtd to exit", Duration::from_secs(3), || !self.daemon.is_running());
        self.daemon.kill();
    }
}
