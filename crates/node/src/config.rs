//! The node daemon's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use limiquantix_storage::{CephTimeouts, EngineConfig, ToolTimeouts};
use limiquantix_storage::backends::iscsi::IscsiHost;
use limiquantix_storage::tools::iscsiadm::Iscsiadm;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7701";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// gRPC listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the node keeps its pool records.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Local-directory pools must lie inside one of these.
    #[serde(default = "default_pool_roots")]
    pub local_pool_roots: Vec<PathBuf>,
    /// Disk images may only be imported from inside these.
    #[serde(default)]
    pub import_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// librados client timeouts: a dead cluster answers UNAVAILABLE within these.
    #[serde(default)]
    pub ceph: CephConfig,
    /// libvirt connection for hot-plug and live resize.
    #[serde(default = "default_libvirt_uri")]
    pub libvirt_uri: String,
    /// How long a detach waits for the guest to release the disk.
    #[serde(default = "default_detach_timeout_secs")]
    pub detach_timeout_secs: u64,
    /// The longest any libvirt call may take (a hung libvirtd gives an error).
    #[serde(default = "default_libvirt_timeout_secs")]
    pub libvirt_timeout_secs: u64,
    /// The address volumes are exported on for another node to pull (a
    /// move between nodes); default: the listen address's IP (which must
    /// then not be 0.0.0.0 or ::).
    #[serde(default)]
    pub export_address: Option<std::net::IpAddr>,
    /// The longest a guest agent may take to freeze or thaw its filesystems
    /// for a quiesced snapshot (a silent agent gives an error).
    #[serde(default = "default_agent_timeout_secs")]
    pub agent_timeout_secs: u64,
    /// The longest a registration or heartbeat call to the control plane may take.
    #[serde(default = "default_control_plane_timeout_secs")]
    pub control_plane_timeout_secs: u64,
    /// The control plane to register with and heartbeat to (e.g.
    /// http://10.0.0.2:7700); none = a stand-alone node.
    #[serde(default)]
    pub control_plane: Option<String>,
    /// The address the control plane reaches this node at; default
    /// http://<listen address>.
    #[serde(default)]
    pub advertise_address: Option<String>,
    /// On SIGTERM/SIGINT, how long running calls may take to finish.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Accept listening on a non-loopback address without TLS (logged as a
    /// warning at every start). Without it such a listen is refused.
    #[serde(default)]
    pub insecure: bool,
    /// A one-time token from `lqctl node join-token create`: at its first
    /// start the node enrols with it and keeps the certificate it receives.
    #[serde(default)]
    pub join_token: Option<String>,
    #[serde(default)]
    pub tls: NodeTlsConfig,
    /// iSCSI pools in LVM mode.
    #[serde(default)]
    pub iscsi: IscsiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IscsiConfig {
    /// open-iscsi's iscsiadm (logs in the LUN that holds a volume group).
    pub iscsiadm: String,
    /// iscsiadm's node database.
    pub nodes_dir: PathBuf,
    /// Where udev names logged-in LUNs by portal, target and LUN.
    pub by_path_dir: PathBuf,
    /// Bound on each iscsiadm and LVM command.
    pub command_timeout_secs: u64,
}

impl Default for IscsiConfig {
    fn default() -> Self {
        let host = IscsiHost::default();
        Self {
            iscsiadm: host.iscsiadm.program,
            nodes_dir: host.iscsiadm.nodes_dir,
            by_path_dir: host.by_path_dir,
            command_timeout_secs: host.lvm_timeout.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeTlsConfig {
    /// Mutual TLS with the control plane and on this node's listener. Off
    /// is accepted on a loopback address only, unless `insecure = true`.
    pub enabled: bool,
    /// The name the control plane's certificate is checked against.
    pub control_plane_name: String,
}

impl Default for NodeTlsConfig {
    fn default() -> Self {
        Self { enabled: true, control_plane_name: limiquantix_identity::CONTROL_NAME.to_owned() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bandwidth of each data copy (full clone, import, move, live mirror) in MiB/s, so a big
    /// copy leaves the datastore's bandwidth to running VMs; 0: unlimited.
    pub copy_mib_per_sec: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// qemu-img create/info/resize/snapshot.
    pub metadata_secs: u64,
    /// Inspection of an image to import.
    pub inspect_secs: u64,
    /// Data copies (full clone, import).
    pub copy_secs: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        let t = ToolTimeouts::default();
        Self { metadata_secs: t.metadata.as_secs(), inspect_secs: t.inspect.as_secs(), copy_secs: t.copy.as_secs() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CephConfig {
    pub mon_op_timeout_secs: u64,
    pub osd_op_timeout_secs: u64,
    pub mount_timeout_secs: u64,
}

impl Default for CephConfig {
    fn default() -> Self {
        let t = CephTimeouts::default();
        Self {
            mon_op_timeout_secs: t.mon_op.as_secs(),
            osd_op_timeout_secs: t.osd_op.as_secs(),
            mount_timeout_secs: t.mount.as_secs(),
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}
fn default_state_dir() -> PathBuf {
    "/var/lib/limiquantix/node".into()
}
fn default_pool_roots() -> Vec<PathBuf> {
    vec!["/var/lib/limiquantix/pools".into()]
}
fn default_libvirt_uri() -> String {
    "qemu:///system".into()
}
fn default_detach_timeout_secs() -> u64 {
    30
}
fn default_libvirt_timeout_secs() -> u64 {
    30
}
fn default_agent_timeout_secs() -> u64 {
    10
}
fn default_control_plane_timeout_secs() -> u64 {
    10
}
fn default_shutdown_grace_secs() -> u64 {
    30
}

/// Refuses a plaintext listener on an address other hosts can reach, unless
/// the config accepts it (`insecure = true`), which is then logged.
pub fn check_plaintext_listen(daemon: &str, listen: SocketAddr, insecure: bool) -> anyhow::Result<()> {
    check_exposed_listen(daemon, listen, insecure, "without TLS")
}

/// Refuses `listen` on a non-loopback address while `weakness` holds
/// ("without TLS", "without authentication"), unless `insecure` says so.
pub fn check_exposed_listen(daemon: &str, listen: SocketAddr, insecure: bool, weakness: &str) -> anyhow::Result<()> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !insecure {
        anyhow::bail!(
            "{daemon} refuses to listen on {listen} {weakness}: anyone on the network could call it. \
             Listen on 127.0.0.1, or set `insecure = true` in its config to accept this on a trusted network"
        );
    }
    tracing::warn!(%listen, "{daemon} listens {weakness} on a non-loopback address (insecure = true): anyone who reaches it can call it");
    Ok(())
}

impl Default for NodeConfig {
    fn default() -> Self {
        toml::from_str("").expect("the empty config takes every default")
    }
}

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid node config {}", path.display()))
    }

    /// Plaintext, for tests and benchmarks on loopback.
    pub fn without_tls(mut self) -> Self {
        self.tls.enabled = false;
        self
    }

    /// Every directory under one data dir: `state/`, `pools/` (the only local
    /// pool root) and `images/` (the only import dir).
    pub fn with_data_dir(mut self, dir: &Path) -> Self {
        self.state_dir = dir.join("state");
        self.local_pool_roots = vec![dir.join("pools")];
        self.import_dirs = vec![dir.join("images")];
        self
    }

    /// Creates the pool roots and import dirs that do not exist yet.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        for dir in self.local_pool_roots.iter().chain(&self.import_dirs) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            state_dir: self.state_dir.clone(),
            local_pool_roots: self.local_pool_roots.clone(),
            import_dirs: self.import_dirs.clone(),
            timeouts: ToolTimeouts {
                metadata: Duration::from_secs(self.timeouts.metadata_secs),
                inspect: Duration::from_secs(self.timeouts.inspect_secs),
                copy: Duration::from_secs(self.timeouts.copy_secs),
            },
            ceph_timeouts: CephTimeouts {
                mon_op: Duration::from_secs(self.ceph.mon_op_timeout_secs),
                osd_op: Duration::from_secs(self.ceph.osd_op_timeout_secs),
                mount: Duration::from_secs(self.ceph.mount_timeout_secs),
            },
            copy_bytes_per_sec: Some(self.limits.copy_mib_per_sec << 20).filter(|r| *r > 0),
            iscsi: IscsiHost {
                iscsiadm: Iscsiadm {
                    program: self.iscsi.iscsiadm.clone(),
                    timeout: Duration::from_secs(self.iscsi.command_timeout_secs),
                    nodes_dir: self.iscsi.nodes_dir.clone(),
                },
                by_path_dir: self.iscsi.by_path_dir.clone(),
                lvm_timeout: Duration::from_secs(self.iscsi.command_timeout_secs),
                ..IscsiHost::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_listen_beyond_loopback_needs_insecure() {
        for local in ["127.0.0.1:7701", "[::1]:7701"] {
            check_plaintext_listen("d", local.parse().unwrap(), false).unwrap();
        }
        for open in ["0.0.0.0:7701", "[::]:7701", "10.1.2.3:7701"] {
            let err = check_plaintext_listen("limiquantix-node", open.parse().unwrap(), false).unwrap_err().to_string();
            assert!(err.contains("without TLS") && err.contains("insecure = true") && err.contains(open), "{err}");
            check_plaintext_listen("limiquantix-node", open.parse().unwrap(), true).unwrap();
        }
        let cfg: NodeConfig = toml::from_str("insecure = true").unwrap();
        assert!(cfg.insecure && !NodeConfig::default().insecure);
    }

    #[test]
    fn parses_a_full_config_and_rejects_typos() {
        let cfg: NodeConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            state_dir = "/tmp/s"
            local_pool_roots = ["/a", "/b"]
            import_dirs = ["/img"]
            [timeouts]
            metadata_secs = 5
            "#,
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.local_pool_roots.len(), 2);
        assert_eq!(cfg.engine().timeouts.metadata, Duration::from_secs(5));
        assert_eq!(cfg.engine().timeouts.copy, ToolTimeouts::default().copy);
        assert!(toml::from_str::<NodeConfig>("listne = \"x\"").is_err());
        assert_eq!(NodeConfig::default().listen.to_string(), DEFAULT_LISTEN);
    }
}
