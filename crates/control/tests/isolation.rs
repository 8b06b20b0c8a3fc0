//! Deadlines and isolation: a node daemon stopped with SIGSTOP (hung, not
//! dead: its socket still accepts) fails its operations with UNAVAILABLE
//! within the deadlines, and nothing on another node waits for it.

mod common;

use std::time::{Duration, Instant};

use common::process::{spawn_node, write_node_config};
use common::{Clients, GIB, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_node::RunningNode;
use limiquantix_testkit::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_node_fails_its_operations_in_time_and_delays_no_other_node() {
    let root = tempfile::tempdir().unwrap();
    let mut config = common::control_config(root.path());
    // Heartbeats keep the hung node "online" for the whole test: only the
    // deadlines can tell.
    config.offline_after_secs = 120;
    config.pool_refresh_secs = 1;
    config.saga_retry_secs = 3;
    config.node_calls.call_secs = 2;
    config.node_calls.silence_secs = 2;
    config.node_calls.refresh_secs = 1;
    let cp = ControlPlane::start(&config).await.unwrap();
    let mut c = Clients::connect(&cp.url()).await;

    let hung_dir = root.path().join("hung");
    let hung_config = write_node_config(&hung_dir, free_port().unwrap(), &cp.url(), 0);
    let hung_id = limiquantix_node::registration::node_id(&hung_dir.join("state")).unwrap();
    let hung = spawn_node(&hung_config, &root.path().join("hung.log"));
    let healthy_cfg = common::node_config(&root.path().join("healthy"), &cp.url());
    let healthy = RunningNode::start(&healthy_cfg).await.unwrap();
    let healthy_id = limiquantix_node::registration::node_id(&healthy_cfg.state_dir).unwrap();
    c.wait_node_online(&hung_id).await;
    c.wait_node_online(&healthy_id).await;
    c.local_pool("hung", &hung_id, &hung_dir.join("pools/p")).await;
    c.local_pool("fine", &healthy_id, &root.path().join("healthy/node/pools/p")).await;
    let on_hung = c.create_volume("hung", "before", GIB).await;

    hung.signal(libc::SIGSTOP);
    let stopped = Instant::now();

    // Its operations fail with UNAVAILABLE naming it, within the deadlines
    // (2 s per call, retried for 3 s), whatever they are.
    let create = c.volumes.create_volume(create_req("hung", "during", GIB)).await.unwrap().into_inner();
    let resize = c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: on_hung.id.clone(), new_size_bytes: 2 * GIB }).await;
    let resize = resize.unwrap().into_inner();
    // Meanwhile the other node serves as usual: nothing waits on the hung one.
    for i in 0..10 {
        let started = Instant::now();
        c.create_volume("fine", &format!("f{i}"), GIB).await;
        assert!(started.elapsed() < Duration::from_secs(1), "create {i} on the healthy node took {:?}", started.elapsed());
    }
    for task_id in [&create.task_id, &resize.task_id] {
        let task = c.wait(task_id).await;
        assert_eq!((task.state, task.error_code), (pb::TaskState::Failed as i32, tonic::Code::Unavailable as i32), "{task:?}");
        assert!(task.error.contains(&hung_id), "names the node: {task:?}");
    }
    assert!(stopped.elapsed() < Duration::from_secs(30), "failed in time: {:?}", stopped.elapsed());
    // The pool watcher marks the hung node's pool in error, the other one stays ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "hung".into() }).await.unwrap().into_inner();
        if pool.state == pb::PoolState::Error as i32 {
            assert!(pool.message.contains(&hung_id), "{pool:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the hung node's pool never showed it: {pool:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fine = c.pools.get_pool(pb::GetPoolRequest { pool: "fine".into() }).await.unwrap().into_inner();
    assert_eq!(fine.state, pb::PoolState::Ready as i32);

    // Resumed, it is used again; the failed create was undone on it.
    hung.signal(libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let volumes = c.volumes.list_volumes(pb::ListVolumesRequest { pool: "hung".into(), ..Default::default() }).await;
        let volumes = volumes.unwrap().into_inner().volumes;
        let settled = volumes.iter().all(|v| v.task_id.is_empty());
        if settled && volumes.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the undo never finished: {volumes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.create_volume("hung", "after", GIB).await;
    healthy.stop().await.unwrap();
    cp.stop_within(Duration::from_secs(5)).await.unwrap();
}
