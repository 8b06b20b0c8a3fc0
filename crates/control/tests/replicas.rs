//! Several control-plane replicas on one etcd: one leads and runs the sagas;
//! when it dies mid-saga, another takes over and finishes the saga.

mod common;

use std::time::{Duration, Instant};

use common::process::{spawn, write_etcd_config};
use common::{Clients, GIB, create_req, http_get};
use limiquantix_api::v1 as pb;
use limiquantix_node::RunningNode;
use limiquantix_testkit::Etcd;
use limiquantix_testkit::free_port;

async fn leading(url: &str) -> bool {
    http_get(&format!("{url}/status")).await.is_ok_and(|page| page.contains("This replica is leading"))
}

async fn wait_leading(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !leading(url).await {
        assert!(Instant::now() < deadline, "{url} never became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_replica_takes_over_and_resumes_the_dead_leaders_saga() {
    let etcd = Etcd::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port().unwrap(), free_port().unwrap());
    let (url_a, url_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    let config_a = write_etcd_config(root.path(), "a.toml", port_a, &etcd.endpoint());
    let config_b = write_etcd_config(root.path(), "b.toml", port_b, &etcd.endpoint());
    // A leads, and dies when its saga reaches the node.
    let mut a = spawn(&config_a, Some("volume.create:create-on-node:before"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        wait_leading(&url_a, Duration::from_secs(30)).await;
        let mut b = spawn(&config_b, None);
        let mut c = Clients::connect(&url_b).await;
        assert!(!leading(&url_b).await, "one leader at a time");

        let ncfg = common::node_config(root.path(), &url_b);
        let node = RunningNode::start(&ncfg).await.unwrap();
        let node_id = limiquantix_node::registration::node_id(&ncfg.state_dir).unwrap();
        c.wait_node_online(&node_id).await;
        // Any replica takes calls; the leader (A) runs the sagas.
        c.local_pool("p1", &node_id, &root.path().join("node/pools/p1")).await;
        let op = c.volumes.create_volume(create_req("p1", "survivor", GIB)).await.unwrap().into_inner();

        let died = a.child.wait_exit(Duration::from_secs(30));
        assert!(died.is_some_and(|s| !s.success()), "the leader died at the fault");
        wait_leading(&url_b, Duration::from_secs(30)).await;
        let task = c.wait(&op.task_id).await;
        assert_eq!(task.state, pb::TaskState::Succeeded as i32, "B resumed A's saga: {task:?}");
        let v = c.volume(&op.volume.unwrap().id).await.unwrap();
        assert_eq!(v.state, pb::VolumeState::Available as i32);
        assert!(root.path().join(format!("node/pools/p1/lq-{}.qcow2", v.id)).exists());

        node.stop().await.unwrap();
        b.child.stop(Duration::from_secs(10));
    });
    drop(etcd);
}
