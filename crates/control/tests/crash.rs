//! Crash safety: the control plane (a child process) is aborted — as kill -9
//! would — at every step of the create and clone sagas, and at undo steps of
//! a failing import; a restart must resume or unwind each saga so that the
//! store and the node's disk agree: no orphan file, no volume stuck in a
//! transitional state, no task left running.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{spawn, write_config};
use common::{Clients, GIB, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_node::RunningNode;
use limiquantix_testkit::free_port;

/// Every task has ended, every volume is in a resting state, and the node's
/// files are exactly the volumes the store knows.
async fn assert_consistent(c: &mut Clients, pool_dir: &Path) {
    let running = c.tasks.list_tasks(pb::ListTasksRequest { running_only: true, ..Default::default() }).await.unwrap().into_inner().tasks;
    assert!(running.is_empty(), "tasks still running: {running:?}");
    let volumes = c.volumes.list_volumes(pb::ListVolumesRequest { page_size: 1000, ..Default::default() }).await.unwrap().into_inner().volumes;
    for v in &volumes {
        assert!(
            v.state == pb::VolumeState::Available as i32 || v.state == pb::VolumeState::Attached as i32,
            "volume stuck in a transitional state: {v:?}"
        );
        assert!(v.task_id.is_empty(), "volume still busy: {v:?}");
    }
    let mut files: Vec<String> = std::fs::read_dir(pool_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut expected: Vec<String> = volumes.iter().map(|v| format!("lq-{}.qcow2", v.id)).collect();
    expected.sort();
    assert_eq!(files, expected, "the disk and the store disagree");
    let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(pool.provisioned_bytes, volumes.iter().map(|v| v.size_bytes).sum::<u64>(), "space accounting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sagas_resume_or_unwind_after_a_crash_at_every_step() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let config = write_config(root.path(), port);
    let mut cp = spawn(&config, None);

    let mut ncfg = common::node_config(root.path(), &url);
    ncfg.listen = "127.0.0.1:0".parse().unwrap();
    // Slow copies: a full clone of the base's data can be cancelled midway.
    ncfg.limits.copy_mib_per_sec = 16;
    let node = RunningNode::start(&ncfg).await.unwrap();
    let node_id = limiquantix_node::registration::node_id(&ncfg.state_dir).unwrap();
    let mut c = Clients::connect(&url).await;
    c.wait_node_online(&node_id).await;
    let pool_dir = root.path().join("node/pools/p1");
    c.local_pool("p1", &node_id, &pool_dir).await;
    let base = c.create_volume("p1", "base", GIB).await;
    let base_file = pool_dir.join(format!("lq-{}.qcow2", base.id));
    let wrote = std::process::Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x11 0 64M"]).arg(&base_file).status().unwrap();
    assert!(wrote.success());

    let points = [
        ("volume.create:create-on-node:before", "create"),
        ("volume.create:create-on-node:after", "create"),
        ("volume.create:create-on-node:before", "linked-clone"),
        ("volume.create:create-on-node:after", "linked-clone"),
        ("volume.create:create-on-node:before", "full-clone"),
        ("volume.create:create-on-node:after", "full-clone"),
        ("volume.create:create-on-node:undo", "cancelled-copy"),
        ("volume.create:reserve:undo", "failing-import"),
        ("volume.delete:delete-on-node:before", "delete"),
        ("volume.delete:forget:before", "delete"),
    ];
    let image = root.path().join("node/images/not-an-image.qcow2");
    std::fs::write(&image, b"plain text, not a qcow2 image").unwrap();
    for (i, (fault, what)) in points.iter().enumerate() {
        // Restart the control plane with the fault armed.
        cp.child.stop(Duration::from_secs(10));
        cp = spawn(&config, Some(fault));
        let mut c = Clients::connect(&url).await;
        c.wait_node_online(&node_id).await;
        let name = format!("v{i}");
        // The volume id is ours: if the fault kills the control plane before
        // its answer leaves, the task is found through the volume's record.
        let volume_id = uuid::Uuid::new_v4().to_string();
        let accepted = match *what {
            "create" => c.volumes.create_volume(pb::CreateVolumeRequest { volume_id: volume_id.clone(), ..create_req("p1", &name, GIB) }).await,
            "linked-clone" | "full-clone" => {
                let mode = if *what == "linked-clone" { pb::CloneMode::Linked } else { pb::CloneMode::Full };
                let req = pb::CloneVolumeRequest {
                    volume_id: volume_id.clone(),
                    source_volume_id: base.id.clone(),
                    name: name.clone(),
                    mode: mode as i32,
                    ..Default::default()
                };
                c.volumes.clone_volume(req).await
            }
            "cancelled-copy" => {
                let req = pb::CloneVolumeRequest { source_volume_id: base.id.clone(), name: name.clone(), mode: pb::CloneMode::Full as i32, ..Default::default() };
                let op = c.volumes.clone_volume(req).await.unwrap().into_inner();
                loop {
                    let t = c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
                    if t.progress.is_some_and(|p| p.done_bytes > 0) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                c.tasks.cancel_task(pb::CancelTaskRequest { task_id: op.task_id.clone() }).await.map(|_| tonic::Response::new(op))
            }
            "failing-import" => {
                let req = pb::ImportVolumeRequest {
                    pool: "p1".into(),
                    name: name.clone(),
                    path: image.display().to_string(),
                    format: pb::ImageFormat::Qcow2 as i32,
                    ..Default::default()
                };
                c.volumes.import_volume(req).await
            }
            "delete" => {
                let req = pb::CreateVolumeRequest { volume_id: volume_id.clone(), ..create_req("p1", &name, GIB) };
                let op = c.volumes.create_volume(req).await.unwrap().into_inner();
                c.wait_ok(&op.task_id).await;
                c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: volume_id.clone() }).await
            }
            other => unreachable!("{other}"),
        };
        let answered = match accepted {
            Ok(op) => Some(op.into_inner().task_id),
            Err(e) if e.code() == tonic::Code::Unknown || e.code() == tonic::Code::Unavailable => None,
            Err(e) => panic!("{fault} ({what}): not accepted: {e:?}"),
        };
        let status = cp.child.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{fault} ({what}): the fault never fired"));
        assert!(!status.success(), "{fault}: aborted, not exited cleanly");

        // Restart without the fault: the saga is resumed or unwound.
        cp = spawn(&config, None);
        let mut c = Clients::connect(&url).await;
        let task_id = match answered {
            Some(id) => id,
            None => {
                let req = pb::ListTasksRequest { resource_id: volume_id.clone(), ..Default::default() };
                let tasks = c.tasks.list_tasks(req).await.unwrap().into_inner().tasks;
                // The operation's own task: a delete's volume also has its create's.
                let kind = if *what == "delete" { "volume.delete" } else { "volume.create" };
                let task = tasks.iter().find(|t| t.kind == kind);
                task.unwrap_or_else(|| panic!("{fault} ({what}): no answer and no task: {tasks:?}")).id.clone()
            }
        };
        let task = c.wait(&task_id).await;
        let expect_ok = !matches!(*what, "failing-import" | "cancelled-copy");
        assert_eq!(task.state == pb::TaskState::Succeeded as i32, expect_ok, "{fault} ({what}): {task:?}");
        assert_consistent(&mut c, &pool_dir).await;
    }
    cp.child.stop(Duration::from_secs(10));
    node.stop().await.unwrap();
}
