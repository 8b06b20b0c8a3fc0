//! The NodeStorage gRPC API: codes and messages for bad input, unsupported
//! kinds, restart persistence, cancellation by the client, health and
//! reflection.

mod common;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use tonic::Code;

const GIB: u64 = 1 << 30;

fn local_config(path: &str) -> Option<pb::PoolConfig> {
    Some(pb::PoolConfig { backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: path.into() })) })
}

async fn create(node: &mut TestNode, pool: &str, id: &str, s: Option<pb::VolumeSpec>) -> Result<pb::VolumeInfo, tonic::Status> {
    let req = pb::NodeCreateVolumeRequest { pool_id: pool.into(), volume_id: id.into(), spec: s, source: None };
    finish(node.client.create_volume(req).await).await.1
}

#[tokio::test]
async fn node_info_names_the_kinds_it_serves() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let info = node.client.get_node_info(pb::GetNodeInfoRequest {}).await.unwrap().into_inner();
    assert!(!info.hostname.is_empty());
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let kinds: Vec<i32> = info.supported_kinds.iter().map(|k| k.kind).collect();
    assert_eq!(kinds, [pb::PoolKind::Local as i32, pb::PoolKind::Ceph as i32, pb::PoolKind::Nfs as i32, pb::PoolKind::Iscsi as i32]);
    let caps = |i: usize| info.supported_kinds[i].capabilities.clone().unwrap_or_default();
    assert!(caps(0).linked_clone && caps(0).snapshots && caps(0).thin_provisioning && !caps(0).shared);
    assert!(caps(1).shared && caps(1).linked_clone && caps(1).live_resize, "Ceph pools are shared");
    assert_eq!(caps(1).formats, [pb::VolumeFormat::Raw as i32]);
    assert!(caps(2).shared && caps(2).linked_clone && caps(2).snapshots, "NFS pools are shared");
}

#[tokio::test]
async fn bad_pool_configs_are_invalid_arguments_that_never_echo_secrets() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    use pb::pool_config::Backend as B;
    let lvm = |volume_group: &str| {
        B::Iscsi(pb::IscsiPoolConfig {
            portals: vec!["127.0.0.1:3260".into()],
            target_iqn: "iqn.2024-01.io.x:t".into(),
            chap_username: "lquser".into(),
            chap_password: "pw-long-enough-12".into(),
            mode: pb::IscsiMode::Lvm as i32,
            volume_group: volume_group.into(),
            ..Default::default()
        })
    };
    for (why, backend) in [("volume group", lvm("")), ("volume group name", lvm("vg;rm -rf")), ("volume group name", lvm("-vg"))] {
        let req = pb::InitStoragePoolRequest { pool_id: new_id(), config: Some(pb::PoolConfig { backend: Some(backend) }) };
        let err = node.client.init_storage_pool(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
        assert!(err.message().contains("volume group"), "{why}: {err:?}");
        assert!(!err.message().contains("pw-long"), "no secret in errors");
    }
    // Ceph is served: a bad key is bad input, and is not echoed.
    let ceph = B::Ceph(pb::CephPoolConfig {
        monitors: vec!["127.0.0.1:6789".into()],
        ceph_pool: "rbd".into(),
        client_id: "admin".into(),
        key: "AQBkey==".into(),
        ..Default::default()
    });
    let req = pb::InitStoragePoolRequest { pool_id: new_id(), config: Some(pb::PoolConfig { backend: Some(ceph) }) };
    let err = node.client.init_storage_pool(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!err.message().contains("AQBkey"), "{err:?}");
}

#[tokio::test]
async fn bad_ids_names_and_sizes_are_invalid_arguments() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let pool = node.init_local_pool("p1").await;
    let pool_dir = root.path().join("pools/p1");

    for bad in ["", "../../etc", "p1", "a b", "<x>", "-rf", &"x".repeat(64)] {
        let req = pb::InitStoragePoolRequest { pool_id: bad.into(), config: local_config(pool_dir.to_str().unwrap()) };
        assert_eq!(node.client.init_storage_pool(req).await.unwrap_err().code(), Code::InvalidArgument, "pool id {bad:?}");
        let err = create(&mut node, &pool, bad, spec(GIB)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "volume id {bad:?}");
        assert!(err.message().contains("is not a UUID"), "{err:?}");
    }
    for size in [0, 1000, 1 << 63, u64::MAX] {
        let err = create(&mut node, &pool, &new_id(), spec(size)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "size {size}");
    }
    let bad_enum = Some(pb::VolumeSpec { size_bytes: GIB, format: 42, provisioning: 0 });
    let err = create(&mut node, &pool, &new_id(), bad_enum).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("format"), "{err:?}");

    let v = create(&mut node, &pool, &new_id(), spec(GIB)).await.unwrap();
    for name in ["", "a/b", "..", "x y", "<>&'\"", "-x", &"n".repeat(64)] {
        let req = pb::CreateVolumeSnapshotRequest { pool_id: pool.clone(), volume_id: v.volume_id.clone(), name: name.into() };
        let err = node.client.create_volume_snapshot(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "snapshot {name:?}");
    }
    let err = node
        .client
        .resize_volume(pb::NodeResizeVolumeRequest { pool_id: pool.clone(), volume_id: v.volume_id.clone(), new_size_bytes: GIB / 2, live_domain: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("shrink"), "{err:?}");

    let names: Vec<_> = std::fs::read_dir(&pool_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "only the one good volume exists: {names:?}");
}

#[tokio::test]
async fn unknown_pools_and_volumes_are_not_found_and_conflicts_are_reported() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let pool = node.init_local_pool("p1").await;

    let err = node.client.get_storage_pool_info(pb::GetStoragePoolInfoRequest { pool_id: new_id(), count_volumes: false }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = create(&mut node, &new_id(), &new_id(), spec(GIB)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = node.client.get_volume(pb::NodeGetVolumeRequest { pool_id: pool.clone(), volume_id: new_id() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let id = new_id();
    create(&mut node, &pool, &id, spec(GIB)).await.unwrap();
    assert_eq!(create(&mut node, &pool, &id, spec(GIB)).await.unwrap().volume_id, id, "same spec: success");
    assert_eq!(create(&mut node, &pool, &id, spec(2 * GIB)).await.unwrap_err().code(), Code::AlreadyExists);
    node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: id.clone(), ..Default::default() }).await.unwrap();
    node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: id.clone(), ..Default::default() }).await.unwrap();

    let thick = Some(pb::VolumeSpec { size_bytes: 1 << 50, format: pb::VolumeFormat::Raw as i32, provisioning: pb::Provisioning::Thick as i32 });
    assert_eq!(create(&mut node, &pool, &new_id(), thick).await.unwrap_err().code(), Code::ResourceExhausted);

    let outside = tempfile::tempdir().unwrap();
    let req = pb::InitStoragePoolRequest { pool_id: new_id(), config: local_config(outside.path().to_str().unwrap()) };
    assert_eq!(node.client.init_storage_pool(req).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn pools_come_back_after_a_daemon_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let pool = node.init_local_pool("p1").await;
    let id = new_id();
    create(&mut node, &pool, &id, spec(GIB)).await.unwrap();
    node.stop().await;

    let mut node = TestNode::start(root.path()).await;
    let pools = node.client.list_storage_pools(pb::ListStoragePoolsRequest {}).await.unwrap().into_inner().pools;
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].pool_id, pool);
    assert_eq!(pools[0].phase, pb::PoolPhase::Ready as i32);
    assert_eq!(pools[0].capacity.unwrap().volume_count, None, "listing pools never reads every volume");
    let info = pb::GetStoragePoolInfoRequest { pool_id: pool.clone(), count_volumes: true };
    let counted = node.client.get_storage_pool_info(info).await.unwrap().into_inner().capacity.unwrap();
    assert_eq!((counted.volume_count, counted.provisioned_bytes), (Some(1), Some(GIB)));
    let v = node.client.get_volume(pb::NodeGetVolumeRequest { pool_id: pool, volume_id: id }).await.unwrap().into_inner();
    assert_eq!(v.size_bytes, GIB);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_copy() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let pool = node.init_local_pool("p1").await;
    let pool_dir = root.path().join("pools/p1");
    let base = create(&mut node, &pool, &new_id(), Some(pb::VolumeSpec { size_bytes: 4 * GIB, format: pb::VolumeFormat::Raw as i32, provisioning: 0 })).await.unwrap();
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x3 0 512M"])
        .arg(&base.location)
        .output()
        .unwrap();
    assert!(out.status.success());

    let copy_id = new_id();
    let req = pb::NodeCloneVolumeRequest {
        pool_id: pool.clone(),
        source_volume_id: base.volume_id.clone(),
        volume_id: copy_id.clone(),
        mode: pb::CloneMode::Full as i32,
        spec: None,
    };
    let mut stream = node.client.clone_volume(req).await.unwrap().into_inner();
    // Wait until the copy is under way, then hang up.
    loop {
        match stream.message().await.unwrap().and_then(|e| e.event) {
            Some(pb::volume_operation_event::Event::Progress(p)) if p.done_bytes > 0 => break,
            Some(pb::volume_operation_event::Event::Volume(_)) => panic!("copy finished before the client hung up"),
            _ => {}
        }
    }
    drop(stream);
    let partial = pool_dir.join(format!(".lq-{copy_id}.raw.partial"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while partial.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the cancelled copy's partial file is still there");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let err = node.client.get_volume(pb::NodeGetVolumeRequest { pool_id: pool.clone(), volume_id: copy_id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let names: Vec<_> = std::fs::read_dir(&pool_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "only the base is left: {names:?}");
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let root = tempfile::tempdir().unwrap();
    let node = TestNode::start(root.path()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", node.addr)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest { service: "limiquantix.storage.v1.NodeStorage".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest, server_reflection_response::MessageResponse};
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"limiquantix.storage.v1.NodeStorage"), "{names:?}");
}

#[tokio::test]
async fn nfs_configs_with_bad_shapes_are_invalid_and_nothing_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(root.path()).await;
    let nfs = |server: &str, export: &str, version: i32, mode: i32, soft: bool| pb::PoolConfig {
        backend: Some(pb::pool_config::Backend::Nfs(pb::NfsPoolConfig {
            server: server.into(),
            export_path: export.into(),
            nfs_version: version,
            mode,
            options: Some(pb::NfsMountOptions { soft, ..Default::default() }),
        })),
    };
    let v3 = pb::NfsVersion::V3 as i32;
    let user = pb::NfsMode::Userspace as i32;
    let bad = [
        nfs("nas 01", "/srv/vm", v3, user, false),
        nfs("nas,ro", "/srv/vm", v3, user, false),
        nfs("nas;reboot", "/srv/vm", v3, user, false),
        nfs("-onas", "/srv/vm", v3, user, false),
        nfs("nas", "/srv/../etc", v3, user, false),
        nfs("nas", "/srv/vm,suid", v3, user, false),
        nfs("nas", "srv/vm", v3, user, false),
        nfs("nas", "/srv/vm", 99, user, false),
        nfs("nas", "/srv/vm", v3, 7, false),
        nfs("nas", "/srv/vm", pb::NfsVersion::V42 as i32, user, false),
        nfs("nas", "/srv/vm", v3, user, true),
    ];
    for config in bad {
        let shown = format!("{config:?}");
        let req = pb::InitStoragePoolRequest { pool_id: new_id(), config: Some(config) };
        let err = node.client.init_storage_pool(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{shown}: {err:?}");
    }
    let pools = node.client.list_storage_pools(pb::ListStoragePoolsRequest {}).await.unwrap().into_inner();
    assert!(pools.pools.is_empty(), "nothing was kept: {pools:?}");
}
