//! limiquantix-controlplane: the one owner of the cluster's storage truth —
//! pools, volumes, snapshots, attachments, nodes, tasks — kept in a durable
//! store and changed only through sagas that survive crashes.

pub mod access;
pub mod api;
pub mod app;
pub mod allocations;
pub mod array_volumes;
pub mod background;
pub mod capacity_history;
pub mod config;
pub mod error;
pub mod keys;
pub mod leader;
pub mod listener;
pub mod metrics;
pub mod nodes;
pub mod pool_locks;
pub mod pools;
pub mod private_files;
pub mod records;
pub mod repo;
pub mod sagas;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tasks;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub use config::{ControlConfig, StoreConfig};

use crate::app::{App, Settings};
use crate::metrics::Metrics;
use crate::nodes::NodeRegistry;
use crate::repo::Repo;
use crate::sagas::SagaRunner;
use crate::store::{EtcdOptions, EtcdStore, RedbStore, Store};

/// TLS settings for etcd from the config's files.
fn etcd_tls(c: &config::EtcdTlsConfig) -> anyhow::Result<etcd_client::TlsOptions> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
    let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(&c.ca_cert)?));
    match (&c.cert, &c.key) {
        (Some(cert), Some(key)) => {
            let key_pem = private_files::read(key, "the etcd client key")?.with_context(|| format!("{} does not exist", key.display()))?;
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, key_pem));
        }
        (None, None) => {}
        _ => anyhow::bail!("[store.tls] cert and key are given together or not at all"),
    }
    Ok(tls)
}

/// How clients reach a control plane listening on `addr`.
pub fn url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = if addr.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// A control plane running in this process.
pub struct ControlPlane {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    _leadership: Option<watch::Sender<bool>>,
}

impl ControlPlane {
    pub async fn start(config: &ControlConfig) -> anyhow::Result<Self> {
        config.check_security()?;
        let pki = if config.tls.enabled {
            Some(Arc::new(access::ControlPki::load_or_create(config).context("cannot set up TLS")?))
        } else {
            None
        };
        let mut background = Vec::new();
        let (store, leader, leadership): (Arc<dyn Store>, watch::Receiver<bool>, Option<watch::Sender<bool>>) =
            match &config.store {
                StoreConfig::Redb { path } => {
                    let store = RedbStore::open(path).with_context(|| format!("cannot open the state file {}", path.display()))?;
                    let (tx, rx) = leader::always();
                    (Arc::new(store), rx, Some(tx))
                }
                StoreConfig::Etcd { endpoints, root, timeout_secs, tls, user, password_file } => {
                    let mut options = EtcdOptions::plain(endpoints.clone(), root.clone(), Duration::from_secs(*timeout_secs));
                    options.tls = tls.as_ref().map(etcd_tls).transpose()?;
                    options.user = match (user, password_file) {
                        (Some(user), Some(file)) => {
                            let password = private_files::read(file, "the etcd password")?
                                .with_context(|| format!("the etcd password file {} does not exist", file.display()))?;
                            Some((user.clone(), password.trim_end_matches(['\r', '\n']).to_owned()))
                        }
                        (None, None) => None,
                        _ => anyhow::bail!("[store] user and password_file are given together or not at all"),
                    };
                    let store = EtcdStore::connect(&options).await.context("cannot reach etcd")?;
                    let replica = uuid::Uuid::new_v4().to_string();
                    let (campaign, rx) = leader::campaign(options, replica);
                    background.push(campaign);
                    (Arc::new(store), rx, None)
                }
            };
        let secrets_key = config.secrets_key_path();
        let secrets = secrets::SecretBox::load_or_create(&secrets_key)
            .with_context(|| format!("cannot load the key that seals pool secrets ({})", secrets_key.display()))?;
        let app = Arc::new(App {
            repo: Repo::new(store),
            secrets,
            nodes: NodeRegistry::new(config.heartbeat_interval(), config.offline_after(), config.node_calls.into(), pki.clone()),
            runner: SagaRunner::new(leader),
            metrics: Metrics::default(),
            config: Settings {
                saga_retry: config.saga_retry(),
                task_retention: Duration::from_secs(config.task_retention_secs),
                capacity_history: Duration::from_secs(config.capacity_history_secs.max(1)),
            },
            access: access::Access::new(config.auth.enabled, pki.clone(), config.auth.metrics_need_token),
        });
        background.push(tokio::spawn(sagas::runner::run(app.clone())));
        let pool_refresh = Duration::from_secs(config.pool_refresh_secs.max(1));
        let allocation_refresh = Duration::from_secs(config.allocation_refresh_secs.max(1));
        background.push(tokio::spawn(background::run(app.clone(), pool_refresh, allocation_refresh)));
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tls = pki.as_ref().map(|p| p.listener_config()).transpose()?;
        let listener = listener::ApiListener::new(listener, tls)?;
        if config.auth.enabled {
            access::bootstrap::first_admin(&app, &config.admin_credentials_path(), &url(addr, pki.is_some()))
                .await
                .context("cannot create the first admin's credentials")?;
        }
        let router = server::router(app.clone()).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(server::serve(router, listener, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, app, stop: Some(stop), server, background, _leadership: leadership })
    }

    pub fn url(&self) -> String {
        url(self.addr, self.app.access.pki.is_some())
    }

    /// Serves until `signal`, then stops, giving running calls `grace`.
    pub async fn serve_until(mut self, signal: impl Future<Output = ()>, grace: Duration) -> anyhow::Result<()> {
        tokio::select! {
            result = &mut self.server => return result.context("control-plane server task")?,
            _ = signal => {}
        }
        self.stop_within(grace).await
    }

    pub async fn stop_within(mut self, grace: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + grace;
        for b in self.background.drain(..) {
            b.abort();
            // An aborted task ends at its next poll, not at abort().
            let _ = b.await;
        }
        self.app.runner.stop_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match tokio::time::timeout_at(deadline, &mut self.server).await {
            Ok(result) => result.context("control-plane server task"),
            Err(_) => {
                self.server.abort();
                Ok(Ok(()))
            }
        };
        // The store (a redb file lock) is let go with the last holder of the
        // app (sagas, watches and connections that are still ending) and
        // the last commit still running: a control plane started next on
        // the same file must find it free.
        while (Arc::strong_count(&self.app) > 1 || self.app.repo.store().busy()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served?
    }
}
