//! Threat tests: a control plane with its defaults (TLS with its own cluster
//! CA, token authentication) and nodes that enrol with join tokens, all on
//! loopback. Each test plays an attacker or a careless user.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::access_service_client::AccessServiceClient;
use limiquantix_api::v1::node_service_client::NodeServiceClient;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;
use limiquantix_api::v1::storage_pool_service_client::StoragePoolServiceClient;
use limiquantix_api::v1::volume_service_client::VolumeServiceClient;
use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig};
use limiquantix_identity::PeerIdentity;
use limiquantix_identity::credentials::Credentials;
use limiquantix_node::enrolment::{self, NodeTls};
use limiquantix_node::{NodeConfig, RunningNode};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Conn = InterceptedService<Channel, Bearer>;

struct Secure {
    root: tempfile::TempDir,
    cp: ControlPlane,
    admin: Credentials,
    node: RunningNode,
    node_id: String,
    node_state: std::path::PathBuf,
}

fn secure_config(root: &Path) -> ControlConfig {
    ControlConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreConfig::Redb { path: root.join("control/state.redb") },
        heartbeat_interval_secs: 1,
        offline_after_secs: 3,
        ..Default::default()
    }
}

/// A node that enrols with a fresh join token, in `dir`.
async fn enrolled_node(cp: &ControlPlane, dir: &Path) -> (RunningNode, String, NodeConfig) {
    let token = limiquantix_control::api::access::create_join_token(&cp.app, Duration::from_secs(600)).await.unwrap();
    let mut n = NodeConfig::default().with_data_dir(dir);
    n.listen = "127.0.0.1:0".parse().unwrap();
    n.control_plane = Some(cp.url());
    n.join_token = Some(token.token);
    n.create_dirs().unwrap();
    let node = RunningNode::start(&n).await.unwrap();
    let id = limiquantix_node::registration::node_id(&n.state_dir).unwrap();
    (node, id, n)
}

impl Secure {
    async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start(&secure_config(root.path())).await.unwrap();
        assert!(cp.url().starts_with("https://"), "TLS is the default: {}", cp.url());
        let admin = Credentials::load(&root.path().join("control/pki/admin.toml")).unwrap();
        let (node, node_id, n) = enrolled_node(&cp, &root.path().join("node")).await;
        let s = Self { root, cp, admin, node, node_id, node_state: n.state_dir };
        let mut nodes = NodeServiceClient::new(s.conn(Some(&s.admin.token)).await);
        let deadline = Instant::now() + Duration::from_secs(30);
        while nodes.get_node(pb::GetNodeRequest { node_id: s.node_id.clone() }).await.is_err() {
            assert!(Instant::now() < deadline, "the enrolled node never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    /// A TLS channel to the control plane (trusting the cluster CA), with a
    /// bearer token when given.
    async fn conn(&self, token: Option<&str>) -> Conn {
        let header = token.map(|t| format!("Bearer {t}").parse().unwrap());
        InterceptedService::new(self.channel(None).await, Bearer(header))
    }

    /// A TLS channel to the control plane showing `identity`.
    async fn channel(&self, identity: Option<(&str, &str)>) -> Channel {
        let tls = limiquantix_identity::tls::client(&self.admin.ca_certificate, identity, limiquantix_identity::CONTROL_NAME);
        Endpoint::from_shared(self.cp.url()).unwrap().tls_config(tls).unwrap().connect().await.unwrap()
    }

    async fn node_client(&self, identity: Option<(&str, &str)>) -> Result<NodeStorageClient<Channel>, tonic::transport::Error> {
        let name = PeerIdentity::Node(self.node_id.clone()).dns_name();
        let tls = limiquantix_identity::tls::client(&self.admin.ca_certificate, identity, &name);
        let ch = Endpoint::from_shared(self.node.url()).unwrap().tls_config(tls).unwrap().connect().await?;
        Ok(NodeStorageClient::new(ch))
    }

    fn admin_identity(&self) -> (&str, &str) {
        (&self.admin.client_certificate, &self.admin.client_key)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_credentials_are_refused_by_the_control_plane_and_by_nodes() {
    let s = Secure::start().await;
    let mut anon = VolumeServiceClient::new(s.conn(None).await);
    let create = pb::CreateVolumeRequest { name: "x".into(), pool: "p".into(), ..Default::default() };
    assert_eq!(code(anon.create_volume(create.clone()).await), Code::Unauthenticated);
    assert_eq!(code(anon.list_volumes(pb::ListVolumesRequest::default()).await), Code::Unauthenticated);
    let mut anon_pools = StoragePoolServiceClient::new(s.conn(None).await);
    assert_eq!(code(anon_pools.update_pool(pb::UpdatePoolRequest { pool: "p".into(), ..Default::default() }).await), Code::Unauthenticated);
    let forged = format!("lqt.{}.{}", "0".repeat(16), "1".repeat(64));
    for bad in ["garbage", forged.as_str()] {
        let mut c = VolumeServiceClient::new(s.conn(Some(bad)).await);
        assert_eq!(code(c.list_volumes(pb::ListVolumesRequest::default()).await), Code::Unauthenticated, "{bad}");
    }
    // Health stays open: load balancers and probes have no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel(None).await);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    // Plaintext to the TLS port gets nowhere.
    let plain = format!("http://{}", s.cp.addr);
    if let Ok(ch) = Channel::from_shared(plain).unwrap().connect().await {
        assert!(VolumeServiceClient::new(ch).list_volumes(pb::ListVolumesRequest::default()).await.is_err());
    }

    // A node answers only the control plane and admins.
    let delete = pb::NodeDeleteVolumeRequest { pool_id: uuid::Uuid::new_v4().to_string(), volume_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
    // TLS 1.3 reports a missing client certificate on the first call.
    if let Ok(mut c) = s.node_client(None).await {
        assert!(c.delete_volume(delete.clone()).await.is_err(), "a node obeyed a caller without a certificate");
    }
    // Another node's certificate is from the CA but is not the control plane's.
    let other = tempfile::tempdir().unwrap();
    let (other_node, _, other_cfg) = enrolled_node(&s.cp, other.path()).await;
    let other_tls = enrolment::load(&other_cfg.state_dir, limiquantix_identity::CONTROL_NAME).unwrap().unwrap();
    let mut as_node = s.node_client(Some((&other_tls.cert_pem, &other_tls.key_pem))).await.unwrap();
    let refused = as_node.delete_volume(delete.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // An admin certificate may call the node directly.
    let mut as_admin = s.node_client(Some(s.admin_identity())).await.unwrap();
    as_admin.get_node_info(pb::GetNodeInfoRequest {}).await.unwrap();
    other_node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_and_cannot_change_anything_and_revoked_tokens_stop_working() {
    let s = Secure::start().await;
    let mut admin = AccessServiceClient::new(s.conn(Some(&s.admin.token)).await);
    let viewer = admin
        .create_api_token(pb::CreateApiTokenRequest { name: "auditor".into(), role: pb::Role::Viewer as i32 })
        .await
        .unwrap()
        .into_inner();
    let listed = admin.list_api_tokens(pb::ListApiTokensRequest {}).await.unwrap().into_inner().tokens;
    assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["admin", "auditor"]);
    assert!(!format!("{listed:?}").contains(&viewer.secret[20..]), "lists never show secrets");
    let dup = admin.create_api_token(pb::CreateApiTokenRequest { name: "auditor".into(), role: pb::Role::Admin as i32 }).await;
    assert_eq!(code(dup), Code::AlreadyExists);

    let mut pools = StoragePoolServiceClient::new(s.conn(Some(&viewer.secret)).await);
    pools.list_pools(pb::ListPoolsRequest::default()).await.unwrap();
    let mut nodes = NodeServiceClient::new(s.conn(Some(&viewer.secret)).await);
    nodes.list_nodes(pb::ListNodesRequest {}).await.unwrap();
    let me = AccessServiceClient::new(s.conn(Some(&viewer.secret)).await).who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.role, me.name.as_str()), (pb::Role::Viewer as i32, "token auditor"));

    let pool = pb::CreatePoolRequest {
        name: "sneaky".into(),
        config: Some(pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: "/tmp/sneaky".into() })),
        }),
        node_ids: vec![s.node_id.clone()],
        ..Default::default()
    };
    let refused = pools.create_pool(pool).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("viewer"), "{refused:?}");
    assert_eq!(code(nodes.drain_node(pb::DrainNodeRequest { node_id: s.node_id.clone(), undo: false }).await), Code::PermissionDenied);
    let mut viewer_access = AccessServiceClient::new(s.conn(Some(&viewer.secret)).await);
    let escalate = viewer_access.create_api_token(pb::CreateApiTokenRequest { name: "me2".into(), role: pb::Role::Admin as i32 }).await;
    assert_eq!(code(escalate), Code::PermissionDenied);
    assert_eq!(code(viewer_access.create_join_token(pb::CreateJoinTokenRequest::default()).await), Code::PermissionDenied);
    assert!(pools.list_pools(pb::ListPoolsRequest::default()).await.unwrap().into_inner().pools.is_empty(), "nothing was made");

    admin.revoke_api_token(pb::RevokeApiTokenRequest { token: "auditor".into() }).await.unwrap();
    assert_eq!(code(pools.list_pools(pb::ListPoolsRequest::default()).await), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_cannot_be_taken_over_and_removed_nodes_are_refused() {
    let s = Secure::start().await;
    let register = |id: &str| pb::RegisterNodeRequest {
        node_id: id.to_owned(),
        address: "https://127.0.0.1:1".into(),
        info: Some(pb::NodeInfo { hostname: "evil".into(), ..Default::default() }),
    };
    // A token, even an admin's, is not a node.
    let mut with_token = NodeServiceClient::new(s.conn(Some(&s.admin.token)).await);
    assert_eq!(code(with_token.register_node(register(&s.node_id)).await), Code::PermissionDenied);
    assert_eq!(code(with_token.register_node(register(&uuid::Uuid::new_v4().to_string())).await), Code::PermissionDenied);

    // Another enrolled node cannot speak for this one.
    let other = tempfile::tempdir().unwrap();
    let (other_node, other_id, other_cfg) = enrolled_node(&s.cp, other.path()).await;
    let other_tls = enrolment::load(&other_cfg.state_dir, limiquantix_identity::CONTROL_NAME).unwrap().unwrap();
    let mut as_other = NodeServiceClient::new(s.channel(Some((&other_tls.cert_pem, &other_tls.key_pem))).await);
    let refused = as_other.register_node(register(&s.node_id)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("cannot speak for"), "{refused:?}");
    assert_eq!(code(as_other.heartbeat(pb::HeartbeatRequest { node_id: s.node_id.clone() }).await), Code::PermissionDenied);
    // Nor may a node use the API as a person would.
    let mut node_as_admin = VolumeServiceClient::new(s.channel(Some((&other_tls.cert_pem, &other_tls.key_pem))).await);
    assert_eq!(code(node_as_admin.list_volumes(pb::ListVolumesRequest::default()).await), Code::PermissionDenied);

    // A certificate from another CA does not get through the handshake.
    let (foreign_ca, _) = limiquantix_identity::ca::ClusterCa::generate().unwrap();
    let forged = foreign_ca.issue(&PeerIdentity::Node(s.node_id.clone()), &[]).unwrap();
    let tls = limiquantix_identity::tls::client(&s.admin.ca_certificate, Some((&forged.cert_pem, &forged.key_pem)), limiquantix_identity::CONTROL_NAME);
    if let Ok(ch) = Endpoint::from_shared(s.cp.url()).unwrap().tls_config(tls).unwrap().connect().await {
        assert!(NodeServiceClient::new(ch).register_node(register(&s.node_id)).await.is_err(), "a foreign CA's certificate was accepted");
    }
    let node = with_token.get_node(pb::GetNodeRequest { node_id: s.node_id.clone() }).await.unwrap().into_inner();
    assert_ne!(node.hostname, "evil", "the node record is untouched");

    // After removal the node's own certificate is refused.
    // It is removed even while it heartbeats as fast as it can.
    let beating = {
        let (mut client, id) = (as_other.clone(), other_id.clone());
        tokio::spawn(async move { while client.heartbeat(pb::HeartbeatRequest { node_id: id.clone() }).await.is_ok() {} })
    };
    let mut admin_nodes = NodeServiceClient::new(s.conn(Some(&s.admin.token)).await);
    admin_nodes.remove_node(pb::RemoveNodeRequest { node_id: other_id.clone(), force: false }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), beating).await.expect("heartbeats stop once it is removed").unwrap();
    let beat = as_other.heartbeat(pb::HeartbeatRequest { node_id: other_id.clone() }).await.unwrap_err();
    assert_eq!(beat.code(), Code::PermissionDenied);
    assert!(beat.message().contains("not enrolled"), "{beat:?}");
    assert_eq!(code(as_other.register_node(register(&other_id)).await), Code::PermissionDenied);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(code(admin_nodes.get_node(pb::GetNodeRequest { node_id: other_id.clone() }).await), Code::NotFound, "it stays out");
    other_node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_enrol_once_and_expired_forged_or_foreign_ones_are_refused() {
    let s = Secure::start().await;
    let mut access = AccessServiceClient::new(s.conn(Some(&s.admin.token)).await);
    let enrol = |token: &str, dir: &Path| {
        let (cp, token, dir) = (s.cp.url(), token.to_owned(), dir.to_owned());
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            enrolment::enrol(&cp, &token, &id, &dir, limiquantix_identity::CONTROL_NAME, Duration::from_secs(5)).await
        }
    };
    let dirs = tempfile::tempdir().unwrap();
    let token = access.create_join_token(pb::CreateJoinTokenRequest { ttl_seconds: 600 }).await.unwrap().into_inner();
    let first: NodeTls = enrol(&token.token, &dirs.path().join("a")).await.unwrap();
    assert_eq!(mode(&dirs.path().join("a/tls/node.key")), 0o600);
    assert_eq!(mode(&dirs.path().join("a/tls")), 0o700);
    assert!(first.cert_pem.contains("BEGIN CERTIFICATE"));

    let reused = enrol(&token.token, &dirs.path().join("b")).await.unwrap_err();
    assert!(format!("{reused:#}").contains("used already"), "{reused:#}");

    // A node killed after the control plane enrolled it but before it kept
    // its certificate asks again with the key it kept: it gets the same one.
    let id = uuid::Uuid::new_v4().to_string();
    let crashed = dirs.path().join("crashed");
    let again = access.create_join_token(pb::CreateJoinTokenRequest { ttl_seconds: 600 }).await.unwrap().into_inner();
    let name = limiquantix_identity::CONTROL_NAME;
    let timeout = Duration::from_secs(5);
    let kept = enrolment::enrol(&s.cp.url(), &again.token, &id, &crashed, name, timeout).await.unwrap();
    std::fs::remove_file(crashed.join("tls/node.crt")).unwrap();
    let retried = enrolment::enrol(&s.cp.url(), &again.token, &id, &crashed, name, timeout).await.unwrap();
    assert_eq!(retried.cert_pem, kept.cert_pem, "the same certificate, for the same key");
    // Another key with that used token, even for the same id, is refused.
    std::fs::remove_dir_all(crashed.join("tls")).unwrap();
    let stolen = enrolment::enrol(&s.cp.url(), &again.token, &id, &crashed, name, timeout).await.unwrap_err();
    assert!(format!("{stolen:#}").contains("used already"), "{stolen:#}");

    let short = access.create_join_token(pb::CreateJoinTokenRequest { ttl_seconds: 1 }).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = enrol(&short.token, &dirs.path().join("c")).await.unwrap_err();
    assert!(format!("{expired:#}").contains("expired"), "{expired:#}");

    let parsed = limiquantix_identity::tokens::JoinToken::parse(&token.token).unwrap();
    let guessed = limiquantix_identity::tokens::JoinToken { secret: "ab".repeat(32), ..parsed.clone() };
    let forged = enrol(&guessed.to_string(), &dirs.path().join("d")).await.unwrap_err();
    assert!(format!("{forged:#}").contains("not valid"), "{forged:#}");

    // A token pinning another CA: the node refuses this control plane
    // before it sends anything.
    let foreign = limiquantix_identity::tokens::JoinToken { ca_sha256: "cd".repeat(32), ..parsed };
    let refused = enrol(&foreign.to_string(), &dirs.path().join("e")).await.unwrap_err();
    assert!(format!("{refused:#}").contains("does not present the CA"), "{refused:#}");
    for d in ["b", "c", "d", "e"] {
        assert!(!dirs.path().join(d).join("tls/node.crt").exists(), "{d}: nothing kept after a refusal");
    }
    // And a node without a token or certificate does not start at all.
    let mut n = NodeConfig::default().with_data_dir(&dirs.path().join("f"));
    n.listen = "127.0.0.1:0".parse().unwrap();
    n.control_plane = Some(s.cp.url());
    let err = RunningNode::start(&n).await.err().expect("a node without a certificate started");
    assert!(format!("{err:#}").contains("join token"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_hold_keys_and_tokens_are_private() {
    let s = Secure::start().await;
    let root = s.root.path();
    for file in ["control/pki/ca.key", "control/pki/admin.toml", "control/secrets.key", "control/state.redb"] {
        assert_eq!(mode(&root.join(file)), 0o600, "{file}");
    }
    for dir in ["control", "control/pki"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&s.node_state.join("tls/node.key")), 0o600);
    assert_eq!(mode(&s.node_state), 0o700);
    // The first admin's file is written once: a restart does not mint another.
    let before = std::fs::read_to_string(root.join("control/pki/admin.toml")).unwrap();
    let Secure { cp, node, root: _root, .. } = s;
    node.stop().await.unwrap();
    cp.stop_within(Duration::from_secs(5)).await.unwrap();
    let cp = ControlPlane::start(&secure_config(_root.path())).await.unwrap();
    assert_eq!(std::fs::read_to_string(_root.path().join("control/pki/admin.toml")).unwrap(), before);
    cp.stop_within(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn plaintext_or_unauthenticated_listening_off_loopback_is_refused() {
    let root = tempfile::tempdir().unwrap();
    for (tls, auth) in [(false, true), (true, false)] {
        let mut c = secure_config(root.path());
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.tls.enabled = tls;
        c.auth.enabled = auth;
        let err = ControlPlane::start(&c).await.err().expect("started without TLS or authentication on 0.0.0.0");
        assert!(format!("{err:#}").contains("insecure = true"), "{err:#}");
    }
    assert!(!root.path().join("control/state.redb").exists(), "nothing was made before the refusal");
}

/// Writes `content` to `dir/name` with `mode`.
fn write(dir: &Path, name: &str, content: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_speaks_tls_with_a_client_certificate_and_etcd_authentication() {
    use limiquantix_control::config::EtcdTlsConfig;
    use limiquantix_testkit::etcd::{Etcd, EtcdTls};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, _) = limiquantix_identity::ca::ClusterCa::generate().unwrap();
    let server = ca.issue_for_names(&["127.0.0.1".into(), "localhost".into()]).unwrap();
    let client = ca.issue_for_names(&["limiquantix-controlplane".into()]).unwrap();
    let ca_path = write(d, "ca.crt", ca.cert_pem(), 0o644);
    let tls = EtcdTls {
        ca: ca_path.clone(),
        cert: write(d, "etcd.crt", &server.cert_pem, 0o644),
        key: write(d, "etcd.key", &server.key_pem, 0o600),
    };
    let (client_cert, client_key) = (write(d, "cp.crt", &client.cert_pem, 0o644), write(d, "cp.key", &client.key_pem, 0o600));
    let etcd = tokio::task::block_in_place(|| Etcd::start_with_tls(&tls)).unwrap();
    etcd.enable_auth("s3cret-root", Some((&client_cert, &client_key))).unwrap();
    let password = write(d, "etcd.password", "s3cret-root\n", 0o600);

    let config = |tls: Option<EtcdTlsConfig>, user: bool| {
        let mut c = ControlConfig::default().without_security();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.secrets_key = Some(d.join("secrets.key"));
        c.store = StoreConfig::Etcd {
            endpoints: vec![etcd.endpoint()],
            root: "/lq-tls/".into(),
            timeout_secs: 3,
            tls,
            user: user.then(|| "root".to_owned()),
            password_file: user.then(|| password.clone()),
        };
        c
    };
    let full_tls = || Some(EtcdTlsConfig { ca_cert: ca_path.clone(), cert: Some(client_cert.clone()), key: Some(client_key.clone()) });

    let cp = ControlPlane::start(&config(full_tls(), true)).await.unwrap();
    limiquantix_control::api::access::create_api_token(&cp.app, "through-tls", pb::Role::Viewer).await.unwrap();
    let stored = cp.app.repo.count("api-tokens/").await.unwrap();
    assert_eq!(stored, 1, "written to and read back from etcd");
    cp.stop_within(Duration::from_secs(5)).await.unwrap();

    // Each missing piece is refused by etcd: no password, no client
    // certificate, no TLS at all.
    let no_cert = Some(EtcdTlsConfig { ca_cert: ca_path.clone(), cert: None, key: None });
    for (what, c) in [("no password", config(full_tls(), false)), ("no client certificate", config(no_cert, true)), ("no TLS", config(None, true))] {
        assert!(ControlPlane::start(&c).await.is_err(), "{what}: the control plane reached etcd");
    }
    // A password file others can read is refused before it is used.
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ControlPlane::start(&config(full_tls(), true)).await.err().expect("a world-readable password file was used");
    assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
}
