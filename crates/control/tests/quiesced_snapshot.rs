//! Application-consistent snapshots with a real guest (TCG, qemu-guest-agent,
//! private libvirtd, Ceph on loopback): a VM with an ext4 volume (local
//! qcow2) and a Ceph volume is snapshotted through the control plane with its
//! filesystems frozen, both volumes at one instant.
//!
//! - The quiesced snapshot holds the data written (not synced) before the
//!   freeze, and its ext4 needs no journal recovery; a crash-consistent one
//!   taken the same way does. A guest writer started before the freeze
//!   finishes after the thaw, and the snapshot holds a clean prefix of it.
//! - A failure between freeze and thaw (one volume already has a snapshot of
//!   that name) fails the task, takes nothing on the other volume, and the
//!   guest is thawed.
//! - An agent that does not answer (stopped inside the guest) gives a clear
//!   error within the deadline; best effort then takes a crash-consistent
//!   snapshot and says why.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use limiquantix_api::v1 as pb;
use limiquantix_testkit::ceph::TEST_POOL;
use limiquantix_testkit::{Ceph, Guest, GuestImage, GuestOptions, Libvirtd};

const MIB: u64 = 1 << 20;
const VM: &str = "lq-quiesce";
const AGENT_TIMEOUT_SECS: u64 = 3;
const TICKS: usize = 200;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Snapshot `snapshot` of a qcow2 image, as a raw file.
fn snapshot_raw(image: &Path, snapshot: &str, out: &Path) {
    run(Command::new("qemu-img").args(["convert", "-U", "-f", "qcow2", "-l", &format!("snapshot.name={snapshot}"), "-O", "raw"]).arg(image).arg(out));
}

/// Whether the ext4 in `raw` needs its journal replayed (it was not frozen or unmounted).
fn needs_recovery(raw: &Path) -> bool {
    let header = run(Command::new("dumpe2fs").arg("-h").arg(raw));
    let features = header.lines().find(|l| l.starts_with("Filesystem features:")).unwrap_or_default().to_owned();
    features.contains("needs_recovery")
}

fn debugfs_cat(raw: &Path, file: &str) -> Vec<u8> {
    let out = Command::new("debugfs").args(["-R", &format!("cat {file}")]).arg(raw).output().unwrap();
    out.stdout
}

fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn guest_md5(guest: &Guest<'_>, what: &str) -> String {
    guest.exec_ok(&["sh", "-c", &format!("{what} | md5sum")]).unwrap().split_whitespace().next().unwrap().to_owned()
}

fn frozen_state(guest: &Guest<'_>) -> String {
    guest.agent_command(r#"{"execute":"guest-fsfreeze-status"}"#).unwrap().as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_vm_is_snapshotted_with_its_filesystems_frozen() {
    let ceph = Ceph::start().unwrap();
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::Builder::new().prefix("lq-quiesce-").tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = GuestImage::build(&root.path().join("image"), &GuestOptions::default()).unwrap();
    let guest = Guest::boot(&libvirtd, &image, VM, "").unwrap_or_else(|e| panic!("{e}"));
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut k = Cluster::start_with(|_| {}, |n| {
            n.libvirt_uri = uri;
            n.agent_timeout_secs = AGENT_TIMEOUT_SECS;
        })
        .await;
        k.c.ceph_pool("rbd", &ceph).await;

        // An ext4 volume (made on the host, imported) and a Ceph volume.
        let fs_image = k.root.path().join("node/images/fs.raw");
        std::fs::File::create(&fs_image).unwrap().set_len(64 * MIB).unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "appdata"]).arg(&fs_image));
        let req = pb::ImportVolumeRequest {
            pool: "p1".into(),
            name: "app-data".into(),
            path: fs_image.display().to_string(),
            format: pb::ImageFormat::Raw as i32,
            ..Default::default()
        };
        let op = k.c.volumes.import_volume(req).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let data = op.volume.unwrap();
        let log = k.c.create_volume("rbd", "app-log", 64 * MIB).await;
        for v in [&data, &log] {
            let op = k.c.volumes.attach_volume(pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: VM.into(), ..Default::default() }).await;
            k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        }
        let data_dev = guest.disk_by_serial(&data.id).unwrap();
        let log_dev = guest.disk_by_serial(&log.id).unwrap();
        guest.exec_ok(&["sh", "-c", &format!("mkdir -p /app && mount -t ext4 {data_dev} /app")]).unwrap();

        // Written before the freeze and not synced: only the freeze puts it on disk.
        guest.exec_ok(&["sh", "-c", "dd if=/dev/urandom of=/app/before bs=1M count=4 2>/dev/null"]).unwrap();
        let before = guest_md5(&guest, "cat /app/before");
        guest.exec_ok(&["sh", "-c", &format!("dd if=/dev/urandom of={log_dev} bs=1M count=4 oflag=direct 2>/dev/null")]).unwrap();
        let log_before = guest_md5(&guest, &format!("dd if={log_dev} bs=1M count=4 iflag=direct 2>/dev/null"));
        // A writer that runs across the snapshot.
        let writer = format!(
            "(i=0; while [ $i -lt {TICKS} ]; do echo tick-$i >> /app/ticks; i=$((i+1)); usleep 20000; done; echo ok > /tmp/ticks-done) >/dev/null 2>&1 &"
        );
        guest.exec_ok(&["sh", "-c", &writer]).unwrap();
        std::thread::sleep(Duration::from_millis(500));

        // What an admin types: both volumes of the VM, frozen, at one instant.
        let lqctl = limiquantix_testkit::workspace_binary("lqctl").unwrap();
        let server = k.cp.as_ref().unwrap().url();
        let out = Command::new(&lqctl).args(["-o", "json", "snapshot", "create", "--vm", VM, "app1", "--quiesce", "--server", &server]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.as_array().map(Vec::len), Some(2), "both volumes of the VM: {rows}");
        assert!(rows.as_array().unwrap().iter().all(|r| r["quiesced"] == true && r["vm"] == VM), "{rows}");
        assert_eq!(frozen_state(&guest), "thawed");
        let text = run(Command::new(&lqctl).args(["snapshot", "list", "app-data", "--server", &server]));
        assert!(text.contains("quiesced (frozen") && text.contains(VM), "{text}");
        let mut frozen = Vec::new();
        for v in [&data, &log] {
            let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: v.id.clone() }).await.unwrap().into_inner().snapshots;
            let s = snaps.iter().find(|s| s.name == "app1").unwrap();
            assert!(s.quiesced && s.frozen_ms > 0 && s.vm == VM && s.not_quiesced_reason.is_empty(), "{s:?}");
            frozen.push(s.frozen_ms);
            let after = k.c.volume(&v.id).await.unwrap();
            assert_eq!((after.state, after.snapshot_count, after.task_id.as_str()), (pb::VolumeState::Attached as i32, 1, ""));
        }
        assert_eq!(frozen[0], frozen[1], "one freeze for both");
        eprintln!("frozen for {} ms", frozen[0]);

        // The writer started before the freeze and finishes after the thaw.
        let deadline = Instant::now() + Duration::from_secs(60);
        while guest.exec(&["cat", "/tmp/ticks-done"]).map(|o| !o.success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "the writer never finished");
            std::thread::sleep(Duration::from_millis(200));
        }
        let ticks = guest.exec_ok(&["cat", "/app/ticks"]).unwrap();
        assert_eq!(ticks.lines().count(), TICKS);

        // What the quiesced snapshot holds.
        let data_file = k.pool_dir().join(format!("lq-{}.qcow2", data.id));
        let raw = root.path().join("app1.raw");
        snapshot_raw(&data_file, "app1", &raw);
        assert!(!needs_recovery(&raw), "a frozen ext4 needs no journal replay");
        assert_eq!(md5(&debugfs_cat(&raw, "/before")), before, "the data written before the freeze");
        let in_snapshot = String::from_utf8(debugfs_cat(&raw, "/ticks")).unwrap();
        let n = in_snapshot.lines().count();
        assert!(n > 0 && n < TICKS && ticks.starts_with(&in_snapshot) && in_snapshot.ends_with('\n'), "a clean prefix of the writer's file: {n} lines");
        let rbd_snap = format!("rbd:{TEST_POOL}/lq-{}@app1:conf={}:id=admin", log.id, ceph.conf().display());
        let log_raw = root.path().join("log.raw");
        run(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "raw", &rbd_snap]).arg(&log_raw));
        let log_data = std::fs::read(&log_raw).unwrap();
        assert_eq!(md5(&log_data[..4 * MIB as usize]), log_before, "the Ceph volume's snapshot (an RBD snapshot)");

        // The same snapshot without the freeze is only crash-consistent.
        let req = pb::CreateSnapshotRequest { volume_id: data.id.clone(), name: "crash1".into(), ..Default::default() };
        let op = k.c.volumes.create_snapshot(req).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        guest.exec_ok(&["sh", "-c", "echo more >> /app/ticks"]).unwrap();
        let crash_raw = root.path().join("crash1.raw");
        snapshot_raw(&data_file, "crash1", &crash_raw);
        assert!(needs_recovery(&crash_raw), "a mounted ext4 snapshotted unfrozen needs its journal replayed");

        // A failure between freeze and thaw: the Ceph volume already has a
        // snapshot of that name, so QEMU's transaction fails as a whole.
        ceph.rbd(&["snap", "create", &format!("{TEST_POOL}/lq-{}@dup", log.id)]).unwrap();
        let req = pb::CreateSnapshotRequest { vm: VM.into(), name: "dup".into(), quiesce: pb::Quiesce::Required as i32, ..Default::default() };
        let op = k.c.volumes.create_snapshot(req).await.unwrap().into_inner();
        let task = k.c.wait(&op.task_id).await;
        assert_eq!(task.state, pb::TaskState::Failed as i32, "{task:?}");
        assert_eq!(frozen_state(&guest), "thawed", "thawed after the failure");
        let info = run(Command::new("qemu-img").args(["snapshot", "-U", "-l"]).arg(&data_file));
        assert!(!info.contains("dup"), "nothing taken on the other volume: {info}");
        for v in [&data, &log] {
            let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: v.id.clone() }).await.unwrap().into_inner().snapshots;
            assert!(snaps.iter().all(|s| s.name != "dup"), "no record: {snaps:?}");
            let after = k.c.volume(&v.id).await.unwrap();
            assert_eq!((after.state, after.task_id.as_str()), (pb::VolumeState::Attached as i32, ""));
        }
        guest.exec_ok(&["sh", "-c", "echo still-writable >> /app/ticks"]).unwrap();

        // A snapshot of the running VM is deleted through it.
        let op = k.c.volumes.delete_snapshot(pb::DeleteSnapshotRequest { volume_id: data.id.clone(), name: "crash1".into() }).await.unwrap();
        k.c.wait_ok(&op.into_inner().task_id).await;
        let info = run(Command::new("qemu-img").args(["snapshot", "-U", "-l"]).arg(&data_file));
        assert!(info.contains("app1") && !info.contains("crash1"), "{info}");

        // An agent that stops answering: stopped inside the guest.
        // (guest-exec starts it and answers; nothing waits for its status.)
        let stop = r#"{"execute":"guest-exec","arguments":{"path":"sh","arg":["-c","sleep 0.5; kill -STOP $(pidof qemu-ga)"]}}"#;
        guest.agent_command(stop).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert!(guest.agent_command(r#"{"execute":"guest-ping"}"#).is_err(), "the agent no longer answers");
        let started = Instant::now();
        let req = pb::CreateSnapshotRequest { volume_id: data.id.clone(), name: "app2".into(), quiesce: pb::Quiesce::Required as i32, ..Default::default() };
        let op = k.c.volumes.create_snapshot(req).await.unwrap().into_inner();
        let task = k.c.wait(&op.task_id).await;
        let took = started.elapsed();
        assert_eq!(task.state, pb::TaskState::Failed as i32, "{task:?}");
        assert!(task.error.contains("guest agent") && task.error.contains("best-effort"), "{}", task.error);
        // Freeze and thaw each get the agent deadline.
        assert!(took < Duration::from_secs(3 * AGENT_TIMEOUT_SECS + 5), "the error came after {took:?}");
        let info = run(Command::new("qemu-img").args(["snapshot", "-U", "-l"]).arg(&data_file));
        assert!(!info.contains("app2"), "nothing taken: {info}");

        let req = pb::CreateSnapshotRequest { volume_id: data.id.clone(), name: "app3".into(), quiesce: pb::Quiesce::BestEffort as i32, ..Default::default() };
        let op = k.c.volumes.create_snapshot(req).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: data.id.clone() }).await.unwrap().into_inner().snapshots;
        let s = snaps.iter().find(|s| s.name == "app3").unwrap();
        assert!(!s.quiesced && s.not_quiesced_reason.contains("guest agent"), "marked crash-consistent, with why: {s:?}");
    });
    drop(guest);
}
