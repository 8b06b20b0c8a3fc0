//! Argument types and helpers shared by the control-plane and node commands.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use limiquantix_api::v1 as pb;
use tonic::Status;

use crate::output::{OutputFormat, View, print_list, warn};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Qcow2,
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImageFormat {
    Qcow2,
    Raw,
    Vmdk,
    Vhdx,
    Vdi,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bus {
    Scsi,
    Virtio,
}

pub fn new_id(id: Option<String>) -> String {
    id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub fn format_pb(f: Option<Format>) -> i32 {
    match f {
        None => pb::VolumeFormat::Unspecified as i32,
        Some(Format::Qcow2) => pb::VolumeFormat::Qcow2 as i32,
        Some(Format::Raw) => pb::VolumeFormat::Raw as i32,
    }
}

/// The spec of a new volume. Without a size, a clone, import or snapshot copy
/// takes its source's size (the API's `size_bytes: 0`).
pub fn volume_spec(size: Option<u64>, format: Option<Format>, provisioning: pb::Provisioning) -> pb::VolumeSpec {
    const SIZE_OF_SOURCE: u64 = 0;
    pb::VolumeSpec {
        size_bytes: size.unwrap_or(SIZE_OF_SOURCE),
        format: format_pb(format),
        provisioning: provisioning as i32,
    }
}

pub fn provisioning_pb(thick: bool) -> pb::Provisioning {
    if thick { pb::Provisioning::Thick } else { pb::Provisioning::Thin }
}

pub fn image_format_pb(f: ImageFormat) -> i32 {
    (match f {
        ImageFormat::Qcow2 => pb::ImageFormat::Qcow2,
        ImageFormat::Raw => pb::ImageFormat::Raw,
        ImageFormat::Vmdk => pb::ImageFormat::Vmdk,
        ImageFormat::Vhdx => pb::ImageFormat::Vhdx,
        ImageFormat::Vdi => pb::ImageFormat::Vdi,
    }) as i32
}

pub fn bus_pb(b: Bus) -> i32 {
    (match b {
        Bus::Scsi => pb::DiskBus::Scsi,
        Bus::Virtio => pb::DiskBus::Virtio,
    }) as i32
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar() -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

pub fn show_progress(bar: &ProgressBar, p: &pb::Progress) {
    bar.set_length(p.total_bytes);
    bar.set_position(p.done_bytes);
    bar.set_message(p.phase.clone());
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NfsVersionArg {
    #[value(name = "3")]
    V3,
    #[value(name = "4.0")]
    V40,
    #[value(name = "4.1")]
    V41,
    #[value(name = "4.2")]
    V42,
}

impl NfsVersionArg {
    fn pb(self) -> pb::NfsVersion {
        match self {
            Self::V3 => pb::NfsVersion::V3,
            Self::V40 => pb::NfsVersion::V40,
            Self::V41 => pb::NfsVersion::V41,
            Self::V42 => pb::NfsVersion::V42,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NfsModeArg {
    Userspace,
    Kernel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IscsiModeArg {
    Direct,
    Lvm,
}

// What a pool is made of: exactly one of the backends. (A plain comment:
// a doc comment would become the help text of every command that flattens it.)
#[derive(Debug, Args)]
pub struct PoolConfigArgs {
    /// Local pool: the directory on the node.
    #[arg(long, group = "backend")]
    local_path: Option<PathBuf>,
    /// NFS pool: server host.
    #[arg(long, group = "backend", requires = "nfs_export")]
    nfs_server: Option<String>,
    /// NFS pool: the export on the server, e.g. /srv/vmstore.
    #[arg(long)]
    nfs_export: Option<String>,
    /// NFS version (default: negotiated; userspace mode speaks 3).
    #[arg(long, value_enum)]
    nfs_version: Option<NfsVersionArg>,
    /// userspace: libnfs in the node and QEMU, no kernel mount (default);
    /// kernel: a kernel mount on every node.
    #[arg(long, value_enum)]
    nfs_mode: Option<NfsModeArg>,
    /// Kernel mode: fail I/O after the retries instead of retrying forever (hard).
    #[arg(long)]
    nfs_soft: bool,
    /// Kernel mode: RPC timeout before a retry, in deciseconds (default 600).
    #[arg(long)]
    nfs_timeo: Option<u32>,
    /// Kernel mode: retries before a soft failure (default 2).
    #[arg(long)]
    nfs_retrans: Option<u32>,
    /// Kernel mode: TCP connections to the server (1-16).
    #[arg(long)]
    nfs_nconnect: Option<u32>,
    /// Kernel mode: mount over RDMA instead of TCP.
    #[arg(long)]
    nfs_rdma: bool,
    /// Ceph pool: the Ceph (RBD) pool name.
    #[arg(long, group = "backend", requires = "ceph_monitor")]
    ceph_pool: Option<String>,
    /// A Ceph monitor host:port (repeat for each monitor).
    #[arg(long)]
    ceph_monitor: Vec<String>,
    /// The cephx user, without "client.".
    #[arg(long, default_value = "admin")]
    ceph_user: String,
    /// A file holding the cephx key (the key never goes on a command line).
    #[arg(long)]
    ceph_key_file: Option<PathBuf>,
    /// A RADOS namespace inside the Ceph pool.
    #[arg(long)]
    ceph_namespace: Option<String>,
    /// Create the Ceph pool (application rbd) if it does not exist.
    #[arg(long)]
    ceph_create_pool: bool,
    /// iSCSI pool: the target portal host[:port]; repeat it for more portals
    /// of the same target, tried in order.
    #[arg(long, group = "backend", requires = "iscsi_target")]
    iscsi_portal: Vec<String>,
    /// iSCSI pool: the target's IQN.
    #[arg(long)]
    iscsi_target: Option<String>,
    /// iSCSI pool: direct (each disk LUN is a volume; default) or lvm.
    #[arg(long, value_enum)]
    iscsi_mode: Option<IscsiModeArg>,
    /// iSCSI pool in LVM mode: the LUN that holds the volume group.
    #[arg(long, default_value_t = 0)]
    iscsi_lun: u32,
    /// iSCSI pool in LVM mode: the volume group on that LUN.
    #[arg(long)]
    iscsi_volume_group: Option<String>,
    /// iSCSI pool in LVM mode: make the volume group when the LUN holds none
    /// (a LUN with other data on it is refused, never overwritten).
    #[arg(long, requires = "iscsi_volume_group")]
    iscsi_create_volume_group: bool,
    /// This node's initiator name (default: /etc/iscsi/initiatorname.iscsi, or one from the host name).
    #[arg(long)]
    iscsi_initiator: Option<String>,
    /// The CHAP user name, when the target asks for one.
    #[arg(long)]
    chap_user: Option<String>,
    /// A file holding the CHAP secret.
    #[arg(long)]
    chap_password_file: Option<PathBuf>,
    /// Mutual CHAP (LVM mode): the target's own CHAP user name.
    #[arg(long, requires = "mutual_chap_password_file")]
    mutual_chap_user: Option<String>,
    /// Mutual CHAP: a file holding the target's secret (not the CHAP secret).
    #[arg(long, requires = "mutual_chap_user")]
    mutual_chap_password_file: Option<PathBuf>,
}

/// The text of a file named on the command line.
pub fn read_file(path: &Path) -> Result<String, Status> {
    std::fs::read_to_string(path).map_err(|e| Status::invalid_argument(format!("cannot read {}: {e}", path.display())))
}

fn read_secret(path: &Option<PathBuf>) -> Result<String, Status> {
    match path {
        Some(p) => Ok(read_file(p)?.trim().to_owned()),
        None => Ok(String::new()),
    }
}

impl PoolConfigArgs {
    pub fn config(&self) -> Result<pb::PoolConfig, Status> {
        use pb::pool_config::Backend as B;
        let backend = if let Some(path) = &self.local_path {
            B::Local(pb::LocalPoolConfig { path: path.display().to_string() })
        } else if let Some(server) = &self.nfs_server {
            B::Nfs(pb::NfsPoolConfig {
                server: server.clone(),
                export_path: self.nfs_export.clone().unwrap_or_default(),
                nfs_version: self.nfs_version.map_or(pb::NfsVersion::Unspecified, NfsVersionArg::pb) as i32,
                mode: match self.nfs_mode {
                    None => pb::NfsMode::Unspecified,
                    Some(NfsModeArg::Userspace) => pb::NfsMode::Userspace,
                    Some(NfsModeArg::Kernel) => pb::NfsMode::Kernel,
                } as i32,
                options: Some(pb::NfsMountOptions {
                    soft: self.nfs_soft,
                    timeo_deciseconds: self.nfs_timeo.unwrap_or(0),
                    retrans: self.nfs_retrans.unwrap_or(0),
                    nconnect: self.nfs_nconnect.unwrap_or(0),
                    transport: if self.nfs_rdma { pb::NfsTransport::Rdma } else { pb::NfsTransport::Unspecified } as i32,
                }),
            })
        } else if let Some(pool) = &self.ceph_pool {
            B::Ceph(pb::CephPoolConfig {
                monitors: self.ceph_monitor.clone(),
                ceph_pool: pool.clone(),
                client_id: self.ceph_user.clone(),
                key: read_secret(&self.ceph_key_file)?,
                rados_namespace: self.ceph_namespace.clone().unwrap_or_default(),
                create_if_missing: self.ceph_create_pool,
            })
        } else if !self.iscsi_portal.is_empty() {
            B::Iscsi(pb::IscsiPoolConfig {
                portals: self.iscsi_portal.clone(),
                target_iqn: self.iscsi_target.clone().unwrap_or_default(),
                lun: self.iscsi_lun,
                initiator_iqn: self.iscsi_initiator.clone().unwrap_or_default(),
                chap_username: self.chap_user.clone().unwrap_or_default(),
                chap_password: read_secret(&self.chap_password_file)?,
                mode: match self.iscsi_mode {
                    None => pb::IscsiMode::Unspecified,
                    Some(IscsiModeArg::Direct) => pb::IscsiMode::Direct,
                    Some(IscsiModeArg::Lvm) => pb::IscsiMode::Lvm,
                } as i32,
                volume_group: self.iscsi_volume_group.clone().unwrap_or_default(),
                create_volume_group: self.iscsi_create_volume_group,
                mutual_chap_username: self.mutual_chap_user.clone().unwrap_or_default(),
                mutual_chap_password: read_secret(&self.mutual_chap_password_file)?,
            })
        } else {
            return Err(Status::invalid_argument("say what the pool is: --local-path, --nfs-server, --ceph-pool or --iscsi-portal"));
        };
        Ok(pb::PoolConfig { backend: Some(backend) })
    }
}

// Paging of a listing (plain comment: see PoolConfigArgs).
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Items per page.
    #[arg(long, default_value_t = 100)]
    pub page_size: u32,
    /// Continue after this token (printed by the previous page).
    #[arg(long)]
    pub page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    pub all: bool,
}

impl PageArgs {
    /// Prints one page, or every page with --all; `fetch(page_size, token)`
    /// answers a page and the next token. People are told how to go on.
    pub async fn print<T: View>(
        self,
        out: OutputFormat,
        mut fetch: impl AsyncFnMut(u32, String) -> anyhow::Result<(Vec<T>, String)>,
    ) -> anyhow::Result<()> {
        let mut token = self.page_token.unwrap_or_default();
        let mut items = Vec::new();
        loop {
            let (page, next) = fetch(self.page_size, token).await?;
            items.extend(page);
            token = next;
            if !self.all || token.is_empty() {
                break;
            }
        }
        print_list(out, &items)?;
        if !token.is_empty() && out == OutputFormat::Table {
            warn(format_args!("more: --page-token {token} (or --all)"));
        }
        Ok(())
    }
}
