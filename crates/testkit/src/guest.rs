//! A real guest OS with qemu-guest-agent, for tests that must see what a VM
//! sees (shared/recipes/guest-agent.md): the host's Debian kernel booted via
//! PVH, a busybox initramfs that runs qemu-ga, and an ext4 data disk mounted
//! at /data. The agent's `guest-exec` is the test's shell in the guest.
//!
//! The kernel and initramfs depend only on the installed packages, so they are
//! built once per kernel version into a temp dir shared by every test process.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::libvirt::Libvirtd;
use crate::process::run_command;

/// The contents of /data/hello.txt on every data disk.
pub const HELLO_TEXT: &str = "hello from the host\n";
/// The `<serial>` of the data disk; /init finds the disk to mount by it.
pub const DATA_SERIAL: &str = "lq-guest-data";

const BOOT_DEADLINE: Duration = Duration::from_secs(60);
const EXEC_DEADLINE: Duration = Duration::from_secs(60);
/// Seconds libvirt waits for one agent reply.
const AGENT_TIMEOUT_SECS: &str = "10";
const BUSYBOX: &str = "/bin/busybox";
const QEMU_GA: &str = "/usr/sbin/qemu-ga";
/// Everything the guest needs is a module in Debian's kernel; modprobe adds
/// their dependencies.
const MODULES: [&str; 7] = ["virtio_pci", "virtio_console", "virtio_blk", "virtio_scsi", "sd_mod", "crc32c_generic", "ext4"];

const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
echo "init: $(cut -d' ' -f1 /proc/uptime)s modules"
for m in $(cat /modules.list); do insmod /lib/modules/$m 2>/dev/null || echo "init: insmod $m failed (ok if a generic variant exists)"; done
# the data disk by its serial (disk names follow the probe order), up to 20 s
i=0; while [ $i -lt 200 ] && ! d=$(lq-disk @DATA_SERIAL@ 2>/dev/null); do usleep 100000; i=$((i+1)); done
if [ -n "$d" ] && mount -t ext4 "$d" /data; then echo "init: $d mounted on /data"; else echo "init: no data disk on /data"; fi
mkdir -p /dev/virtio-ports
i=0; while [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r $p/name ] && [ -n "$(cat $p/name)" ] && ln -sf ../${p##*/} /dev/virtio-ports/$(cat $p/name)
  done
  [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && break
  usleep 100000; i=$((i+1)); done
echo "init: $(cut -d' ' -f1 /proc/uptime)s starting qemu-ga"
while true; do
  qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \
          -t /run -f /run/qemu-ga.pid -l /dev/console
  echo "init: qemu-ga exited ($?), restarting"; sleep 1
done
"#;

/// qemu-ga runs `/sbin/shutdown -h -P +0 ...` (`-r` to reboot) for guest-shutdown.
const SHUTDOWN: &str = r#"#!/bin/sh
sync; umount /data 2>/dev/null; sync
case " $* " in *" -r "*) echo b > /proc/sysrq-trigger ;; *) echo o > /proc/sysrq-trigger ;; esac
"#;

/// `lq-disk SERIAL` prints the /dev node of the disk with that serial
/// (virtio-blk: sysfs `serial`; SCSI: VPD page 0x80 after its 4-byte header).
const LQ_DISK: &str = r#"#!/bin/sh
for b in /sys/block/*; do
  s=
  [ -r "$b/serial" ] && s=$(cat "$b/serial")
  [ -z "$s" ] && [ -r "$b/device/vpd_pg80" ] && s=$(tail -c +5 "$b/device/vpd_pg80")
  [ "$s" = "$1" ] && { echo "/dev/${b##*/}"; exit 0; }
done
echo "lq-disk: no disk with serial $1" >&2
exit 1
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Size of the ext4 data disk.
    pub data_size_mib: u64,
    /// MiB of random bytes in /data/fill; 0 for no such file.
    pub data_fill_mib: u64,
    pub data_format: DiskFormat,
    /// More files in /data: (file name, contents).
    pub data_files: Vec<(String, Vec<u8>)>,
    pub memory_mib: u32,
    /// A version under /lib/modules; the newest installed one when `None`.
    pub kernel_version: Option<String>,
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self {
            data_size_mib: 64,
            data_fill_mib: 0,
            data_format: DiskFormat::Qcow2,
            data_files: Vec::new(),
            memory_mib: 256,
            kernel_version: None,
        }
    }
}

/// A bootable guest in one directory: kernel, initramfs and data disk.
#[derive(Clone, Debug)]
pub struct GuestImage {
    dir: PathBuf,
    kernel_version: String,
    kernel: PathBuf,
    initrd: PathBuf,
    data_disk: PathBuf,
    data_format: DiskFormat,
    memory_mib: u32,
}

impl GuestImage {
    /// Builds the guest into `dir` (created if needed, made mode 0755: QEMU
    /// runs as libvirt-qemu and must reach the files, so `dir`'s parents must
    /// be traversable by it too).
    pub fn build(dir: &Path, opts: &GuestOptions) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| context(e, format!("creating {}", dir.display())))?;
        let dir = fs::canonicalize(dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let kernel_version = match &opts.kernel_version {
            Some(v) => v.clone(),
            None => newest_kernel()?,
        };
        let (shared_kernel, shared_initrd) = shared_boot_files(&kernel_version)?;
        // Private copies: while a VM runs libvirt chowns <kernel> and <initrd>
        // to the QEMU user and remembers the owner in xattrs, which daemons
        // sharing one file would fight over.
        let kernel = dir.join(shared_kernel.file_name().ok_or_else(|| io::Error::other("kernel path has no file name"))?);
        let initrd = dir.join("initrd.img");
        for (from, to) in [(&shared_kernel, &kernel), (&shared_initrd, &initrd)] {
            fs::copy(from, to).map_err(|e| context(e, format!("copying {} to {}", from.display(), to.display())))?;
        }
        let data_disk = build_data_disk(&dir, opts)?;
        Ok(Self { dir, kernel_version, kernel, initrd, data_disk, data_format: opts.data_format, memory_mib: opts.memory_mib })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kernel_version(&self) -> &str {
        &self.kernel_version
    }

    /// The PVH `vmlinux`, or the bzImage `vmlinuz` if none could be extracted.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    pub fn initrd(&self) -> &Path {
        &self.initrd
    }

    pub fn data_disk(&self) -> &Path {
        &self.data_disk
    }

    /// Where the serial console of guest `name` is written.
    pub fn console_log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("console-{name}.log"))
    }

    /// The transient TCG domain for guest `name`: direct kernel boot, the data
    /// disk as sda on virtio-scsi, serial console to a file, the agent channel,
    /// and `extra_devices_xml` inside `<devices>`.
    pub fn domain_xml(&self, name: &str, extra_devices_xml: &str) -> io::Result<String> {
        validate_name(name)?;
        let path = |p: &Path| -> io::Result<String> {
            let text = p.to_str().ok_or_else(|| io::Error::other(format!("{} is not UTF-8", p.display())))?;
            Ok(quick_xml::escape::escape(text).into_owned())
        };
        let (kernel, initrd, disk) = (path(&self.kernel)?, path(&self.initrd)?, path(&self.data_disk)?);
        let console = path(&self.console_log_path(name))?;
        let (memory, format) = (self.memory_mib, self.data_format.as_str());
        Ok(format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{format}' cache='none' io='native' discard='unmap'/>
      <source file='{disk}'/>
      <target dev='sda' bus='scsi'/>
      <serial>{DATA_SERIAL}</serial>
    </disk>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{console}'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
{extra_devices_xml}
  </devices>
</domain>
"
        ))
    }
}

/// What a program run in the guest did.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when a signal ended the program.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Shows the output as text, which is what a failed assertion needs.
impl std::fmt::Debug for ExecOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOutput")
            .field("exit_code", &self.exit_code)
            .field("signal", &self.signal)
            .field("stdout", &self.stdout_text())
            .field("stderr", &self.stderr_text())
            .finish()
    }
}

/// A running guest whose agent answers. Dropping it destroys the domain.
pub struct Guest<'a> {
    libvirtd: &'a Libvirtd,
    name: String,
    console: PathBuf,
    boot_time: Duration,
}

impl<'a> Guest<'a> {
    /// Starts a transient domain (see [`GuestImage::domain_xml`]) and waits up
    /// to 60 s until its agent answers `guest-ping`.
    pub fn boot(libvirtd: &'a Libvirtd, image: &GuestImage, name: &str, extra_devices_xml: &str) -> io::Result<Self> {
        let xml = image.domain_xml(name, extra_devices_xml)?;
        let file = image.dir.join(format!("domain-{name}.xml"));
        fs::write(&file, xml).map_err(|e| context(e, format!("writing {}", file.display())))?;
        let started = Instant::now();
        libvirtd
            .virsh(&[OsStr::new("create"), file.as_os_str()])
            .map_err(|e| context(e, format!("starting guest {name}")))?;
        // From here on an error drops `guest`, which destroys the domain.
        let mut guest = Self { libvirtd, name: name.to_owned(), console: image.console_log_path(name), boot_time: Duration::ZERO };
        guest.wait_for_agent(started)?;
        guest.boot_time = started.elapsed();
        Ok(guest)
    }

    fn wait_for_agent(&self, started: Instant) -> io::Result<()> {
        loop {
            let Err(e) = self.agent_command(r#"{"execute":"guest-ping"}"#) else { return Ok(()) };
            let state = self.libvirtd.virsh(&["domstate", &self.name]).map(|s| s.trim().to_owned());
            let running = matches!(&state, Ok(s) if s == "running");
            if !running || started.elapsed() >= BOOT_DEADLINE {
                let kind = if running { io::ErrorKind::TimedOut } else { io::ErrorKind::Other };
                let state = state.unwrap_or_else(|e| e.to_string());
                return Err(io::Error::new(
                    kind,
                    format!(
                        "guest {}: no answer to guest-ping after {:?} (last: {e}; domain state: {state})\n{}",
                        self.name,
                        started.elapsed(),
                        self.failure_report()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// From `virsh create` to the first answered `guest-ping`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Everything the guest wrote to its serial console so far.
    pub fn console_log(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The ends of the console and QEMU logs, for failure messages.
    pub fn failure_report(&self) -> String {
        format!(
            "--- console ({}):\n{}\n--- qemu log:\n{}",
            self.console.display(),
            last_lines(&self.console_log(), 40),
            last_lines(&self.libvirtd.qemu_log(&self.name), 20)
        )
    }

    /// Sends one agent command (JSON text, as `virsh qemu-agent-command`
    /// takes it); its `return` value.
    pub fn agent_command(&self, command: &str) -> io::Result<Value> {
        let out =
            self.libvirtd.virsh(&["qemu-agent-command", "--timeout", AGENT_TIMEOUT_SECS, &self.name, command])?;
        let reply: Value = serde_json::from_str(out.trim()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("agent reply to {command} is not JSON ({e}): {out}"))
        })?;
        reply.get("return").cloned().ok_or_else(|| io::Error::other(format!("agent reply to {command} has no return: {reply}")))
    }

    /// Runs `argv` in the guest (PATH lookup) and waits up to 60 s for it.
    pub fn exec(&self, argv: &[&str]) -> io::Result<ExecOutput> {
        self.exec_with_deadline(argv, EXEC_DEADLINE)
    }

    pub fn exec_with_deadline(&self, argv: &[&str], deadline: Duration) -> io::Result<ExecOutput> {
        let (path, args) =
            argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        let started = json!({"execute": "guest-exec", "arguments": {"path": path, "arg": args, "capture-output": true}});
        let pid = self
            .agent_command(&started.to_string())
            .map_err(|e| context(e, format!("guest {}: running {argv:?}", self.name)))?
            .get("pid")
            .and_then(Value::as_i64)
            .ok_or_else(|| io::Error::other(format!("guest {}: guest-exec of {argv:?} returned no pid", self.name)))?;
        let query = json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}).to_string();
        let until = Instant::now() + deadline;
        loop {
            let status = self.agent_command(&query)?;
            let exited = status.get("exited").and_then(Value::as_bool).ok_or_else(|| {
                io::Error::other(format!("guest {}: guest-exec-status without exited: {status}", self.name))
            })?;
            if exited {
                return exec_output(&status).map_err(|e| context(e, format!("guest {}: {argv:?}", self.name)));
            }
            if Instant::now() >= until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("guest {}: {argv:?} (pid {pid}) still running after {deadline:?}", self.name),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `argv` in the guest; its stdout, or an error with its stderr when
    /// it does not exit 0.
    pub fn exec_ok(&self, argv: &[&str]) -> io::Result<String> {
        let out = self.exec(argv)?;
        if !out.success() {
            return Err(io::Error::other(format!(
                "guest {}: {argv:?} failed (exit {:?}, signal {:?}): {}",
                self.name,
                out.exit_code,
                out.signal,
                out.stderr_text().trim()
            )));
        }
        Ok(out.stdout_text())
    }

    /// The guest's device node (`/dev/sdb`, `/dev/vda`) for the disk whose
    /// `<serial>` is `serial`; works for hot-plugged disks too. Guest names
    /// need not match libvirt's targets: the kernel names SCSI disks in the
    /// order it finds them, and QEMU reports unit 2 before unit 1.
    pub fn disk_by_serial(&self, serial: &str) -> io::Result<String> {
        Ok(self.exec_ok(&["lq-disk", serial])?.trim().to_owned())
    }
}

impl Drop for Guest<'_> {
    fn drop(&mut self) {
        let _ = self.libvirtd.virsh(&["destroy", &self.name]);
    }
}

fn exec_output(status: &Value) -> io::Result<ExecOutput> {
    if status.get("out-truncated").and_then(Value::as_bool) == Some(true)
        || status.get("err-truncated").and_then(Value::as_bool) == Some(true)
    {
        return Err(io::Error::other("the agent truncated the program's output"));
    }
    let code = |key: &str| -> io::Result<Option<i32>> {
        status
            .get(key)
            .map(|v| {
                v.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| io::Error::other(format!("{key} is not an exit status: {v}")))
            })
            .transpose()
    };
    let data = |key: &str| -> io::Result<Vec<u8>> {
        match status.get(key) {
            None => Ok(Vec::new()),
            Some(v) => decode_base64(v.as_str().ok_or_else(|| io::Error::other(format!("{key} is not a string: {v}")))?),
        }
    };
    Ok(ExecOutput { exit_code: code("exitcode")?, signal: code("signal")?, stdout: data("out-data")?, stderr: data("err-data")? })
}

/// Standard base64 with padding, as the agent encodes `out-data`.
fn decode_base64(text: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("byte {c:#04x} is not base64"))),
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn validate_name(name: &str) -> io::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("guest name {name:?} must match ^[a-z0-9][a-z0-9._-]{{0,62}}$")))
    }
}

fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `/usr/sbin/NAME` when it exists: a non-login PATH may lack the sbin dirs.
fn sbin(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists()).unwrap_or_else(|| name.into())
}

/// The newest kernel version with both modules and a /boot/vmlinuz.
fn newest_kernel() -> io::Result<String> {
    let missing = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no Debian kernel installed (/lib/modules/V with /boot/vmlinuz-V): scripts/install-deps.sh test installs linux-image-amd64",
        )
    };
    let entries = fs::read_dir("/lib/modules").map_err(|_| missing())?;
    let mut versions = Vec::new();
    for entry in entries {
        let version = entry?.file_name().to_string_lossy().into_owned();
        if Path::new(&format!("/boot/vmlinuz-{version}")).is_file() {
            versions.push(version);
        }
    }
    versions.into_iter().max_by(|a, b| version_cmp(a, b)).ok_or_else(missing)
}

/// `sort -V` order: digit runs compare as numbers.
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, usize, &str)> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let digits = c.is_ascii_digit();
            let end = rest.find(|ch: char| ch.is_ascii_digit() != digits).unwrap_or(rest.len());
            let chunk = &rest[..end];
            let chunk = if digits { chunk.trim_start_matches('0') } else { chunk };
            // (is a number, length, text): numbers of more digits are larger.
            out.push((digits, if digits { chunk.len() } else { 0 }, chunk));
            rest = &rest[end..];
        }
        out
    }
    chunks(a).cmp(&chunks(b))
}

/// The kernel and initrd.img for `kver`, built once into a shared temp dir.
fn shared_boot_files(kver: &str) -> io::Result<(PathBuf, PathBuf)> {
    let vmlinuz = PathBuf::from(format!("/boot/vmlinuz-{kver}"));
    if !vmlinuz.is_file() || !Path::new(&format!("/lib/modules/{kver}")).is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("kernel {kver} is not installed (no {} or /lib/modules/{kver})", vmlinuz.display()),
        ));
    }
    let parent = std::env::temp_dir().join("limiquantix-testkit");
    let cache = parent.join(format!("guest-{kver}-{:016x}", cache_key(&vmlinuz)?));
    if !cache.is_dir() {
        fs::create_dir_all(&parent)?;
        let staging = tempfile::Builder::new().prefix(".guest-staging-").tempdir_in(&parent)?;
        build_initrd(staging.path(), kver).map_err(|e| context(e, format!("building the guest initramfs for {kver}")))?;
        extract_kernel(&vmlinuz, staging.path())?;
        let staging = staging.keep();
        // Another test may have won the race; its copy is as good.
        if fs::rename(&staging, &cache).is_err() {
            let _ = fs::remove_dir_all(&staging);
            if !cache.is_dir() {
                return Err(io::Error::other(format!("cannot move the built guest to {}", cache.display())));
            }
        }
    }
    let vmlinux = cache.join("vmlinux");
    let kernel = if vmlinux.is_file() { vmlinux } else { cache.join("vmlinuz") };
    Ok((kernel, cache.join("initrd.img")))
}

/// Changes to the scripts or the packages they copy give a new cache dir.
fn cache_key(vmlinuz: &Path) -> io::Result<u64> {
    let mut h = DefaultHasher::new();
    (INIT, SHUTDOWN, LQ_DISK, DATA_SERIAL, MODULES).hash(&mut h);
    for file in [vmlinuz, Path::new(BUSYBOX), Path::new(QEMU_GA)] {
        let meta = fs::metadata(file).map_err(|e| context(e, file.display()))?;
        (file, meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut h);
    }
    Ok(h.finish())
}

fn build_initrd(out: &Path, kver: &str) -> io::Result<()> {
    let root = out.join("root");
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "data", "etc", "lib/modules", "var"] {
        fs::create_dir_all(root.join(d))?;
    }
    symlink("/run", root.join("var/run"))?;

    let busybox = root.join("bin/busybox");
    fs::copy(BUSYBOX, &busybox).map_err(|e| context(e, format!("copying {BUSYBOX} (busybox-static)")))?;
    for applet in run_command(Command::new(&busybox).arg("--list"))?.lines() {
        let link = root.join("bin").join(applet);
        if fs::symlink_metadata(&link).is_err() {
            symlink("busybox", link)?;
        }
    }

    fs::copy(QEMU_GA, root.join("usr/sbin/qemu-ga")).map_err(|e| context(e, format!("copying {QEMU_GA}")))?;
    let ldd = run_command(Command::new("ldd").arg(QEMU_GA))?;
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = root.join(lib.trim_start_matches('/'));
        fs::create_dir_all(to.parent().ok_or_else(|| io::Error::other(format!("{lib} has no parent")))?)?;
        fs::copy(lib, &to).map_err(|e| context(e, format!("copying {lib}")))?;
    }

    // insmod order from modules.dep and softdeps, deduplicated.
    let mut kos: Vec<String> = Vec::new();
    for module in MODULES {
        let deps = run_command(Command::new(sbin("modprobe")).args(["-S", kver, "--show-depends", module]))?;
        for line in deps.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("insmod")
                && let Some(ko) = words.next()
                && !kos.iter().any(|k| k == ko)
            {
                kos.push(ko.to_owned());
            }
        }
    }
    let mut list = String::new();
    for ko in &kos {
        let name = Path::new(ko).file_name().ok_or_else(|| io::Error::other(format!("module path {ko}")))?;
        fs::copy(ko, root.join("lib/modules").join(name)).map_err(|e| context(e, format!("copying {ko}")))?;
        list.push_str(&name.to_string_lossy());
        list.push('\n');
    }
    fs::write(root.join("modules.list"), list)?;

    let scripts = [
        ("init", INIT.replace("@DATA_SERIAL@", DATA_SERIAL)),
        ("sbin/shutdown", SHUTDOWN.to_owned()),
        ("bin/lq-disk", LQ_DISK.to_owned()),
    ];
    for (path, text) in scripts {
        let file = root.join(path);
        fs::write(&file, text)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755))?;
    }

    pack_initramfs(&root, &out.join("initrd.img"))?;
    fs::remove_dir_all(&root)
}

/// `find . | cpio -o -H newc | gzip -1` run from `root`.
fn pack_initramfs(root: &Path, out: &Path) -> io::Result<()> {
    let mut list = Vec::new();
    list_tree(root, Path::new("."), &mut list)?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| context(e, "running cpio"))?;
    let archive = cpio.stdout.take().ok_or_else(|| io::Error::other("cpio has no stdout"))?;
    let gzip = Command::new("gzip")
        .arg("-1")
        .stdin(archive)
        .stdout(File::create(out)?)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| context(e, "running gzip"))?;
    // The list is far smaller than a pipe buffer, and gzip drains cpio's output.
    cpio.stdin.take().ok_or_else(|| io::Error::other("cpio has no stdin"))?.write_all(&list)?;
    for (name, child) in [("cpio", cpio), ("gzip", gzip)] {
        let done = child.wait_with_output()?;
        if !done.status.success() {
            return Err(io::Error::other(format!(
                "{name} failed ({}): {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Paths under `root` as `find .` prints them: each directory before its entries.
fn list_tree(root: &Path, rel: &Path, out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(rel.as_os_str().as_encoded_bytes());
    out.push(b'\n');
    let mut entries = fs::read_dir(root.join(rel))?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_tree(root, &path, out)?;
        } else {
            out.extend_from_slice(path.as_os_str().as_encoded_bytes());
            out.push(b'\n');
        }
    }
    Ok(())
}

/// The ELF `vmlinux` inside the bzImage (what the kernel's
/// scripts/extract-vmlinux does): QEMU boots it through its PVH note, which
/// skips ~5 s of XZ decompression under TCG. Falls back to the bzImage.
fn extract_kernel(vmlinuz: &Path, out: &Path) -> io::Result<PathBuf> {
    let image = fs::read(vmlinuz).map_err(|e| context(e, vmlinuz.display()))?;
    let vmlinux = out.join("vmlinux");
    for (magic, tool) in [(&b"\xfd7zXZ\x00"[..], "xz"), (&b"\x1f\x8b\x08"[..], "gzip")] {
        let Some(offset) = image.windows(magic.len()).position(|w| w == magic) else { continue };
        let mut compressed = File::open(vmlinuz)?;
        compressed.seek(SeekFrom::Start(offset as u64))?;
        // The data after the compressed kernel makes the tool exit non-zero:
        // judge by what it wrote.
        Command::new(tool)
            .arg("-dc")
            .stdin(compressed)
            .stdout(File::create(&vmlinux)?)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| context(e, format!("running {tool}")))?;
        let mut head = [0u8; 4];
        if File::open(&vmlinux)?.read_exact(&mut head).is_ok() && &head == b"\x7fELF" {
            return Ok(vmlinux);
        }
        fs::remove_file(&vmlinux)?;
    }
    eprintln!("testkit: no ELF vmlinux in {}; booting the bzImage (~5 s slower)", vmlinuz.display());
    let bzimage = out.join("vmlinuz");
    fs::copy(vmlinuz, &bzimage)?;
    Ok(bzimage)
}

fn build_data_disk(dir: &Path, opts: &GuestOptions) -> io::Result<PathBuf> {
    let fill = dir.join("datafill");
    if fill.exists() {
        fs::remove_dir_all(&fill)?;
    }
    fs::create_dir(&fill)?;
    fs::write(fill.join("hello.txt"), HELLO_TEXT)?;
    if opts.data_fill_mib > 0 {
        let mut random = File::open("/dev/urandom")?.take(opts.data_fill_mib << 20);
        io::copy(&mut random, &mut File::create(fill.join("fill"))?)?;
    }
    for (name, contents) in &opts.data_files {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            let message = format!("data file name {name:?} is not a plain file name");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        fs::write(fill.join(name), contents)?;
    }
    let raw = dir.join("data.raw");
    File::create(&raw)?.set_len(opts.data_size_mib << 20)?;
    run_command(Command::new(sbin("mkfs.ext4")).args(["-q", "-F", "-L", "data", "-d"]).arg(&fill).arg(&raw))
        .map_err(|e| context(e, "making the guest's data disk"))?;
    fs::remove_dir_all(&fill)?;
    match opts.data_format {
        DiskFormat::Raw => Ok(raw),
        DiskFormat::Qcow2 => {
            let qcow2 = dir.join("data.qcow2");
            run_command(Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&qcow2))?;
            fs::remove_file(&raw)?;
            Ok(qcow2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_glib_encodes() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8gZnJvbSB0aGUgaG9zdAo=").unwrap(), HELLO_TEXT.as_bytes());
        assert_eq!(decode_base64("AP8=").unwrap(), [0x00, 0xff]);
        assert!(decode_base64("a b").is_err());
    }

    #[test]
    fn versions_sort_like_sort_v() {
        assert_eq!(version_cmp("6.1.0-57-amd64", "6.1.0-9-amd64"), Ordering::Greater);
        assert_eq!(version_cmp("6.10.0-1-amd64", "6.9.0-1-amd64"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0-57-amd64", "6.1.0-57-amd64"), Ordering::Equal);
    }

    #[test]
    fn guest_names_are_checked() {
        assert!(validate_name("lq-guest.1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }
}
