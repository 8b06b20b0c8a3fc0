//! nfs-ganesha (VFS FSAL, NFSv3 + v4) on 127.0.0.1 with free ports, in a
//! temp dir (see shared/recipes/nfs-ganesha.md, nfs-ports-up.sh), stopped
//! by pid on drop. libnfs clients reach it without a portmapper:
//! `nfs://127.0.0.1/<export>?nfsport=N&mountport=M`. ganesha only starts
//! with a portmapper to register with, so a private rpcbind runs in its
//! own network namespace (its :111 is not the host's), sharing only a
//! private /run with ganesha. The export is a tmpfs only ganesha's mount
//! namespace sees; tests reach it through `export_local`.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, kill_pid_file, wait_until};

pub struct Ganesha {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
    pub nfs_port: u16,
    pub mount_port: u16,
    restarts: u32,
}

// The export is a tmpfs in ganesha's own mount namespace: the VFS FSAL
// needs file handles (name_to_handle_at), which overlayfs roots (CI
// chroots, containers) do not give.
const LAUNCH: &str = r#"
D=$1
# Sized for the benchmark's copies (ganesha holds deleted files open a while).
mount -t tmpfs -o size=16g,mode=0755 tmpfs "$D/export"
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/rpcbind && chown _rpc /run/rpcbind 2>/dev/null || true
$2 rpcbind -f >"$D/rpcbind.out" 2>&1 &
echo $! > "$D/rpcbind.pid"
i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
exec ganesha.nfsd -F -f "$D/ganesha.conf" -L "$D/ganesha.log" -p "$D/ganesha.pid"
"#;

impl Ganesha {
    /// A server libnfs clients reach with explicit ports (see [`Self::url`]);
    /// its portmapper is out of everyone's reach.
    pub fn start() -> io::Result<Self> {
        Self::launch(false)
    }

    /// A server registered with a portmapper on 127.0.0.1:111, as real NFS
    /// servers are: QEMU, libvirt and plain `nfs://127.0.0.1/<export>` URLs
    /// reach it. Needs a network namespace of the test's own (see
    /// [`crate::private_network`]); one such server per namespace.
    pub fn start_with_portmapper() -> io::Result<Self> {
        if std::net::TcpListener::bind(("127.0.0.1", 111)).is_err() {
            return Err(io::Error::other(
                "127.0.0.1:111 is taken: call limiquantix_testkit::private_network() first (one portmapper per namespace)",
            ));
        }
        Self::launch(true)
    }

    fn launch(portmapper_here: bool) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-nfs-").tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("export"))?;
        std::fs::create_dir_all(d.join("recovery"))?;
        // Alone in its namespace, it takes the standard ports, as a real
        // server does (kernel-mode pools probe port 2049).
        let (nfs_port, mount_port) = if portmapper_here { (2049, 20048) } else { (free_port()?, free_port()?) };
        // In a namespace of its own loopback is all there is, and ganesha
        // fails to resolve a Bind_Addr there (see the recipe).
        std::fs::write(d.join("ganesha.conf"), conf(d, nfs_port, mount_port, !portmapper_here))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", LAUNCH, "sh"])
            .arg(d)
            .arg(if portmapper_here { "" } else { "unshare -n" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The exec chain makes the spawned pid ganesha itself.
        let daemon = ChildGuard::spawn("ganesha.nfsd", &mut cmd)?;
        let mut me = Self { dir, daemon, nfs_port, mount_port, restarts: 0 };
        me.wait_serving("ganesha.log", Duration::from_secs(30))?;
        Ok(me)
    }

    /// Waits until ganesha has said it serves (in the log it was started
    /// with) and listens on its ports.
    fn wait_serving(&mut self, log: &str, timeout: Duration) -> io::Result<()> {
        let ready = |port: u16| TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok();
        // Listening is not serving: exports are loaded until ganesha says so
        // (before that, a MOUNT is refused with MNT3ERR_ACCES).
        let path = self.dir.path().join(log);
        let initialised = || std::fs::read_to_string(&path).is_ok_and(|l| l.contains("NFS SERVER INITIALIZED"));
        let (nfs_port, mount_port) = (self.nfs_port, self.mount_port);
        let daemon = &mut self.daemon;
        let mut exited = false;
        let waited = wait_until("nfs-ganesha", timeout, || {
            exited = !daemon.is_running();
            exited || (initialised() && ready(nfs_port) && ready(mount_port))
        });
        if waited.is_ok() && !exited {
            return Ok(());
        }
        // Its start, not the clients' reconnects that follow, and what the
        // launcher said.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let start: Vec<&str> = text.lines().filter(|l| !l.contains("svc_vc_wait")).take(40).collect();
        let launcher = std::fs::read_to_string(self.dir.path().join(format!("{log}.stderr"))).unwrap_or_default();
        let what = if exited { "nfs-ganesha exited while starting".to_owned() } else { format!("{:?}", waited.err()) };
        Err(io::Error::other(format!("{what}; {log}:\n{}\nlauncher stderr: {launcher}", start.join("\n"))))
    }

    /// kill -9 of the server, then a new one on the same export, ports and
    /// portmapper (in the same mount namespace, which rpcbind keeps alive):
    /// a server that crashed and came back, its files as they were.
    pub fn crash_and_restart(&mut self) -> io::Result<()> {
        self.daemon.kill();
        self.restarts += 1;
        let log = format!("ganesha.restart{}.log", self.restarts);
        let rpcbind = std::fs::read_to_string(self.dir.path().join("rpcbind.pid"))?;
        let d = self.dir.path();
        let mut cmd = Command::new("nsenter");
        // -r -w: keep the target's root and directory; entering a mount
        // namespace alone resets them to the namespace's root, which is not
        // ours when tests run in a chroot.
        cmd.args(["-t", rpcbind.trim(), "-m", "-r", "-w", "--", "ganesha.nfsd", "-F", "-f"])
            .arg(d.join("ganesha.conf"))
            .arg("-L")
            .arg(d.join(&log))
            .arg("-p")
            .arg(d.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join(format!("{log}.stderr")))?);
        // nsenter execs ganesha: the pid spawned is the daemon.
        self.daemon = ChildGuard::spawn("ganesha.nfsd", &mut cmd)?;
        // Its ports may wait out the killed server's closing connections.
        self.wait_serving(&log, Duration::from_secs(90))
    }

    /// The last lines of ganesha's log, for a failing test to show.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("ganesha.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The exported directory as the server names it (NFS URLs use it).
    pub fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    /// The exported directory as this process reaches it (through the
    /// server's mount namespace), to put files there or look at them.
    pub fn export_local(&self) -> PathBuf {
        let pid = self.daemon.pid().expect("ganesha runs");
        PathBuf::from(format!("/proc/{pid}/root")).join(self.export().strip_prefix("/").expect("an absolute path"))
    }

    /// A URL of `path` inside the export as QEMU takes it (through the
    /// portmapper: [`Self::start_with_portmapper`]).
    pub fn plain_url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1{}{path}", self.export().display())
    }

    /// A libnfs URL of `path` inside the export, without a portmapper.
    pub fn url(&self, path: &str) -> String {
        format!("nfs://127.0.0.1{}{path}?nfsport={}&mountport={}", self.export().display(), self.nfs_port, self.mount_port)
    }

    /// Freezes the server (SIGSTOP): a hung NFS server, for timeout tests.
    pub fn pause(&self) {
        self.daemon.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.daemon.signal(libc::SIGCONT);
    }
}

// `Dir_Chunk = 0`: ganesha 4.3's chunked directory cache, over a tmpfs
// whose entries are renamed, answers READDIRPLUS with the same entries
// again and again (libnfs then lists forever).
fn conf(d: &Path, nfs_port: u16, mount_port: u16, bind_loopback: bool) -> String {
    let d = d.display();
    let bind = if bind_loopback { "  Bind_Addr = 127.0.0.1;\n" } else { "" };
    format!(
        "NFS_CORE_PARAM {{\n  Protocols = 3, 4;\n  NFS_Port = {nfs_port};\n  MNT_Port = {mount_port};\n{bind}  \
         Enable_NLM = false;\n  Enable_RQUOTA = false;\n}}\n\
         NFSV4 {{\n  Graceless = true;\n  RecoveryBackend = fs;\n  RecoveryRoot = \"{d}/recovery\";\n}}\n\
         NFS_KRB5 {{ Active_krb5 = false; }}\n\
         MDCACHE {{ Dir_Chunk = 0; }}\n\
         EXPORT {{\n  Export_Id = 1;\n  Path = \"{d}/export\";\n  Pseudo = \"{d}/export\";\n  Access_Type = RW;\n  \
         Squash = No_Root_Squash;\n  SecType = sys;\n  Protocols = 3, 4;\n  Transports = TCP;\n  FSAL {{ Name = VFS; }}\n}}\n\
         LOG {{ Default_Log_Level = EVENT; }}\n"
    )
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        self.resume();
        self.daemon.stop(Duration::from_secs(5));
        // rpcbind is ganesha's sibling, not our child: stopped by its pid file.
        kill_pid_file(&self.dir.path().join("rpcbind.pid"));
    }
}
