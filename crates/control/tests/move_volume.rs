//! MoveVolume against a real node: a volume changes pools on its node,
//! keeping its id, name and data (local → local, local → Ceph; a linked
//! clone flattened), the records and space follow, refusals change nothing,
//! a cancelled move leaves the volume where it was with nothing in the
//! target, and an attached volume moves live (private libvirtd, TCG VM)
//! and stays attached.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cluster, GIB, file_names};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;
use tonic::Code;

const MIB: u64 = 1 << 20;

fn qemu_io(format: &str, target: &str, cmd: &str) -> bool {
    Command::new("qemu-io").args(["-f", format, "-c", cmd, target]).output().unwrap().status.success()
}

fn move_req(volume: &str, pool: &str) -> pb::MoveVolumeRequest {
    pb::MoveVolumeRequest { volume_id: volume.into(), pool: pool.into(), ..Default::default() }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volume_moves_to_another_pool_with_its_id_name_and_data() {
    let mut k = Cluster::start().await;
    let p2_dir = k.pool_dir().with_file_name("p2");
    let node_id = k.node_id.clone();
    let p2 = k.c.local_pool("p2", &node_id, &p2_dir).await;

    let base = k.c.create_volume("p1", "base", 64 * MIB).await;
    let base_file = k.pool_dir().join(format!("lq-{}.qcow2", base.id));
    assert!(qemu_io("qcow2", base_file.to_str().unwrap(), "write -P 0x11 0 4M"));
    let op = k
        .c
        .volumes
        .clone_volume(pb::CloneVolumeRequest { source_volume_id: base.id.clone(), name: "web".into(), mode: pb::CloneMode::Linked as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    k.c.wait_ok(&op.task_id).await;
    let web = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    let web_file = k.pool_dir().join(format!("lq-{}.qcow2", web.id));
    assert!(qemu_io("qcow2", web_file.to_str().unwrap(), "write -P 0x22 8M 4M"));

    // Refusals first; each leaves everything as it was.
    let refusals = [
        (move_req(&base.id, "p2"), Code::FailedPrecondition, "linked clones depend on it"),
        (move_req(&web.id, "p1"), Code::InvalidArgument, "already"),
        (move_req(&web.id, "nope"), Code::NotFound, "nope"),
        (pb::MoveVolumeRequest { format: 99, ..move_req(&web.id, "p2") }, Code::InvalidArgument, "format"),
    ];
    for (req, code, says) in refusals {
        let err = k.c.volumes.move_volume(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(says), "{err:?}");
    }
    let snap = pb::CreateSnapshotRequest { volume_id: web.id.clone(), name: "before".into(), ..Default::default() };
    let op = k.c.volumes.create_snapshot(snap).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let err = k.c.volumes.move_volume(move_req(&web.id, "p2")).await.unwrap_err();
    assert!(err.code() == Code::FailedPrecondition && err.message().contains("before"), "the refusal names the snapshot: {err:?}");
    k.c.create_volume("p2", "web", MIB).await;
    let err = k.c.volumes.move_volume(pb::MoveVolumeRequest { drop_snapshots: true, ..move_req(&web.id, "p2") }).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let clash = k.c.volumes.list_volumes(pb::ListVolumesRequest { pool: "p2".into(), ..Default::default() }).await.unwrap().into_inner().volumes;
    let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: clash[0].id.clone() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let still = k.c.volume(&web.id).await.unwrap();
    assert_eq!((still.pool_id.as_str(), still.state, still.snapshot_count), (k.pool.id.as_str(), pb::VolumeState::Available as i32, 1));

    // The move: the linked clone arrives flattened, its snapshots dropped as asked.
    let provisioned = |p: pb::Pool| p.provisioned_bytes;
    let p1_before = provisioned(k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner());
    let op = k.c.volumes.move_volume(pb::MoveVolumeRequest { drop_snapshots: true, ..move_req(&web.id, "p2") }).await.unwrap().into_inner();
    assert_eq!(op.volume.as_ref().unwrap().state, pb::VolumeState::Moving as i32);
    let task = k.c.wait_ok(&op.task_id).await;
    assert_eq!(task.kind, "volume.move");
    let moved = k.c.volume(&web.id).await.unwrap();
    assert_eq!((moved.id.as_str(), moved.name.as_str(), moved.pool_id.as_str()), (web.id.as_str(), "web", p2.id.as_str()));
    assert_eq!((moved.state, moved.snapshot_count, moved.backing_volume_id.as_str()), (pb::VolumeState::Available as i32, 0, ""));
    assert_eq!(moved.node_id, node_id);
    let new_file = p2_dir.join(format!("lq-{}.qcow2", web.id));
    for (pattern, at) in [("0x11", "0"), ("0x22", "8M")] {
        assert!(qemu_io("qcow2", new_file.to_str().unwrap(), &format!("read -P {pattern} {at} 4M")), "{pattern} at {at} moved");
    }
    assert!(!web_file.exists(), "the source is gone");
    assert!(file_names(&p2_dir).iter().all(|f| !f.contains(".partial")), "{:?}", file_names(&p2_dir));
    let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: web.id.clone() }).await.unwrap().into_inner().snapshots;
    assert!(snaps.is_empty(), "{snaps:?}");
    let p1_after = provisioned(k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner());
    assert_eq!(p1_before - p1_after, web.size_bytes, "the source pool gave its space back");
    assert_eq!(provisioned(k.c.pools.get_pool(pb::GetPoolRequest { pool: "p2".into() }).await.unwrap().into_inner()), web.size_bytes);
    let in_p2 = k.c.volumes.list_volumes(pb::ListVolumesRequest { pool: "p2".into(), ..Default::default() }).await.unwrap().into_inner().volumes;
    assert_eq!(in_p2.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["web"]);
    // The base is free of its clone now.
    let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: base.id.clone() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_move_leaves_the_volume_where_it_was() {
    let mut k = Cluster::start_with(|_| {}, |n| n.limits.copy_mib_per_sec = 64).await;
    let p2_dir = k.pool_dir().with_file_name("p2");
    let node_id = k.node_id.clone();
    k.c.local_pool("p2", &node_id, &p2_dir).await;
    let v = k.c.create_volume("p1", "big", GIB).await;
    let file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    assert!(qemu_io("qcow2", file.to_str().unwrap(), "write -P 0x5a 0 512M"));
    let op = k.c.volumes.move_volume(move_req(&v.id, "p2")).await.unwrap().into_inner();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = k.c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
        assert_eq!(t.state, pb::TaskState::Running as i32, "the move ended before it could be cancelled: {t:?}");
        if t.progress.is_some_and(|p| p.done_bytes > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    k.c.tasks.cancel_task(pb::CancelTaskRequest { task_id: op.task_id.clone() }).await.unwrap();
    let t = k.c.wait(&op.task_id).await;
    assert_eq!(t.state, pb::TaskState::Cancelled as i32, "{t:?}");
    let back = k.c.volume(&v.id).await.unwrap();
    assert_eq!((back.pool_id.as_str(), back.state), (k.pool.id.as_str(), pb::VolumeState::Available as i32));
    assert!(qemu_io("qcow2", file.to_str().unwrap(), "read -P 0x5a 0 512M"), "the source is intact");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !file_names(&p2_dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "left in the target: {:?}", file_names(&p2_dir));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p2 = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p2".into() }).await.unwrap().into_inner();
    assert_eq!(p2.provisioned_bytes, 0, "the reservation was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volume_moves_from_a_local_pool_to_ceph_as_raw() {
    let ceph = Ceph::start().unwrap();
    let mut k = Cluster::start().await;
    k.c.ceph_pool("rbd", &ceph).await;
    let v = k.c.create_volume("p1", "db", 64 * MIB).await;
    let file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    assert!(qemu_io("qcow2", file.to_str().unwrap(), "write -P 0x7e 1M 6M"));
    let reference = k.pool_dir().with_file_name("db-before.raw");
    let out = Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(&file).arg(&reference).output().unwrap();
    assert!(out.status.success());

    let op = k.c.volumes.move_volume(move_req(&v.id, "rbd")).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let moved = k.c.volume(&v.id).await.unwrap();
    assert_eq!((moved.format, moved.size_bytes), (pb::VolumeFormat::Raw as i32, 64 * MIB), "Ceph keeps raw images");
    assert!(moved.node_id.is_empty(), "a shared pool's volume is no one node's");
    let rbd = format!("rbd:{TEST_POOL}/lq-{}:conf={}:id=admin", v.id, ceph.conf().display());
    let cmp = Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw"]).arg(&reference).arg(&rbd).output().unwrap();
    assert!(cmp.status.success(), "{}", String::from_utf8_lossy(&cmp.stdout));
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attached_volume_moves_live_and_stays_attached() {
    use limiquantix_testkit::Libvirtd;
    use limiquantix_testkit::libvirt::minimal_domain;
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain("lq-live", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let mut k = Cluster::start_with(|_| {}, |n| n.libvirt_uri = uri).await;
    let p2_dir = k.pool_dir().with_file_name("p2");
    let node_id = k.node_id.clone();
    let p2 = k.c.local_pool("p2", &node_id, &p2_dir).await;
    let v = k.c.create_volume("p1", "live", 64 * MIB).await;
    let old_file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    assert!(qemu_io("qcow2", old_file.to_str().unwrap(), "write -P 0x44 0 4M"));
    let op = k.c.volumes.attach_volume(pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: "lq-live".into(), ..Default::default() }).await;
    k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
    let attached = k.c.volume(&v.id).await.unwrap();

    let op = k.c.volumes.move_volume(move_req(&v.id, "p2")).await.unwrap().into_inner();
    let task = k.c.wait_ok(&op.task_id).await;
    assert_eq!(task.kind, "volume.move");
    let moved = k.c.volume(&v.id).await.unwrap();
    assert_eq!((moved.pool_id.as_str(), moved.state), (p2.id.as_str(), pb::VolumeState::Attached as i32));
    assert_eq!(moved.attachment, attached.attachment, "still attached to the same VM, same target");
    let new_file = p2_dir.join(format!("lq-{}.qcow2", v.id));
    let xml = libvirtd.virsh(&["dumpxml", "lq-live"]).unwrap();
    assert!(xml.contains(new_file.to_str().unwrap()) && !xml.contains(old_file.to_str().unwrap()), "{xml}");
    assert!(!old_file.exists(), "the source is deleted after the pivot");
    let out = Command::new("qemu-io").args(["-f", "qcow2", "-r", "-U", "-c", "read -P 0x44 0 4M"]).arg(&new_file).output().unwrap();
    assert!(out.status.success(), "the data moved");
    // Detach, then the volume is an ordinary volume of p2.
    let op = k.c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await;
    k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
    assert!(!libvirtd.virsh(&["dumpxml", "lq-live"]).unwrap().contains(&v.id));
    assert_eq!(k.c.volume(&v.id).await.unwrap().state, pb::VolumeState::Available as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_live_move_leaves_the_vm_on_its_source() {
    use limiquantix_testkit::Libvirtd;
    use limiquantix_testkit::libvirt::minimal_domain;
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain("lq-live-cancel", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    // The node's copy limit applies to mirrors: 256 MiB at 32 MiB/s takes seconds.
    let mut k = Cluster::start_with(|_| {}, |n| {
        n.libvirt_uri = uri;
        n.limits.copy_mib_per_sec = 32;
    })
    .await;
    let p2_dir = k.pool_dir().with_file_name("p2");
    let node_id = k.node_id.clone();
    k.c.local_pool("p2", &node_id, &p2_dir).await;
    let v = k.c.create_volume("p1", "busy", 512 * MIB).await;
    let old_file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    assert!(qemu_io("qcow2", old_file.to_str().unwrap(), "write -P 0x55 0 256M"));
    let op = k.c.volumes.attach_volume(pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: "lq-live-cancel".into(), ..Default::default() }).await;
    k.c.wait_ok(&op.unwrap().into_inner().task_id).await;

    let op = k.c.volumes.move_volume(move_req(&v.id, "p2")).await.unwrap().into_inner();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = k.c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
        assert_eq!(t.state, pb::TaskState::Running as i32, "the move ended before it could be cancelled: {t:?}");
        if t.progress.as_ref().is_some_and(|p| p.phase == "mirroring" && p.done_bytes > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no mirroring progress: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    k.c.tasks.cancel_task(pb::CancelTaskRequest { task_id: op.task_id.clone() }).await.unwrap();
    let t = k.c.wait(&op.task_id).await;
    assert_eq!(t.state, pb::TaskState::Cancelled as i32, "{t:?}");
    let back = k.c.volume(&v.id).await.unwrap();
    assert_eq!((back.pool_id.as_str(), back.state), (k.pool.id.as_str(), pb::VolumeState::Attached as i32));
    // The VM runs on its source with no job left, and nothing stays in the target.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let xml = libvirtd.virsh(&["dumpxml", "lq-live-cancel"]).unwrap();
        let done = xml.contains(old_file.to_str().unwrap()) && !xml.contains("<mirror") && file_names(&p2_dir).is_empty();
        if done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left behind: {xml} {:?}", file_names(&p2_dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_move_with_a_qcow2_volume_between_local_pools() {
    let mut k = Cluster::start().await;
    let p2_dir = k.pool_dir().with_file_name("p2");
    let node_id = k.node_id.clone();
    k.c.local_pool("p2", &node_id, &p2_dir).await;
    let v = k.c.create_volume("p1", "db", 64 * MIB).await;
    let file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    for (pattern, snapshot) in [("0x41", Some("monday")), ("0x42", Some("tuesday")), ("0x43", None)] {
        assert!(qemu_io("qcow2", file.to_str().unwrap(), &format!("write -P {pattern} 0 4M")));
        if let Some(name) = snapshot {
            let op = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: v.id.clone(), name: name.into(), ..Default::default() }).await;
            k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        }
    }
    let op = k.c.volumes.move_volume(move_req(&v.id, "p2")).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let moved = k.c.volume(&v.id).await.unwrap();
    assert_eq!((moved.pool_id.as_str(), moved.snapshot_count), (k.c.pools.get_pool(pb::GetPoolRequest { pool: "p2".into() }).await.unwrap().into_inner().id.as_str(), 2));
    let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: v.id.clone() }).await.unwrap().into_inner().snapshots;
    assert_eq!(snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["monday", "tuesday"]);
    let new_file = p2_dir.join(format!("lq-{}.qcow2", v.id));
    assert!(qemu_io("qcow2", new_file.to_str().unwrap(), "read -P 0x43 0 4M"), "the current data moved");
    assert!(!file.exists(), "the source is gone");
    let op = k.c.volumes.revert_snapshot(pb::RevertSnapshotRequest { volume_id: v.id.clone(), name: "monday".into() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    assert!(qemu_io("qcow2", new_file.to_str().unwrap(), "read -P 0x41 0 4M"), "a snapshot that moved reverts");
}
