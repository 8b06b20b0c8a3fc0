//! kill -9 of the node daemon in the middle of a live move (Storage
//! vMotion): the VM keeps running on its source while no node watches the
//! mirror, and after the node restarts the move's retried copy abandons the
//! mirror it left and starts over, so the move ends with the VM on one whole
//! copy in the target pool, the source deleted, and nothing else left in
//! either pool. A move cancelled while its node is down ends with the VM on
//! its source once the node is back, the mirror abandoned and nothing in the
//! target. The node and the control plane are real processes; the VM is the
//! recipe's TCG guest (qemu-guest-agent) on a private libvirtd, which still
//! answers and reads the same data from the disk after all of it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Clients, file_names};
use common::process::{spawn_logged, spawn_node, write_config, write_node_config};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::{Guest, GuestImage, GuestOptions, Libvirtd, free_port};

const MIB: u64 = 1 << 20;
const VM: &str = "lq-crash-move";
/// 192 MiB of data at 24 MiB/s: about 8 s of mirroring to kill the node in.
const DATA_MIB: u64 = 192;
const COPY_MIB_PER_SEC: u64 = 24;
/// How much of the disk the guest checks (reading all of it takes long on TCG).
const GUEST_READ_MIB: u64 = 96;

/// The first `GUEST_READ_MIB` MiB of the disk as the guest reads it (not from its cache).
fn guest_md5(guest: &Guest<'_>, dev: &str) -> String {
    let cmd = format!("dd if={dev} bs=1M count={GUEST_READ_MIB} iflag=direct 2>/dev/null | md5sum");
    guest.exec_ok(&["sh", "-c", &cmd]).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// The same of a qcow2 file, read on the host.
fn reference_md5(qcow2: &Path, scratch: &Path) -> String {
    let raw = scratch.join("reference.raw");
    assert!(Command::new("qemu-img").args(["convert", "-U", "-f", "qcow2", "-O", "raw"]).arg(qcow2).arg(&raw).status().unwrap().success());
    std::fs::OpenOptions::new().write(true).open(&raw).unwrap().set_len(GUEST_READ_MIB * MIB).unwrap();
    let out = Command::new("md5sum").arg(&raw).output().unwrap();
    std::fs::remove_file(&raw).unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}


/// Starts a live move and returns its task once the mirror is a quarter through.
async fn start_move(c: &mut Clients, volume_id: &str, pool: &str) -> String {
    let op = c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: volume_id.into(), pool: pool.into(), ..Default::default() }).await;
    let task_id = op.unwrap().into_inner().task_id;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = c.tasks.get_task(pb::GetTaskRequest { task_id: task_id.clone() }).await.unwrap().into_inner();
        let done = t.progress.as_ref().map_or(0.0, |p| p.done_bytes as f64 / p.total_bytes.max(1) as f64);
        if t.progress.as_ref().is_some_and(|p| p.phase == "mirroring") && done > 0.25 {
            return task_id;
        }
        assert!(t.state == pb::TaskState::Running as i32 && Instant::now() < deadline, "the mirror never got going: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_live_move_survives_a_node_killed_mid_mirror() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = GuestImage::build(&root.path().join("image"), &GuestOptions::default()).unwrap();
    let guest = Guest::boot(&libvirtd, &image, VM, "").unwrap_or_else(|e| panic!("{e}"));
    let cp_port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{cp_port}");
    let cp_config = write_config(root.path(), cp_port);
    // A retried step comes back after 3 s, not the default 30.
    let text = std::fs::read_to_string(&cp_config).unwrap().replace("saga_retry_secs = 30", "saga_retry_secs = 3");
    std::fs::write(&cp_config, text).unwrap();
    let _cp = spawn_logged(&cp_config, &root.path().join("control.log"));
    let node_dir = root.path().join("node");
    let node_config = write_node_config(&node_dir, free_port().unwrap(), &url, COPY_MIB_PER_SEC);
    let text = std::fs::read_to_string(&node_config).unwrap();
    std::fs::write(&node_config, format!("libvirt_uri = \"{}\"\n{text}", libvirtd.uri())).unwrap();
    let node_id = limiquantix_node::registration::node_id(&node_dir.join("state")).unwrap();
    let node_log = root.path().join("node.log");
    let mut node = spawn_node(&node_config, &node_log);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Clients::connect(&url).await;
        c.wait_node_online(&node_id).await;
        let (p1, p2) = (node_dir.join("pools/p1"), node_dir.join("pools/p2"));
        c.local_pool("p1", &node_id, &p1).await;
        c.local_pool("p2", &node_id, &p2).await;
        let v = c.create_volume("p1", "busy", 512 * MIB).await;
        let source = p1.join(format!("lq-{}.qcow2", v.id));
        let mut write = Command::new("qemu-io");
        write.args(["-f", "qcow2"]);
        for i in 0..DATA_MIB / 4 {
            write.arg("-c").arg(format!("write -P {:#x} {} 4M", i % 200 + 1, i * 8 * MIB));
        }
        assert!(write.arg(&source).status().unwrap().success());
        let reference = root.path().join("reference.qcow2");
        std::fs::copy(&source, &reference).unwrap();
        let op = c.volumes.attach_volume(pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: VM.into(), ..Default::default() }).await;
        c.wait_ok(&op.unwrap().into_inner().task_id).await;
        let dev = guest.disk_by_serial(&v.id).unwrap();
        let seen_before = guest_md5(&guest, &dev);
        assert_eq!(seen_before, reference_md5(&reference, root.path()), "the guest reads the volume's data");

        let task_id = start_move(&mut c, &v.id, "p2").await;
        node.kill();
        let xml = libvirtd.virsh(&["dumpxml", VM]).unwrap();
        assert!(xml.contains(&source.display().to_string()), "with its node dead the VM runs on its source: {xml}");

        node = spawn_node(&node_config, &node_log);
        let task = c.wait(&task_id).await;
        assert_eq!(task.state, pb::TaskState::Succeeded as i32, "the move resumes and finishes: {task:?}");
        let moved = c.volume(&v.id).await.unwrap();
        assert_eq!(moved.state, pb::VolumeState::Attached as i32);
        let target = p2.join(format!("lq-{}.qcow2", v.id));
        let xml = libvirtd.virsh(&["dumpxml", VM]).unwrap();
        assert!(xml.contains(&target.display().to_string()) && !xml.contains("<mirror"), "the VM runs on the copy, no job left: {xml}");
        assert!(file_names(&p1).is_empty(), "the source is deleted: {:?}", file_names(&p1));
        assert_eq!(file_names(&p2), vec![format!("lq-{}.qcow2", v.id)], "one whole copy in the target");
        let out = Command::new("qemu-img").args(["compare", "-U", "-f", "qcow2", "-F", "qcow2"]).arg(&reference).arg(&target).output().unwrap();
        assert!(out.status.success(), "the copy equals the source: {}", String::from_utf8_lossy(&out.stdout));
        assert!(guest.agent_command(r#"{"execute":"guest-ping"}"#).is_ok(), "the guest answers after the pivot");
        assert_eq!(guest_md5(&guest, &dev), seen_before, "and reads the same data from the copy");

        // Back towards p1, the node killed again, and the move cancelled while
        // the node is down: once it is back the mirror it left is abandoned,
        // the VM stays on p2 and p1 holds nothing.
        let task_id = start_move(&mut c, &v.id, "p1").await;
        node.kill();
        c.tasks.cancel_task(pb::CancelTaskRequest { task_id: task_id.clone() }).await.unwrap();
        node = spawn_node(&node_config, &node_log);
        let task = c.wait(&task_id).await;
        assert_eq!(task.state, pb::TaskState::Cancelled as i32, "{task:?}");
        let xml = libvirtd.virsh(&["dumpxml", VM]).unwrap();
        let logs = format!("{}\n{}", std::fs::read_to_string(&node_log).unwrap_or_default(), std::fs::read_to_string(root.path().join("control.log")).unwrap_or_default());
        assert!(xml.contains(&target.display().to_string()) && !xml.contains("<mirror"), "the VM stays on its source, no job left: {xml}\n{logs}");
        assert!(file_names(&p1).is_empty(), "nothing left in the target: {:?}", file_names(&p1));
        let stayed = c.volume(&v.id).await.unwrap();
        assert_eq!((stayed.state, stayed.pool_id), (pb::VolumeState::Attached as i32, moved.pool_id.clone()));
        assert_eq!(guest_md5(&guest, &dev), seen_before, "the guest still reads its data");
    });
    drop(node);
    drop(guest);
}
