//! Ready after a restart: a node the control plane has not heard from since
//! it started is "starting", not an error; its pools keep their state, and an
//! operation that needs it waits briefly for its first heartbeat.

mod common;

use std::time::{Duration, Instant};

use common::{Clients, GIB, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_node::RunningNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_restart_a_node_not_back_yet_is_starting_and_operations_wait_for_it() {
    let root = tempfile::tempdir().unwrap();
    let mut config = common::control_config(root.path());
    config.listen = format!("127.0.0.1:{}", limiquantix_testkit::free_port().unwrap()).parse().unwrap();
    config.offline_after_secs = 15;
    config.pool_refresh_secs = 1;
    let cp = ControlPlane::start(&config).await.unwrap();
    let ncfg = common::node_config(root.path(), &cp.url());
    let node = RunningNode::start(&ncfg).await.unwrap();
    let node_id = limiquantix_node::registration::node_id(&ncfg.state_dir).unwrap();
    let mut c = Clients::connect(&cp.url()).await;
    c.wait_node_online(&node_id).await;
    c.local_pool("p1", &node_id, &root.path().join("node/pools/p1")).await;

    // Both stop; the control plane comes back first, the node 2 s later.
    node.stop().await.unwrap();
    cp.stop_within(Duration::from_secs(5)).await.unwrap();
    let cp = ControlPlane::start(&config).await.unwrap();
    let mut c = Clients::connect(&cp.url()).await;
    let shown = c.nodes.get_node(pb::GetNodeRequest { node_id: node_id.clone() }).await.unwrap().into_inner();
    assert_eq!(shown.state, pb::NodeState::Starting as i32, "{shown:?}");
    let restarted_node = tokio::spawn({
        let ncfg = ncfg.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            RunningNode::start(&ncfg).await.unwrap()
        }
    });
    // Meanwhile the pool stays as it was, through refreshes (every second here).
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
        assert_eq!(pool.state, pb::PoolState::Ready as i32, "a starting node is not an error: {pool:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A create waits for the node instead of failing.
    let started = Instant::now();
    let op = c.volumes.create_volume(create_req("p1", "after-restart", GIB)).await.unwrap().into_inner();
    c.wait_ok(&op.task_id).await;
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    let shown = c.nodes.get_node(pb::GetNodeRequest { node_id: node_id.clone() }).await.unwrap().into_inner();
    assert_eq!(shown.state, pb::NodeState::Online as i32);
    restarted_node.await.unwrap().stop().await.unwrap();
    cp.stop_within(Duration::from_secs(5)).await.unwrap();
}
