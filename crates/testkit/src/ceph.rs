//! A throwaway single-node Ceph cluster (1 mon, 1 mgr, 1 memstore OSD, cephx,
//! pool size 1) on 127.0.0.1 with free ports, in a temp dir; see
//! shared/recipes/ceph.md, whose ceph-up.sh this follows. Daemons are our
//! children, stopped by pid on drop (the OSD first).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, run_command as run, wait_until};

/// The RBD pool every cluster starts with.
pub const TEST_POOL: &str = "lqtest";
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A monitor answers within seconds here; the first try gives up sooner.
const MON_FIRST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Ceph {
    dir: tempfile::TempDir,
    conf: PathBuf,
    osd: Option<ChildGuard>,
    mgr: Option<ChildGuard>,
    mon: Option<ChildGuard>,
    v1_port: u16,
    admin_key: String,
}


impl Ceph {
    /// A new cluster. A monitor that stays silent after start is given one
    /// more try from scratch (new dir, new ports): seen on fresh machines
    /// only, with nothing in its log, while VM tests ran beside it.
    pub fn start() -> io::Result<Self> {
        match Self::start_once(MON_FIRST_TIMEOUT) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut && e.to_string().starts_with("ceph mon") => {
                eprintln!("testkit: the Ceph monitor did not start; trying once more. {e}");
                Self::start_once(READY_TIMEOUT)
            }
            other => other,
        }
    }

    fn start_once(mon_timeout: Duration) -> io::Result<Self> {
        // Admin socket paths must stay under 108 bytes: a short temp dir.
        let dir = tempfile::Builder::new().prefix("lq-ceph-").tempdir_in("/tmp")?;
        let d = dir.path().to_owned();
        for sub in ["run", "log", "crash", "data/mon.a", "data/mgr.x", "data/osd.0"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let (v1_port, v2_port) = (free_port()?, free_port()?);
        let fsid = crate::process::new_uuid()?;
        std::fs::write(d.join("ceph.conf"), conf(&d, &fsid, v1_port, v2_port))?;

        // One keyring with every entity: the mon imports them all at mkfs.
        let admin_keyring = d.join("client.admin.keyring");
        let keyring = d.join("keyring");
        let authtool = |args: &[&str]| run(Command::new("ceph-authtool").args(args));
        authtool(&["--create-keyring", admin_keyring.to_str().unwrap(), "--gen-key", "-n", "client.admin",
            "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *", "--cap", "mds", "allow *"])?;
        authtool(&["--create-keyring", keyring.to_str().unwrap(), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])?;
        authtool(&[keyring.to_str().unwrap(), "--import-keyring", admin_keyring.to_str().unwrap()])?;
        authtool(&[keyring.to_str().unwrap(), "--gen-key", "-n", "mgr.x", "--cap", "mon", "allow profile mgr",
            "--cap", "osd", "allow *", "--cap", "mds", "allow *"])?;
        authtool(&[keyring.to_str().unwrap(), "--gen-key", "-n", "osd.0", "--cap", "mon", "allow profile osd",
            "--cap", "mgr", "allow profile osd", "--cap", "osd", "allow *"])?;
        let admin_key = authtool(&["-p", "-n", "client.admin", admin_keyring.to_str().unwrap()])?.trim().to_owned();

        let monmap = d.join("monmap");
        run(Command::new("monmaptool")
            .args(["--create", "--fsid", &fsid, "--addv", "a"])
            .arg(format!("[v2:127.0.0.1:{v2_port},v1:127.0.0.1:{v1_port}]"))
            .arg(&monmap))?;
        let conf_path = d.join("ceph.conf");
        run(bounded(120, "ceph-mon").arg("-c").arg(&conf_path).args(["--mkfs", "-i", "a", "--monmap"]).arg(&monmap).arg("--keyring").arg(&keyring))?;

        let mut me = Self { dir, conf: conf_path.clone(), osd: None, mgr: None, mon: None, v1_port, admin_key };
        me.mon = Some(me.daemon("mon.a", "ceph-mon", "a")?);
        let probe = me.conf().to_owned();
        wait_until("ceph mon", mon_timeout, || ceph_cli(&probe, &["mon", "stat"]).is_ok()).map_err(|e| me.with_log(e, "mon.a"))?;
        me.mgr = Some(me.daemon("mgr.x", "ceph-mgr", "x")?);

        let osd_uuid = crate::process::new_uuid()?;
        me.ceph(&["osd", "new", &osd_uuid, "0"])?;
        run(bounded(120, "ceph-osd").arg("-c").arg(me.conf()).args(["-i", "0", "--mkfs", "--osd-uuid", &osd_uuid]))?;
        me.start_osd()?;
        me.ceph(&["osd", "pool", "create", TEST_POOL, "8"])?;
        run(bounded(120, "rbd").arg("-c").arg(me.conf()).args(["pool", "init", TEST_POOL]))?;
        // `ceph df` needs an active mgr.
        let probe = me.conf().to_owned();
        wait_until("ceph mgr", READY_TIMEOUT, || {
            ceph_cli(&probe, &["mgr", "stat", "-f", "json"]).is_ok_and(|s| s.replace(' ', "").contains("\"available\":true"))
        })
        .map_err(|e| me.with_log(e, "mgr.x"))?;
        Ok(me)
    }

    /// `e` with the end of a daemon's output and log, to tell why it never
    /// became ready.
    fn with_log(&self, e: io::Error, name: &str) -> io::Error {
        let tail = |file: String| {
            let text = std::fs::read_to_string(self.dir.path().join("log").join(&file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(20).collect();
            format!("--- {file}:\n{}", lines.into_iter().rev().collect::<Vec<_>>().join("\n"))
        };
        io::Error::new(e.kind(), format!("{e}\n{}\n{}", tail(format!("{name}.out")), tail(format!("{name}.log"))))
    }

    fn daemon(&self, name: &str, program: &str, id: &str) -> io::Result<ChildGuard> {
        let log = std::fs::File::create(self.dir.path().join(format!("log/{name}.out")))?;
        let mut cmd = Command::new(program);
        cmd.args(["-i", id, "-f", "-c"]).arg(self.conf()).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        ChildGuard::spawn(name, &mut cmd)
    }

    /// Starts the OSD (again) and waits until it is up.
    pub fn start_osd(&mut self) -> io::Result<()> {
        self.osd = Some(self.daemon("osd.0", "ceph-osd", "0")?);
        let conf = self.conf().to_owned();
        wait_until("ceph osd", READY_TIMEOUT, || {
            ceph_cli(&conf, &["osd", "stat", "-f", "json"]).is_ok_and(|s| s.replace(' ', "").contains("\"num_up_osds\":1"))
        })
        .map_err(|e| self.with_log(e, "osd.0"))
    }

    /// Freezes the OSD (SIGSTOP): every I/O hangs, the data stays (memstore
    /// keeps it in the frozen process).
    pub fn pause_osd(&self) {
        if let Some(g) = &self.osd {
            g.signal(libc::SIGSTOP);
        }
    }

    pub fn resume_osd(&self) {
        if let Some(g) = &self.osd {
            g.signal(libc::SIGCONT);
        }
    }

    pub fn pause_mon(&self) {
        if let Some(g) = &self.mon {
            g.signal(libc::SIGSTOP);
        }
    }

    pub fn resume_mon(&self) {
        if let Some(g) = &self.mon {
            g.signal(libc::SIGCONT);
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster's ceph.conf (for test setup with the CLIs only).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The monitor as a client names it (v1 protocol port).
    pub fn monitor(&self) -> String {
        format!("127.0.0.1:{}", self.v1_port)
    }

    /// client.admin's key (base64).
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// `ceph -c <conf> args...` (test setup and checks).
    pub fn ceph(&self, args: &[&str]) -> io::Result<String> {
        ceph_cli(self.conf(), args)
    }

    /// `rbd -c <conf> args...` (test setup and checks), given 60 s: a librados
    /// client waits forever by default, and a stuck test says less than a failed one.
    pub fn rbd(&self, args: &[&str]) -> io::Result<String> {
        run(bounded(60, "rbd").arg("-c").arg(self.conf()).args(args))
    }

    /// A user with rbd rights on `pool` only; returns its key.
    pub fn create_user(&self, name: &str, pool: &str) -> io::Result<String> {
        let out = self.ceph(&["auth", "get-or-create", &format!("client.{name}"), "mon", "profile rbd", "osd",
            &format!("profile rbd pool={pool}"), "mgr", "profile rbd", "-f", "json"])?;
        let start = out.find("\"key\"").ok_or_else(|| io::Error::other(format!("no key in {out}")))?;
        let rest = &out[start + 5..];
        let key = rest.split('"').nth(1).ok_or_else(|| io::Error::other(format!("no key in {out}")))?;
        Ok(key.to_owned())
    }
}

fn ceph_cli(conf: &Path, args: &[&str]) -> io::Result<String> {
    run(bounded(30, "ceph").arg("-c").arg(conf).args(["--connect-timeout", "20"]).args(args))
}

/// `program` killed after `secs`: a stuck cluster fails the test instead of
/// hanging it.
fn bounded(secs: u32, program: &str) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string()).arg(program);
    cmd
}

fn conf(d: &Path, fsid: &str, v1: u16, v2: u16) -> String {
    let d = d.display();
    format!(
        "[global]\nfsid = {fsid}\nmon host = [v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]\npublic network = 127.0.0.1/32\n\
         public addr = 127.0.0.1\nms bind ipv6 = false\nauth cluster required = cephx\nauth service required = cephx\n\
         auth client required = cephx\nauth allow insecure global id reclaim = false\nkeyring = {d}/keyring\n\
         run dir = {d}/run\ncrash dir = {d}/crash\nmon allow pool size one = true\nmon allow pool delete = true\n\
         mon warn on pool no redundancy = false\nosd pool default size = 1\nosd pool default min size = 1\n\
         osd pool default pg autoscale mode = off\nosd crush chooseleaf type = 0\nosd objectstore = memstore\n\
         memstore device bytes = 4294967296\npaxos propose interval = 0.1\n\
         osd client watch timeout = 5\n\n\
         [mon]\nmon data = {d}/data/$name\nlog file = {d}/log/$name.log\n\
         mon data avail crit = 0\nmon data avail warn = 0\n\
         [mgr]\nmgr data = {d}/data/$name\nlog file = {d}/log/$name.log\n\
         [osd]\nosd data = {d}/data/$name\nlog file = {d}/log/$name.log\n"
    )
}

impl Drop for Ceph {
    fn drop(&mut self) {
        self.resume_osd();
        self.resume_mon();
        // The OSD first: without a mon it waits osd_mon_shutdown_timeout.
        for guard in [&mut self.osd, &mut self.mgr, &mut self.mon] {
            if let Some(mut g) = guard.take() {
                g.stop(Duration::from_secs(5));
            }
        }
    }
}
