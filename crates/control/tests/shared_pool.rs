//! A shared (Ceph) pool across several nodes: initialised on every node,
//! ready while any node has it, its capacity the backend's own figure, and
//! brought automatically to a node that joins later.

mod common;

use std::time::{Duration, Instant};

use common::{Clients, GIB, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_node::RunningNode;
use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;

async fn start_node(root: &std::path::Path, name: &str, cp: &str) -> (RunningNode, String) {
    common::start_node(root, name, cp, |c| c.ceph.mount_timeout_secs = 5).await
}

#[test]
fn a_ceph_pool_follows_every_node_including_one_that_joins_later() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = common::control_config(root.path());
        config.pool_refresh_secs = 1;
        let cp = ControlPlane::start(&config).await.unwrap();
        let mut c = Clients::connect(&cp.url()).await;
        let (n1, id1) = start_node(root.path(), "n1", &cp.url()).await;
        let (n2, id2) = start_node(root.path(), "n2", &cp.url()).await;
        c.wait_node_online(&id1).await;
        c.wait_node_online(&id2).await;

        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Ceph(pb::CephPoolConfig {
                monitors: vec![ceph.monitor()],
                ceph_pool: TEST_POOL.into(),
                client_id: "admin".into(),
                key: ceph.admin_key().into(),
                ..Default::default()
            })),
        };
        let op = c
            .pools
            .create_pool(pb::CreatePoolRequest { name: "rbd".into(), config: Some(config), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        c.wait_ok(&op.task_id).await;
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "rbd".into() }).await.unwrap().into_inner();
        assert!(pool.all_nodes);
        assert_eq!(pool.state, pb::PoolState::Ready as i32);
        let ready: Vec<&str> = pool.nodes.iter().filter(|n| n.phase == pb::PoolPhase::Ready as i32).map(|n| n.node_id.as_str()).collect();
        assert!(ready.contains(&id1.as_str()) && ready.contains(&id2.as_str()), "{:?}", pool.nodes);
        let Some(pb::pool_config::Backend::Ceph(shown)) = pool.config.and_then(|c| c.backend) else { panic!() };
        assert!(shown.key.is_empty(), "the key is never shown");
        // Both nodes got the key, yet the store only ever held it sealed.
        let (sealed, _) = cp.app.repo.get_raw(&limiquantix_control::keys::pool_secret(&pool.id)).await.unwrap().unwrap();
        let key = ceph.admin_key();
        assert!(!String::from_utf8_lossy(&sealed).contains(key), "the stored secret is sealed");
        let store_file = std::fs::read(root.path().join("control/state.redb")).unwrap();
        assert!(!store_file.windows(key.len()).any(|w| w == key.as_bytes()), "the key is nowhere in the store file");
        use std::os::unix::fs::PermissionsExt;
        let key_file = std::fs::metadata(root.path().join("control/secrets.key")).unwrap();
        assert_eq!(key_file.permissions().mode() & 0o777, 0o600);

        // The capacity is Ceph's figure for the pool, not a sum over nodes.
        let cap = pool.capacity.unwrap();
        let df: serde_json::Value = serde_json::from_str(&ceph.ceph(&["df", "-f", "json"]).unwrap()).unwrap();
        let stats = df["pools"].as_array().unwrap().iter().find(|p| p["name"] == TEST_POOL).unwrap()["stats"].clone();
        let expect = stats["stored"].as_u64().unwrap() + stats["max_avail"].as_u64().unwrap();
        assert!(cap.total_bytes.abs_diff(expect) < GIB, "{} vs ceph df {expect}", cap.total_bytes);

        // Volumes of a shared pool are served by any node that has it.
        let v = c.create_volume("rbd", "shared-disk", GIB).await;
        n1.stop().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = c.nodes.get_node(pb::GetNodeRequest { node_id: id1.clone() }).await.unwrap().into_inner();
            if n.state == pb::NodeState::Offline as i32 {
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let op = c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: v.id.clone(), new_size_bytes: 2 * GIB }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;

        // A node that joins later gets the pool without anyone asking.
        let (n3, id3) = start_node(root.path(), "n3", &cp.url()).await;
        c.wait_node_online(&id3).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "rbd".into() }).await.unwrap().into_inner();
            if pool.nodes.iter().any(|n| n.node_id == id3 && n.phase == pb::PoolPhase::Ready as i32) {
                break;
            }
            assert!(Instant::now() < deadline, "the new node never got the pool: {:?}", pool.nodes);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let op = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: v.id.clone() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let op = c.volumes.create_volume(create_req("rbd", "after", GIB)).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        n2.stop().await.unwrap();
        n3.stop().await.unwrap();
        cp.stop_within(Duration::from_secs(5)).await.unwrap();
    });
}
