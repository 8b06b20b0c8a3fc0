//! An NFS pool (userspace mode) across two nodes, against a real
//! nfs-ganesha with its own portmapper in this test's network namespace:
//! ready on both, its capacity the server's, volumes served by either node,
//! linked clones and snapshots through the API, and a second pool on the
//! same export refused with the reason.

mod common;

use std::time::{Duration, Instant};

use common::{Clients, GIB};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_node::RunningNode;
use limiquantix_testkit::Ganesha;

fn nfs_config(nfs: &Ganesha) -> pb::PoolConfig {
    pb::PoolConfig {
        backend: Some(pb::pool_config::Backend::Nfs(pb::NfsPoolConfig {
            server: "127.0.0.1".into(),
            export_path: nfs.export().display().to_string(),
            nfs_version: pb::NfsVersion::V3 as i32,
            mode: pb::NfsMode::Userspace as i32,
            ..Default::default()
        })),
    }
}

#[test]
fn an_nfs_pool_serves_volumes_from_every_node() {
    limiquantix_testkit::private_network().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = common::control_config(root.path());
        config.pool_refresh_secs = 1;
        let cp = ControlPlane::start(&config).await.unwrap();
        let mut c = Clients::connect(&cp.url()).await;
        let (n1, id1) = common::start_node(root.path(), "n1", &cp.url(), |_| {}).await;
        let (n2, id2) = common::start_node(root.path(), "n2", &cp.url(), |_| {}).await;
        c.wait_node_online(&id1).await;
        c.wait_node_online(&id2).await;

        let create = |name: &str| pb::CreatePoolRequest { name: name.into(), config: Some(nfs_config(&nfs)), ..Default::default() };
        let op = c.pools.create_pool(create("nas")).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "nas".into() }).await.unwrap().into_inner();
        assert!(pool.all_nodes && pool.capabilities.as_ref().unwrap().shared);
        assert_eq!(pool.state, pb::PoolState::Ready as i32, "{pool:?}");
        let ready: Vec<&str> = pool.nodes.iter().filter(|n| n.phase == pb::PoolPhase::Ready as i32).map(|n| n.node_id.as_str()).collect();
        assert!(ready.contains(&id1.as_str()) && ready.contains(&id2.as_str()), "{:?}", pool.nodes);
        let st = rustix::fs::statvfs(nfs.export_local()).unwrap();
        let total = st.f_blocks * st.f_frsize;
        assert_eq!(pool.capacity.unwrap().total_bytes, total, "the server's figure, once");

        // The same export as a second pool: refused, naming the first.
        let op = c.pools.create_pool(create("nas-again")).await.unwrap().into_inner();
        let failed = c.wait(&op.task_id).await;
        assert_eq!(failed.state, pb::TaskState::Failed as i32, "{failed:?}");
        assert!(format!("{failed:?}").contains(&pool.id), "the error names the pool that uses the export: {failed:?}");

        // Volumes: made by one node, changed by the other once the first is gone.
        let base = c.create_volume("nas", "base", GIB).await;
        assert_eq!(base.format, pb::VolumeFormat::Qcow2 as i32);
        assert!(nfs.export_local().join(format!("lq-{}.qcow2", base.id)).exists());
        let clone_req = pb::CreateVolumeRequest {
            pool: "nas".into(),
            name: "linked".into(),
            source: Some(pb::VolumeSource {
                source: Some(pb::volume_source::Source::Clone(pb::CloneSource { source_volume_id: base.id.clone(), mode: pb::CloneMode::Linked as i32 })),
            }),
            ..Default::default()
        };
        let op = c.volumes.create_volume(clone_req).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let linked = c.volume(&op.volume.unwrap().id).await.unwrap();
        assert_eq!(linked.backing_volume_id, base.id);

        n1.stop().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.nodes.get_node(pb::GetNodeRequest { node_id: id1.clone() }).await.unwrap().into_inner().state != pb::NodeState::Offline as i32 {
            assert!(Instant::now() < deadline, "node 1 never went offline");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let op = c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: linked.id.clone(), new_size_bytes: 2 * GIB }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let snap = pb::CreateSnapshotRequest { volume_id: linked.id.clone(), name: "before-upgrade".into(), ..Default::default() };
        let op = c.volumes.create_snapshot(snap).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let snaps = c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: linked.id.clone() }).await.unwrap().into_inner();
        assert_eq!(snaps.snapshots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["before-upgrade"]);
        for id in [&linked.id, &base.id] {
            let op = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: id.clone() }).await.unwrap().into_inner();
            c.wait_ok(&op.task_id).await;
        }
        let left: Vec<_> = std::fs::read_dir(nfs.export_local()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "nothing left on the export: {left:?}");
        n2.stop().await.unwrap();
        cp.stop_within(Duration::from_secs(5)).await.unwrap();
    });
}

/// A second "host": a thread in a network namespace of its own running a
/// node daemon. It reaches the control plane, and the control plane reaches
/// it, through loopback forwarders; the NFS server at 127.0.0.1 is not
/// there. Returns its id and a sender that stops it.
fn start_node_on_another_host(root: &std::path::Path, cp_port: u16) -> (String, std::sync::mpsc::Sender<()>) {
    use limiquantix_testkit::{Forward, current_network, private_network};
    const NODE_PORT: u16 = 7701; // free: the namespace is new
    let host_a = current_network().unwrap();
    let mut cfg = common::node_config(root, "set below");
    let id = limiquantix_node::registration::node_id(&cfg.state_dir).unwrap();
    let (host_b_tx, host_b_rx) = std::sync::mpsc::channel();
    let (advertised_tx, advertised_rx) = std::sync::mpsc::channel::<u16>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        private_network().unwrap();
        let to_cp = Forward::start(&host_a, cp_port).unwrap();
        host_b_tx.send(current_network().unwrap()).unwrap();
        cfg.control_plane = Some(format!("http://127.0.0.1:{}", to_cp.port));
        cfg.listen = ([127, 0, 0, 1], NODE_PORT).into();
        cfg.advertise_address = Some(format!("http://127.0.0.1:{}", advertised_rx.recv().unwrap()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let node = RunningNode::start(&cfg).await.unwrap();
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            node.stop().await.unwrap();
        });
    });
    let into_b = Forward::start(&host_b_rx.recv().unwrap(), NODE_PORT).unwrap();
    advertised_tx.send(into_b.port).unwrap();
    (id, stop_tx)
}

#[test]
fn a_node_that_cannot_reach_the_server_shows_its_own_error_and_the_others_stay_ready() {
    limiquantix_testkit::private_network().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut config = common::control_config(root.path());
    config.pool_refresh_secs = 1;
    let cp = rt.block_on(ControlPlane::start(&config)).unwrap();
    let (far_id, stop_far) = start_node_on_another_host(&root.path().join("far"), cp.addr.port());
    rt.block_on(async {
        let mut c = Clients::connect(&cp.url()).await;
        let (near, near_id) = common::start_node(root.path(), "near", &cp.url(), |_| {}).await;
        c.wait_node_online(&near_id).await;
        c.wait_node_online(&far_id).await;

        let op = c.pools.create_pool(pb::CreatePoolRequest { name: "nas".into(), config: Some(nfs_config(&nfs)), ..Default::default() }).await.unwrap().into_inner();
        c.wait(&op.task_id).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let pool = loop {
            let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "nas".into() }).await.unwrap().into_inner();
            let phase = |id: &str| pool.nodes.iter().find(|n| n.node_id == id).map(|n| n.phase);
            if phase(&near_id) == Some(pb::PoolPhase::Ready as i32) && phase(&far_id) == Some(pb::PoolPhase::Error as i32) {
                break pool;
            }
            assert!(Instant::now() < deadline, "{:?}", pool.nodes);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(pool.state, pb::PoolState::Ready as i32, "the pool serves from the node that reaches it: {pool:?}");
        let far = pool.nodes.iter().find(|n| n.node_id == far_id).unwrap();
        assert!(far.message.contains("127.0.0.1") && !far.message.contains(&format!("node {far_id} cannot be reached")), "the far node says what it cannot reach: {far:?}");
        // Volumes go through the node that reaches the server.
        let v = c.create_volume("nas", "disk", GIB).await;
        assert!(nfs.export_local().join(format!("lq-{}.qcow2", v.id)).exists());
        stop_far.send(()).unwrap();
        near.stop().await.unwrap();
        cp.stop_within(Duration::from_secs(5)).await.unwrap();
    });
}
