//! The control plane's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// gRPC API, /metrics and the web page, on one listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub store: StoreConfig,
    /// How often nodes heartbeat.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_secs: u64,
    /// A node without a heartbeat for this long is offline.
    #[serde(default = "default_offline_after")]
    pub offline_after_secs: u64,
    /// How long a saga step that fails transiently (unreachable node) is
    /// retried before the saga unwinds.
    #[serde(default = "default_saga_retry")]
    pub saga_retry_secs: u64,
    /// How often the leader refreshes pool capacity and brings shared pools
    /// to nodes that joined.
    #[serde(default = "default_pool_refresh")]
    pub pool_refresh_secs: u64,
    /// How often the leader records how much of each volume is written
    /// (each pool's volumes listed on one node; at a pool refresh).
    #[serde(default = "default_allocation_refresh")]
    pub allocation_refresh_secs: u64,
    /// How often a pool's capacity is sampled into its history (a week of
    /// samples is kept).
    #[serde(default = "default_capacity_history")]
    pub capacity_history_secs: u64,
    /// How long finished tasks are kept (running ones always are).
    #[serde(default = "default_task_retention")]
    pub task_retention_secs: u64,
    /// Deadlines of the calls to nodes: a hung node fails its operations
    /// with UNAVAILABLE in time and delays nothing else.
    #[serde(default)]
    pub node_calls: NodeCallDeadlines,
    /// Accept listening on a non-loopback address without TLS (logged as a
    /// warning at every start). Without it such a listen is refused.
    #[serde(default)]
    pub insecure: bool,
    /// The key that seals pool secrets in the store, made on first start;
    /// every replica needs the same file. Default: `secrets.key` beside the
    /// redb file, or /var/lib/limiquantix/control/secrets.key with etcd.
    #[serde(default)]
    pub secrets_key: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
}

/// TLS on the API listener and on every call to nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Off is accepted on a loopback address only, unless `insecure = true`.
    pub enabled: bool,
    /// Where the cluster CA is kept (ca.crt, ca.key 0600), made on first
    /// start. Default: `pki/` beside the redb file, or
    /// /var/lib/limiquantix/control/pki with etcd (every replica needs the
    /// same CA files).
    pub dir: Option<PathBuf>,
    /// An operator's CA to sign with instead of one made here (both or neither).
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// An operator's certificate and key for the API listener (both or
    /// neither); by default one is issued by the cluster CA at every start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Host names and IP addresses clients reach this control plane by, put
    /// in its certificate (clients also accept it as control.limiquantix).
    pub names: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { enabled: true, dir: None, ca_cert: None, ca_key: None, cert: None, key: None, names: Vec::new() }
    }
}

/// Who may call the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every call needs an identity (bearer token, or a node's certificate
    /// for registration). Off is accepted on a loopback address only,
    /// unless `insecure = true`.
    pub enabled: bool,
    /// Where the first admin's lqctl credentials are written on first start
    /// (0600). Default: `admin.toml` in the TLS directory.
    pub admin_credentials: Option<PathBuf>,
    /// /metrics needs a token too.
    pub metrics_need_token: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { enabled: true, admin_credentials: None, metrics_need_token: false }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeCallDeadlines {
    /// A call that answers once (delete, snapshot, resize, pool init...).
    pub call_secs: u64,
    /// Hot-plug: attach and detach wait for QEMU and the guest.
    pub attach_secs: u64,
    /// A long operation (copy, import) may go this long without news; the
    /// node sends progress at least every 10 s while it works.
    pub silence_secs: u64,
    /// The pool watcher's status calls.
    pub refresh_secs: u64,
}

impl Default for NodeCallDeadlines {
    fn default() -> Self {
        Self { call_secs: 60, attach_secs: 90, silence_secs: 60, refresh_secs: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// An embedded file: one control plane, nothing else to run.
    Redb { path: PathBuf },
    /// etcd: several control-plane replicas, one leading.
    Etcd {
        endpoints: Vec<String>,
        #[serde(default = "default_root")]
        root: String,
        #[serde(default = "default_store_timeout")]
        timeout_secs: u64,
        /// TLS to etcd (https:// endpoints).
        #[serde(default)]
        tls: Option<EtcdTlsConfig>,
        /// etcd authentication: the user, and a 0600 file holding its password.
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsConfig {
    /// The CA that signed etcd's certificate.
    pub ca_cert: PathBuf,
    /// A client certificate and key, for etcd with --client-cert-auth.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Redb { path: "/var/lib/limiquantix/control/state.redb".into() }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}
fn default_heartbeat() -> u64 {
    5
}
fn default_offline_after() -> u64 {
    15
}
fn default_saga_retry() -> u64 {
    60
}
fn default_pool_refresh() -> u64 {
    10
}
fn default_capacity_history() -> u64 {
    600
}
fn default_allocation_refresh() -> u64 {
    60
}
fn default_task_retention() -> u64 {
    7 * 24 * 3600
}
fn default_root() -> String {
    "/limiquantix/".into()
}
fn default_store_timeout() -> u64 {
    5
}

impl Default for ControlConfig {
    fn default() -> Self {
        toml::from_str("").expect("the empty config takes every default")
    }
}

impl ControlConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid control-plane config {}", path.display()))
    }

    pub fn secrets_key_path(&self) -> PathBuf {
        match (&self.secrets_key, &self.store) {
            (Some(path), _) => path.clone(),
            (None, StoreConfig::Redb { path }) => path.with_file_name("secrets.key"),
            (None, StoreConfig::Etcd { .. }) => PathBuf::from("/var/lib/limiquantix/control/secrets.key"),
        }
    }

    pub fn pki_dir(&self) -> PathBuf {
        match (&self.tls.dir, &self.store) {
            (Some(dir), _) => dir.clone(),
            (None, StoreConfig::Redb { path }) => path.with_file_name("pki"),
            (None, StoreConfig::Etcd { .. }) => PathBuf::from("/var/lib/limiquantix/control/pki"),
        }
    }

    pub fn admin_credentials_path(&self) -> PathBuf {
        self.auth.admin_credentials.clone().unwrap_or_else(|| self.pki_dir().join("admin.toml"))
    }

    /// TLS and authentication off: for tests and benchmarks on loopback.
    pub fn without_security(mut self) -> Self {
        self.tls.enabled = false;
        self.auth.enabled = false;
        self
    }

    /// Refuses plaintext or unauthenticated serving off loopback unless
    /// `insecure` says so (then warns, at every start), and half-given TLS files.
    pub fn check_security(&self) -> anyhow::Result<()> {
        use limiquantix_node::config::check_exposed_listen;
        const DAEMON: &str = "limiquantix-controlplane";
        if !self.tls.enabled {
            check_exposed_listen(DAEMON, self.listen, self.insecure, "without TLS")?;
        }
        if !self.auth.enabled {
            check_exposed_listen(DAEMON, self.listen, self.insecure, "without authentication")?;
        }
        if self.tls.ca_cert.is_some() != self.tls.ca_key.is_some() || self.tls.cert.is_some() != self.tls.key.is_some() {
            anyhow::bail!("[tls] ca_cert and ca_key, and cert and key, are given together or not at all");
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_secs.max(1))
    }
    pub fn offline_after(&self) -> Duration {
        Duration::from_secs(self.offline_after_secs.max(1))
    }
    pub fn saga_retry(&self) -> Duration {
        Duration::from_secs(self.saga_retry_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_configs_parse() {
        let c: ControlConfig = toml::from_str("[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
        assert!(matches!(c.store, StoreConfig::Etcd { ref root, timeout_secs: 5, .. } if root == "/limiquantix/"));
        let c: ControlConfig = toml::from_str("[store]\nkind = \"redb\"\npath = \"/x/s.redb\"\n").unwrap();
        assert!(matches!(c.store, StoreConfig::Redb { .. }));
        assert!(toml::from_str::<ControlConfig>("[store]\nkind = \"mysql\"\n").is_err());
        assert_eq!(ControlConfig::default().listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn lqctl_finds_the_first_admin_of_a_default_control_plane() {
        let path = ControlConfig::default().admin_credentials_path();
        assert_eq!(path, Path::new(limiquantix_identity::credentials::CONTROL_PLANE_PATH));
        let c = ControlConfig::default();
        assert!(c.tls.enabled && c.auth.enabled, "secure by default");
    }
}
