//! Moves between nodes: the source node exports the volume over NBD with a
//! key made for the move, the target pool's node pulls it, the record
//! switches, the source is deleted and the export ends. A linked clone
//! arrives flattened; moves go both ways; a cancel mid-copy leaves the
//! volume whole where it was, nothing in the target and no export running;
//! no key is left on either node.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, file_names, tools_running_on};
use limiquantix_api::v1 as pb;

const MIB: u64 = 1 << 20;

fn qemu_io(file: &Path, cmd: &str) {
    let out = Command::new("qemu-io").args(["-f", "qcow2", "-c", cmd]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The volume's data as a raw file (through its whole chain).
fn raw_copy(file: &Path, out: &Path) {
    let done = Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw"]).arg(file).arg(out).output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

fn same(reference_raw: &Path, file: &Path) -> bool {
    Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "qcow2"]).arg(reference_raw).arg(file).status().unwrap().success()
}



#[test]
fn volumes_move_between_nodes_through_a_one_use_export() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut k = Cluster::start().await;
        let url = k.cp.as_ref().unwrap().url();
        let root = k.root.path().to_owned();
        // Node b pulls at 16 MiB/s: a 96 MiB copy is slow enough to cancel.
        let (_b, b_id) = common::start_node(&root, "b", &url, |n| n.limits.copy_mib_per_sec = 16).await;
        k.c.wait_node_online(&b_id).await;
        let q_dir = root.join("b/node/pools/q1");
        k.c.local_pool("q1", &b_id, &q_dir).await;
        let p_dir = k.pool_dir();

        // A linked clone of a base, each with data of its own.
        let base = k.c.create_volume("p1", "golden", 64 * MIB).await;
        qemu_io(&p_dir.join(format!("lq-{}.qcow2", base.id)), "write -P 0x11 0 8M");
        let op = k.c.volumes.create_volume(pb::CreateVolumeRequest {
            pool: "p1".into(),
            name: "app".into(),
            source: Some(pb::VolumeSource {
                source: Some(pb::volume_source::Source::Clone(pb::CloneSource { source_volume_id: base.id.clone(), mode: pb::CloneMode::Linked as i32 })),
            }),
            ..Default::default()
        });
        let op = op.await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let app = op.volume.unwrap();
        let app_file = p_dir.join(format!("lq-{}.qcow2", app.id));
        qemu_io(&app_file, "write -P 0x22 16M 4M");
        let reference = root.join("app.raw");
        raw_copy(&app_file, &reference);

        // a → b: flattened into q1 on node b, the source deleted on a.
        let op = k.c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: app.id.clone(), pool: "q1".into(), ..Default::default() }).await;
        let task = k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        eprintln!("a -> b: {:?}", task.progress);
        let moved = k.c.volume(&app.id).await.unwrap();
        assert_eq!(
            (moved.name.as_str(), moved.pool_id.as_str(), moved.node_id.as_str(), moved.state, moved.backing_volume_id.as_str()),
            ("app", k.c.pools.get_pool(pb::GetPoolRequest { pool: "q1".into() }).await.unwrap().into_inner().id.as_str(), b_id.as_str(), pb::VolumeState::Available as i32, ""),
        );
        let on_b = q_dir.join(format!("lq-{}.qcow2", app.id));
        assert!(same(&reference, &on_b), "the copy on node b holds the clone's data and its base's");
        assert!(!app_file.exists(), "the source is deleted on node a");
        assert!(p_dir.join(format!("lq-{}.qcow2", base.id)).exists(), "the base stays");
        assert!(tools_running_on(&root, &["qemu-nbd"]).is_empty(), "the export ended: {:?}", tools_running_on(&root, &["qemu-nbd"]));
        assert!(file_names(&root.join("node/state/exports")).is_empty() && file_names(&root.join("b/node/state/pulls")).is_empty(), "no key left");

        // b → a, back.
        let op = k.c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: app.id.clone(), pool: "p1".into(), ..Default::default() }).await;
        k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        let back = k.c.volume(&app.id).await.unwrap();
        assert_eq!((back.node_id.as_str(), back.state), (k.node_id.as_str(), pb::VolumeState::Available as i32));
        assert!(same(&reference, &app_file) && !on_b.exists());

        // A cancel mid-copy: the volume stays whole on a, nothing in q1.
        let big = k.c.create_volume("p1", "big", 256 * MIB).await;
        let big_file = p_dir.join(format!("lq-{}.qcow2", big.id));
        for i in 0..24u64 {
            qemu_io(&big_file, &format!("write -P {:#x} {} 4M", i + 1, i * 10 * MIB));
        }
        let big_ref = root.join("big.raw");
        raw_copy(&big_file, &big_ref);
        // Its snapshot cannot go to another node with it: refused, named.
        let op = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: big.id.clone(), name: "keep".into(), ..Default::default() }).await;
        k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        let err = k.c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: big.id.clone(), pool: "q1".into(), ..Default::default() }).await.unwrap_err();
        assert!(err.code() == tonic::Code::FailedPrecondition && err.message().contains("keep"), "{err:?}");
        let req = pb::MoveVolumeRequest { volume_id: big.id.clone(), pool: "q1".into(), drop_snapshots: true, ..Default::default() };
        let task_id = k.c.volumes.move_volume(req).await.unwrap().into_inner().task_id;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = k.c.tasks.get_task(pb::GetTaskRequest { task_id: task_id.clone() }).await.unwrap().into_inner();
            if t.progress.as_ref().is_some_and(|p| p.done_bytes > 0) {
                break;
            }
            assert!(t.state == pb::TaskState::Running as i32 && Instant::now() < deadline, "the copy never got going: {t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(tools_running_on(&root, &["qemu-nbd"]).len(), 1, "one export while the copy runs");
        k.c.tasks.cancel_task(pb::CancelTaskRequest { task_id: task_id.clone() }).await.unwrap();
        let task = k.c.wait(&task_id).await;
        assert_eq!(task.state, pb::TaskState::Cancelled as i32, "{task:?}");
        let stayed = k.c.volume(&big.id).await.unwrap();
        assert_eq!((stayed.node_id.as_str(), stayed.state, stayed.snapshot_count), (k.node_id.as_str(), pb::VolumeState::Available as i32, 1));
        assert!(same(&big_ref, &big_file), "whole where it was");
        assert!(file_names(&q_dir).is_empty(), "nothing in the target");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tools_running_on(&root, &["qemu-nbd"]).is_empty() {
            assert!(Instant::now() < deadline, "the export outlived the cancel");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(file_names(&root.join("node/state/exports")).is_empty() && file_names(&root.join("b/node/state/pulls")).is_empty(), "no key left");
    });
}
