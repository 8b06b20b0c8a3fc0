//! Typed API over `qemu-img`: create, info, check, convert (with progress),
//! resize and internal snapshots. JSON output is parsed into structs; nothing
//! is scraped from human-readable text except convert's progress meter, which
//! has no other form and only feeds progress bars.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::confine::Confinement;
use super::exec::{ResourceLimits, ToolCommand};
use crate::error::ToolError;
use crate::image::ImageFile;
use crate::model::ImageFormat;

const PROGRAM: &str = "qemu-img";

/// Limits for inspecting an untrusted image (as OpenStack does): enough for
/// any real image header, far below what a crafted one would need to hurt.
const UNTRUSTED_LIMITS: ResourceLimits = ResourceLimits { address_space_bytes: 1 << 30, cpu_seconds: 30 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolTimeouts {
    /// create, info, resize, snapshot: metadata-only operations.
    pub metadata: Duration,
    /// Inspection of an untrusted image (info, check).
    pub inspect: Duration,
    /// Data copies (convert).
    pub copy: Duration,
}

impl Default for ToolTimeouts {
    fn default() -> Self {
        Self {
            metadata: Duration::from_secs(60),
            inspect: Duration::from_secs(120),
            copy: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    Off,
    /// Allocate the space up front (fallocate), without writing zeroes.
    Falloc,
}

impl Preallocation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Falloc => "falloc",
        }
    }
}

/// The backing file of a new overlay: a name relative to the overlay's
/// directory, and its format (always recorded, so nothing is probed).
#[derive(Debug, Clone, Copy)]
pub struct Backing<'a> {
    pub file: &'a str,
    pub format: ImageFormat,
}

#[derive(Debug, Clone, Copy)]
pub struct CreateOptions<'a> {
    pub format: ImageFormat,
    /// None for an overlay that takes its backing file's size.
    pub size_bytes: Option<u64>,
    pub preallocation: Preallocation,
    pub backing: Option<Backing<'a>>,
}

/// A copy of one of the node's own volumes (trusted) into a new file.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions<'a> {
    pub source: &'a Path,
    pub source_format: ImageFormat,
    /// Copy the state of this internal snapshot instead of the current one.
    pub snapshot: Option<&'a str>,
    pub target: &'a Path,
    pub target_format: ImageFormat,
    pub preallocation: Preallocation,
    /// The target exists (a block device of the final size): fill it, create nothing.
    pub target_exists: bool,
}

/// Where an import writes: a target made beforehand, which qemu-img only
/// fills (`convert -n`), so the confined copy needs no directory access.
#[derive(Debug, Clone, Copy)]
pub enum ImportTarget<'a> {
    /// An open file (read-write) of the final size and format, new (reads as zeros).
    File(&'a std::fs::File),
    /// An open block device (an LVM volume) of at least the image's size,
    /// whose old content is overwritten.
    Device(&'a std::fs::File),
    /// An existing iSCSI LUN (its old content overwritten), as a QEMU option
    /// string (`driver=raw,file.driver=iscsi,…`) whose CHAP secret, if any,
    /// is the secret object [`ISCSI_SECRET_ID`] read from `secret_file`
    /// (0600): never on the command line.
    Iscsi { image_opts: &'a str, secret_file: Option<&'a Path> },
    /// An RBD image of the final size, reached through a Ceph conf file and
    /// a client id: the key stays in the keyring, never on the command line.
    Rbd { pool: &'a str, namespace: &'a str, image: &'a str, conf: &'a Path, keyring: &'a Path, client_id: &'a str },
    /// A file on an NFS export, by its `nfs://` URL (libnfs: no file is
    /// opened on this host, so the confinement grants nothing more).
    Nfs { url: &'a Path },
}

/// One of this node's own volumes as qemu-img reads it where it lives: the
/// source of a copy into another pool (a move). Trusted data, but read
/// under the same confinement as an import, granted only what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeLocation {
    /// An image file, and the directory of its backing chain (a linked
    /// clone is read through its base: the copy is flattened).
    File { path: std::path::PathBuf, chain_dir: std::path::PathBuf },
    /// An RBD image; the key stays in the keyring.
    Rbd { pool: String, namespace: String, image: String, conf: std::path::PathBuf, keyring: std::path::PathBuf, client_id: String },
    /// A file on an NFS export, by its `nfs://` URL.
    Nfs { url: std::path::PathBuf },
}

/// What an import reads.
#[derive(Debug, Clone)]
pub enum ImportSource<'a> {
    /// An image from outside, inspected and open.
    Outside(&'a ImageFile),
    /// A volume of this node (another pool's).
    Volume(&'a VolumeLocation),
    /// A volume another node exports over NBD (raw data, TLS-PSK).
    Remote(&'a crate::nbd::NbdSource),
}

/// The id of the secret object an iSCSI target's option string refers to.
pub const ISCSI_SECRET_ID: &str = "lqchap";

/// `qemu-img info --output=json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    pub backing_filename: Option<String>,
    pub backing_filename_format: Option<String>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub snapshots: Vec<SnapshotEntry>,
    pub format_specific: Option<FormatSpecific>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotEntry {
    pub id: String,
    pub name: String,
    pub vm_state_size: u64,
    pub date_sec: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FormatSpecific {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: FormatSpecificData,
}

/// The parts of format-specific info the engine looks at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FormatSpecificData {
    /// qcow2: an external data file (refused for untrusted images).
    pub data_file: Option<String>,
    /// qcow2: the image was marked corrupt by QEMU.
    #[serde(default)]
    pub corrupt: bool,
    /// vmdk: monolithicSparse, streamOptimized, monolithicFlat...
    pub create_type: Option<String>,
    /// vmdk: the files holding the data.
    #[serde(default)]
    pub extents: Vec<VmdkExtent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VmdkExtent {
    pub filename: String,
}

/// `qemu-img check --output=json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckReport {
    #[serde(default)]
    pub check_errors: u64,
    #[serde(default)]
    pub corruptions: u64,
    #[serde(default)]
    pub leaks: u64,
}

#[derive(Debug, Clone)]
pub struct QemuImg {
    timeouts: ToolTimeouts,
    /// Bandwidth limit of every data copy, bytes per second: convert's `-r`,
    /// and the engine's own copies ask it here.
    copy_rate: Option<u64>,
}

impl QemuImg {
    pub fn new(timeouts: ToolTimeouts) -> Self {
        Self { timeouts, copy_rate: None }
    }

    /// Limits the bandwidth of every convert (None or 0: unlimited).
    pub fn with_copy_rate(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.copy_rate = bytes_per_sec.filter(|r| *r > 0);
        self
    }

    pub fn copy_rate(&self) -> Option<u64> {
        self.copy_rate
    }

    pub fn timeouts(&self) -> ToolTimeouts {
        self.timeouts
    }

    fn command(&self, timeout: Duration) -> ToolCommand {
        ToolCommand::new(PROGRAM, timeout)
    }

    pub async fn create(&self, path: &Path, opts: &CreateOptions<'_>) -> Result<(), ToolError> {
        // Off is qemu-img's default, and NFS targets take no such option.
        let mut options = Vec::new();
        if opts.preallocation != Preallocation::Off {
            options.push(format!("preallocation={}", opts.preallocation.as_str()));
        }
        let mut cmd = self.command(self.timeouts.metadata).args(["create", "-q", "-f", opts.format.as_str()]);
        if let Some(b) = opts.backing {
            cmd = cmd.args(["-b", b.file, "-F", b.format.as_str()]);
            // An overlay never preallocates: its point is to share the base's data.
            options.clear();
        }
        if !options.is_empty() {
            cmd = cmd.arg("-o").arg(options.join(","));
        }
        cmd = cmd.arg("--").arg(path);
        if let Some(size) = opts.size_bytes {
            cmd = cmd.arg(size.to_string());
        }
        cmd.run().await.map(drop)
    }

    /// Info on an image the node made. `force_share` reads it even while a VM
    /// holds it open (sizes and snapshot lists stay meaningful).
    pub async fn info(&self, path: &Path, format: ImageFormat, force_share: bool) -> Result<ImageInfo, ToolError> {
        let mut cmd = self.command(self.timeouts.metadata).args(["info", "--output=json", "-f", format.as_str()]);
        if force_share {
            cmd = cmd.arg("--force-share");
        }
        parse_json(cmd.arg("--").arg(path).run().await?.stdout)
    }

    /// A run of qemu-img on an image from outside: it reads the open file,
    /// can open nothing else (see `tools::confine`), and runs under limits.
    fn untrusted(cmd: ToolCommand, image: &ImageFile, confinement: Confinement, limits: ResourceLimits) -> ToolCommand {
        let fd = image.raw_fd();
        cmd.inherit_fd(fd).confine(confinement.read_fd(fd)).limits(limits)
    }

    /// Info on an image from outside. `format` None lets qemu-img probe (used
    /// only to compare against the declared format).
    pub async fn info_untrusted(&self, image: &ImageFile, format: Option<ImageFormat>) -> Result<ImageInfo, ToolError> {
        let mut cmd = self.command(self.timeouts.inspect).args(["info", "--output=json"]);
        if let Some(f) = format {
            cmd = cmd.args(["-f", f.as_str()]);
        }
        let cmd = cmd.arg("--").arg(image.child_path());
        parse_json(Self::untrusted(cmd, image, Confinement::new(), UNTRUSTED_LIMITS).run().await?.stdout)
    }

    /// Consistency check of an image from outside. Exit status 2
    /// (corruptions) and 3 (leaks) still produce a report; status 1 (could
    /// not check) is an error.
    pub async fn check(&self, image: &ImageFile, format: ImageFormat) -> Result<CheckReport, ToolError> {
        let cmd = self.command(self.timeouts.inspect).args(["check", "--output=json", "-f", format.as_str(), "--"]).arg(image.child_path());
        let cmd = Self::untrusted(cmd, image, Confinement::new(), UNTRUSTED_LIMITS);
        parse_json(cmd.accept_exit_codes(&[0, 2, 3]).run().await?.stdout)
    }

    /// Copies an image from outside, or another pool's volume, into `target`
    /// (made beforehand, at least the image's size), reporting progress as
    /// a fraction in [0, 1]. Under the inspection's memory limit; its CPU
    /// time bounded by the copy timeout.
    pub async fn import(
        &self,
        source: ImportSource<'_>,
        format: ImageFormat,
        target: ImportTarget<'_>,
        target_format: ImageFormat,
        on_progress: impl FnMut(f64),
    ) -> Result<(), ToolError> {
        // The target exists: fill it, create nothing (`-n`). A new one reads
        // as zeros: writing no zeros keeps it sparse (and a thick target's
        // space mapped). A device or LUN holds old data: zeros are written.
        // An option string names its format itself: a remote source's, an
        // iSCSI target's.
        let source_format = (!matches!(source, ImportSource::Remote(_))).then_some(format);
        let mut cmd = match target {
            ImportTarget::Iscsi { .. } => self.convert_base(source_format),
            _ => self.convert_base(source_format).args(["-O", target_format.as_str()]),
        }
        .arg("-n");
        if !matches!(target, ImportTarget::Device(_) | ImportTarget::Iscsi { .. }) {
            cmd = cmd.arg("--target-is-zero");
        }
        if let ImportTarget::Iscsi { secret_file: Some(file), .. } = target {
            // Commas are doubled in QEMU option values.
            let path = file.to_string_lossy().replace(',', ",,");
            cmd = cmd.arg("--object").arg(format!("secret,id={ISCSI_SECRET_ID},file={path}"));
        }
        if let ImportTarget::Iscsi { .. } = target {
            cmd = cmd.arg("--target-image-opts");
        }
        let (cmd, mut confinement) = match source {
            ImportSource::Outside(image) => (cmd.arg("--").arg(image.child_path()), Confinement::new()),
            ImportSource::Volume(VolumeLocation::File { path, chain_dir }) => {
                (cmd.arg("--").arg(path), Confinement::new().read_path(path).read_path(chain_dir))
            }
            ImportSource::Volume(VolumeLocation::Rbd { pool, namespace, image, conf, keyring, client_id }) => {
                (cmd.arg("--").arg(rbd_filename(pool, namespace, image, conf, client_id)), Confinement::new().read_path(conf).read_path(keyring))
            }
            ImportSource::Volume(VolumeLocation::Nfs { url }) => (cmd.arg("--").arg(url), Confinement::new()),
            ImportSource::Remote(nbd) => {
                let cmd = cmd.arg("--object").arg(nbd.psk_dir.tls_object("client", Some(nbd.psk.identity())));
                (cmd.arg("--image-opts").arg("--").arg(nbd.image_opts()), Confinement::new().read_path(nbd.psk_dir.path()))
            }
        };
        let cmd = match target {
            ImportTarget::File(file) | ImportTarget::Device(file) => {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                confinement = confinement.write_fd(fd);
                cmd.arg(format!("/proc/self/fd/{fd}")).inherit_fd(fd)
            }
            ImportTarget::Rbd { pool, namespace, image: name, conf, keyring, client_id } => {
                confinement = confinement.read_path(conf).read_path(keyring);
                cmd.arg(rbd_filename(pool, namespace, name, conf, client_id))
            }
            ImportTarget::Nfs { url } => cmd.arg(url),
            ImportTarget::Iscsi { image_opts, secret_file } => {
                if let Some(file) = secret_file {
                    confinement = confinement.read_path(file);
                }
                cmd.arg(image_opts)
            }
        };
        let limits = ResourceLimits { address_space_bytes: UNTRUSTED_LIMITS.address_space_bytes, cpu_seconds: self.timeouts.copy.as_secs() };
        let cmd = match source {
            ImportSource::Outside(image) => Self::untrusted(cmd, image, confinement, limits),
            ImportSource::Volume(_) | ImportSource::Remote(_) => cmd.confine(confinement).limits(limits),
        };
        Self::run_convert(cmd, on_progress).await
    }

    /// `qemu-img convert` with progress, out-of-order writes and the copy
    /// bandwidth limit; source and target follow.
    fn convert_command(&self, source_format: ImageFormat, target_format: ImageFormat) -> ToolCommand {
        self.convert_base(Some(source_format)).args(["-O", target_format.as_str()])
    }

    /// `convert` without a target format (a target option string names
    /// it), and without a source format when an option string names that.
    fn convert_base(&self, source_format: Option<ImageFormat>) -> ToolCommand {
        let mut cmd = self.command(self.timeouts.copy).args([
            "convert",
            "-p",
            "-W", // out-of-order writes: faster, and fine for a new target
        ]);
        if let Some(format) = source_format {
            cmd = cmd.args(["-f", format.as_str()]);
        }
        if let Some(rate) = self.copy_rate {
            cmd = cmd.arg("-r").arg(rate.to_string());
        }
        cmd
    }

    async fn run_convert(cmd: ToolCommand, mut on_progress: impl FnMut(f64)) -> Result<(), ToolError> {
        cmd.run_streaming(|line| {
            if let Some(fraction) = parse_progress(line) {
                on_progress(fraction);
            }
        })
        .await
        .map(drop)
    }

    /// Copies one of the node's own volumes into a new file, reporting
    /// progress as a fraction in [0, 1].
    pub async fn convert(&self, opts: &ConvertOptions<'_>, on_progress: impl FnMut(f64)) -> Result<(), ToolError> {
        let mut cmd = self.convert_command(opts.source_format, opts.target_format);
        if let Some(snap) = opts.snapshot {
            cmd = cmd.arg("-l").arg(format!("snapshot.name={snap}"));
        }
        if opts.target_exists {
            cmd = cmd.arg("-n");
        } else if opts.preallocation != Preallocation::Off {
            cmd = cmd.arg("-o").arg(format!("preallocation={}", opts.preallocation.as_str()));
        }
        Self::run_convert(cmd.arg("--").arg(opts.source).arg(opts.target), on_progress).await
    }

    pub async fn resize(
        &self,
        path: &Path,
        format: ImageFormat,
        size_bytes: u64,
        preallocation: Preallocation,
    ) -> Result<(), ToolError> {
        let mut cmd = self.command(self.timeouts.metadata).args(["resize", "-q", "-f", format.as_str()]);
        if preallocation != Preallocation::Off {
            cmd = cmd.arg(format!("--preallocation={}", preallocation.as_str()));
        }
        cmd.arg("--")
            .arg(path)
            .arg(size_bytes.to_string())
            .run()
            .await
            .map(drop)
    }

    /// Merges a qcow2 overlay's backing chain into it (`rebase -b ""`).
    pub async fn rebase_flatten(&self, path: &Path, mut on_progress: impl FnMut(f64)) -> Result<(), ToolError> {
        self.command(self.timeouts.copy)
            .args(["rebase", "-p", "-f", "qcow2", "-b", "", "--"])
            .arg(path)
            .run_streaming(|line| {
                if let Some(f) = parse_progress(line) {
                    on_progress(f);
                }
            })
            .await
            .map(drop)
    }

    pub async fn snapshot_create(&self, path: &Path, name: &str) -> Result<(), ToolError> {
        self.snapshot("-c", path, name).await
    }

    pub async fn snapshot_apply(&self, path: &Path, name: &str) -> Result<(), ToolError> {
        self.snapshot("-a", path, name).await
    }

    pub async fn snapshot_delete(&self, path: &Path, name: &str) -> Result<(), ToolError> {
        self.snapshot("-d", path, name).await
    }

    async fn snapshot(&self, action: &str, path: &Path, name: &str) -> Result<(), ToolError> {
        // `qemu-img snapshot` has no -f: the format is forced through --image-opts.
        self.command(self.timeouts.metadata)
            .args(["snapshot", "-q", action, name, "--image-opts"])
            .arg(qcow2_image_opts(path))
            .run()
            .await
            .map(drop)
    }
}

/// `driver=qcow2,file.filename=PATH` with commas in PATH doubled (QEMU's
/// escape). An `nfs://HOST/PATH` URL (a volume on an export) becomes the NFS
/// driver's own options: with --image-opts QEMU does not parse URLs. Local
/// paths are absolute, never URLs.
fn qcow2_image_opts(path: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let escape = |value: &[u8]| -> Vec<u8> { value.iter().flat_map(|&b| if b == b',' { vec![b',', b','] } else { vec![b] }).collect() };
    let bytes = path.as_os_str().as_bytes();
    let opts = match bytes.strip_prefix(b"nfs://") {
        Some(rest) => {
            let split = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            let (host, file) = rest.split_at(split);
            let host = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")).unwrap_or(host);
            [b"driver=qcow2,file.driver=nfs,file.server.type=inet,file.server.host=".as_slice(), &escape(host), b",file.path=", &escape(file)]
                .concat()
        }
        None => [b"driver=qcow2,file.filename=".as_slice(), &escape(bytes)].concat(),
    };
    std::ffi::OsString::from_vec(opts)
}

/// `rbd:POOL/[NAMESPACE/]IMAGE:conf=PATH:id=ID`, with QEMU's backslash
/// escape before the separators a part holds (`/` and `@` split names, `:`
/// splits options).
pub(crate) fn rbd_filename(pool: &str, namespace: &str, image: &str, conf: &Path, client_id: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    fn escaped(out: &mut Vec<u8>, part: &[u8], separators: &[u8]) {
        for &b in part {
            if b == b'\\' || separators.contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    const NAME: &[u8] = b":/@";
    const VALUE: &[u8] = b":";
    let mut name = b"rbd:".to_vec();
    escaped(&mut name, pool.as_bytes(), NAME);
    name.push(b'/');
    if !namespace.is_empty() {
        escaped(&mut name, namespace.as_bytes(), NAME);
        name.push(b'/');
    }
    escaped(&mut name, image.as_bytes(), NAME);
    name.extend_from_slice(b":conf=");
    escaped(&mut name, conf.as_os_str().as_bytes(), VALUE);
    name.extend_from_slice(b":id=");
    escaped(&mut name, client_id.as_bytes(), VALUE);
    std::ffi::OsString::from_vec(name)
}

fn parse_json<T: serde::de::DeserializeOwned>(stdout: Vec<u8>) -> Result<T, ToolError> {
    serde_json::from_slice(&stdout)
        .map_err(|e| ToolError::BadOutput { program: PROGRAM.into(), detail: e.to_string() })
}

/// `    (42.17/100%)` → 0.4217.
fn parse_progress(line: &str) -> Option<f64> {
    let inner = line.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
    let pct: f64 = inner.parse().ok()?;
    (0.0..=100.0).contains(&pct).then_some(pct / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_opts_escape_commas() {
        assert_eq!(qcow2_image_opts(Path::new("/p/a,b.qcow2")), "driver=qcow2,file.filename=/p/a,,b.qcow2");
    }

    #[test]
    fn rbd_targets_escape_qemu_separators() {
        let conf = Path::new("/var/lib/lq:x/ceph/p.conf");
        assert_eq!(rbd_filename("rbd", "", "lq-1", conf, "admin"), r"rbd:rbd/lq-1:conf=/var/lib/lq\:x/ceph/p.conf:id=admin");
        assert_eq!(rbd_filename("rbd", "ns", "lq-1", Path::new("/c"), "a"), r"rbd:rbd/ns/lq-1:conf=/c:id=a");
    }

    #[test]
    fn progress_meter_is_parsed_strictly() {
        assert_eq!(parse_progress("    (0.00/100%)"), Some(0.0));
        assert_eq!(parse_progress("    (42.50/100%)"), Some(0.425));
        assert_eq!(parse_progress("(100.00/100%)"), Some(1.0));
        assert_eq!(parse_progress("(101.00/100%)"), None);
        assert_eq!(parse_progress("error: something"), None);
        assert_eq!(parse_progress("(abc/100%)"), None);
    }
}
