//! A private, privileged libvirtd with the QEMU driver (TCG), isolated from the
//! machine's own in a mount namespace (see shared/recipes/libvirt.md, variant
//! B): its config, state, sockets and logs live in a temp dir, QEMU runs as
//! libvirt-qemu like in production, and /dev/kvm is hidden so the capability
//! probe is fast. Capability caches are shared between instances so later
//! daemons answer in ~0.1 s instead of ~4 s.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, kill_pid_file, run_command, wait_until};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Libvirtd {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
    uri: String,
}

/// The bind mounts that make the daemon private: (our dir, system path).
const BINDS: [(&str, &str); 6] = [
    ("kvm-hide", "/dev/kvm"),
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
];

fn shared_caps_dir() -> PathBuf {
    std::env::temp_dir().join("limiquantix-testkit").join("libvirt-qemu-capabilities")
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Libvirtd {
    pub fn start() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-libvirtd-").tempdir()?;
        let d = dir.path();
        for sub in ["etc", "run", "lib", "cache/qemu", "log"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        std::fs::write(d.join("kvm-hide"), b"")?;
        std::fs::write(
            d.join("etc/libvirtd.conf"),
            format!(
                "unix_sock_group = \"root\"\nunix_sock_rw_perms = \"0700\"\nlog_outputs = \"3:file:{}\"\n",
                d.join("log/libvirtd.log").display()
            ),
        )?;
        // No namespaces/cgroups per VM: the sandbox has neither to spare, and
        // cgroup names would collide between parallel instances.
        std::fs::write(d.join("etc/qemu.conf"), "namespaces = [ ]\ncgroup_controllers = [ ]\nstdio_handler = \"file\"\n")?;
        let caps = shared_caps_dir();
        if caps.is_dir() {
            copy_dir(&caps, &d.join("cache/qemu/capabilities"))?;
        }

        for (_, system) in &BINDS[1..] {
            // /run/libvirt only exists once a system libvirtd ran; an empty one is harmless.
            std::fs::create_dir_all(system)?;
        }
        let mounts: Vec<(CString, CString)> = BINDS
            .iter()
            // Without /dev/kvm there is nothing to hide.
            .filter(|(_, system)| Path::new(system).exists())
            .map(|(ours, system)| Ok((cstring(&d.join(ours))?, cstring(Path::new(system))?)))
            .collect::<io::Result<_>>()?;
        // libvirtd lives in /usr/sbin, which a non-login PATH may lack.
        let program = ["/usr/sbin/libvirtd", "/usr/bin/libvirtd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("libvirtd");
        let mut cmd = Command::new(program);
        cmd.arg("--config")
            .arg(d.join("etc/libvirtd.conf"))
            .arg("--pid-file")
            .arg(d.join("libvirtd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("log/stderr.log"))?);
        // SAFETY: unshare(2) and mount(2) are async-signal-safe and every
        // string was allocated before fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let root = c"/";
                if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                for (src, dst) in &mounts {
                    if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let daemon = ChildGuard::spawn("libvirtd", &mut cmd)?;
        let uri = format!("qemu+unix:///system?socket={}", d.join("run/libvirt-sock").display());
        let mut me = Self { dir, daemon, uri };
        let log = me.dir.path().join("log");
        wait_until("libvirtd", READY_TIMEOUT, || {
            Command::new("virsh").args(["-c", &me.uri, "version"]).output().is_ok_and(|o| o.status.success())
        })
        .map_err(|e| {
            let stderr = std::fs::read_to_string(log.join("stderr.log")).unwrap_or_default();
            io::Error::new(e.kind(), format!("{e}; libvirtd stderr: {stderr}"))
        })?;
        if !me.daemon.is_running() {
            return Err(io::Error::other("libvirtd exited right after starting"));
        }
        me.share_capabilities();
        Ok(me)
    }

    /// Saves this daemon's QEMU capability cache for the next instances.
    fn share_capabilities(&self) {
        let shared = shared_caps_dir();
        let ours = self.dir.path().join("cache/qemu/capabilities");
        if shared.is_dir() || !ours.is_dir() {
            return;
        }
        let staging = shared.with_extension(format!("tmp{}", std::process::id()));
        if copy_dir(&ours, &staging).is_ok() {
            // Another test may have won the race; either copy is good.
            if std::fs::rename(&staging, &shared).is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `virsh -c <this daemon> args...`; an error carries virsh's stderr.
    pub fn virsh<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> io::Result<String> {
        run_command(Command::new("virsh").arg("-c").arg(&self.uri).args(args))
    }

    /// The size QEMU reports for a domain's disk (`virsh domblkinfo`), in bytes.
    pub fn disk_capacity(&self, domain: &str, target: &str) -> io::Result<u64> {
        let out = self.virsh(&["domblkinfo", domain, target])?;
        out.lines()
            .find_map(|l| l.strip_prefix("Capacity:"))
            .and_then(|c| c.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no capacity in domblkinfo output: {out}")))
    }

    /// Starts a transient domain from `xml`.
    pub fn create_domain(&self, xml: &str) -> io::Result<()> {
        let file = self.dir.path().join(format!("domain-{}.xml", std::process::id()));
        std::fs::write(&file, xml)?;
        self.virsh(&[std::ffi::OsStr::new("create"), file.as_os_str()]).map(drop)
    }

    /// The QEMU log of a domain, for test failure messages.
    pub fn qemu_log(&self, domain: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("log/qemu/{domain}.log"))).unwrap_or_default()
    }
}

/// A minimal TCG domain with a virtio-scsi controller and the given devices.
pub fn minimal_domain(name: &str, devices_xml: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n  \
         <os><type arch='x86_64' machine='pc'>hvm</type></os>\n  <features><acpi/></features>\n  <devices>\n    \
         <controller type='scsi' index='0' model='virtio-scsi'/>\n{devices_xml}\n  </devices>\n</domain>\n"
    )
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Ok(names) = self.virsh(&["list", "--name"]) {
            for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
                let _ = self.virsh(&["destroy", name]);
            }
        }
        self.daemon.stop(Duration::from_secs(10));
        // QEMU outlives libvirtd; stop any the destroys above missed.
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/qemu")) {
            for e in entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "pid")) {
                kill_pid_file(&e.path());
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
