//! Sagas under trouble, in one process: a node that goes away mid-operation
//! (retried when it returns, unwound when it does not return in time), and a
//! task cancelled mid-copy.

mod common;

use std::time::Duration;

use common::{Cluster, GIB, MIB, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_node::RunningNode;
use tonic::Code;

fn write(path: &str, fmt: &str, mib: u64) {
    let mut cmd = std::process::Command::new("qemu-io");
    cmd.args(["-f", fmt]);
    // qemu-io takes at most ~2 GiB per request.
    for chunk in 0..mib.div_ceil(512) {
        let len = (mib - chunk * 512).min(512);
        cmd.arg("-c").arg(format!("write -P 0x5a {} {}", chunk * 512 * MIB, len * MIB));
    }
    let out = cmd.arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn restart_node(k: &mut Cluster, addr: std::net::SocketAddr) {
    let mut cfg = common::node_config(k.root.path(), &k.cp.as_ref().unwrap().url());
    cfg.listen = addr;
    k.node = Some(RunningNode::start(&cfg).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_retries_while_its_node_is_away_and_completes_when_it_returns() {
    let mut k = Cluster::start_with(|c| c.saga_retry_secs = 60, |_| {}).await;
    let addr = k.node_addr();
    k.node.take().unwrap().stop().await.unwrap();
    // Within its heartbeat grace the node still counts as online: the call is
    // accepted and the saga's node step fails (connection refused) and retries.
    let op = k.c.volumes.create_volume(create_req("p1", "patient", GIB)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = k.c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
    assert_eq!(t.state, pb::TaskState::Running as i32);
    assert!(t.step.contains("create-on-node") && t.step.contains("retrying"), "{t:?}");
    restart_node(&mut k, addr).await;
    k.c.wait_ok(&op.task_id).await;
    let v = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    assert_eq!(v.state, pb::VolumeState::Available as i32);
    assert_eq!(k.files(), vec![format!("lq-{}.qcow2", v.id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_unwinds_when_its_node_stays_away_and_leaves_nothing() {
    let mut k = Cluster::start_with(|c| c.saga_retry_secs = 1, |_| {}).await;
    let addr = k.node_addr();
    k.node.take().unwrap().stop().await.unwrap();
    let op = k.c.volumes.create_volume(create_req("p1", "doomed", GIB)).await.unwrap().into_inner();
    // Give up on the node, then unwind: the undo (delete on the node) waits
    // for the node, so bring it back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    restart_node(&mut k, addr).await;
    let t = k.c.wait(&op.task_id).await;
    assert_eq!(t.state, pb::TaskState::Failed as i32, "{t:?}");
    assert_eq!(t.error_code, Code::Unavailable as i32, "{t:?}");
    assert!(t.error.contains(&k.node_id), "names the node: {t:?}");
    // The task may end before the undo does (it needed the node): the
    // volume goes once the node answers again.
    let volume_id = op.volume.unwrap().id;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while k.c.volume(&volume_id).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the undo never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(k.files().is_empty(), "{:?}", k.files());
    let p = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p.provisioned_bytes, 0, "the reservation was given back");
    // The name is free again.
    let op = k.c.volumes.create_volume(create_req("p1", "doomed", GIB)).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_running_copy_and_unwinds_it() {
    // Copies at 128 MiB/s: the 1 GiB of data takes seconds, time to cancel it.
    let mut k = Cluster::start_with(|_| {}, |n| n.limits.copy_mib_per_sec = 128).await;
    let spec = pb::VolumeSpec { size_bytes: 2 * GIB, format: pb::VolumeFormat::Raw as i32, provisioning: 0 };
    let op = k.c.volumes.create_volume(pb::CreateVolumeRequest { spec: Some(spec), ..create_req("p1", "big", 0) }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let big = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    write(k.pool_dir().join(format!("lq-{}.raw", big.id)).to_str().unwrap(), "raw", 1024);
    let files_before = k.files();

    // A format-changing copy goes through qemu-img convert: long enough to cancel.
    let req = pb::CloneVolumeRequest {
        source_volume_id: big.id.clone(),
        name: "copy".into(),
        mode: pb::CloneMode::Full as i32,
        spec: Some(pb::VolumeSpec { size_bytes: 0, format: pb::VolumeFormat::Qcow2 as i32, provisioning: 0 }),
        ..Default::default()
    };
    let op = k.c.volumes.clone_volume(req).await.unwrap().into_inner();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = k.c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
        assert_eq!(t.state, pb::TaskState::Running as i32, "the copy ended before it could be cancelled: {t:?}");
        if t.progress.is_some_and(|p| p.done_bytes > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = k.c.tasks.cancel_task(pb::CancelTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
    assert!(t.cancel_requested);
    let t = k.c.wait(&op.task_id).await;
    assert_eq!(t.state, pb::TaskState::Cancelled as i32, "{t:?}");
    assert_eq!(k.c.volume(&op.volume.unwrap().id).await.unwrap_err().code(), Code::NotFound);
    // The node stopped the copy and removed its partial file.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while k.files() != files_before {
        assert!(std::time::Instant::now() < deadline, "{:?}", k.files());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(k.c.volume(&big.id).await.unwrap().state, pb::VolumeState::Available as i32, "the source is free again");
}
