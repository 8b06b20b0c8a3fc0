//! Storage vMotion with a real guest (TCG, qemu-guest-agent, private
//! libvirtd): a disk the guest is writing to moves local → local and then
//! local → Ceph through the control plane. After each pivot libvirt names
//! the new source, the guest still answers its agent, the data written
//! before the move is unchanged as the guest reads it, and what the guest
//! reads (including what it wrote during the move) is what the new volume
//! holds.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use limiquantix_api::v1 as pb;
use limiquantix_testkit::ceph::TEST_POOL;
use limiquantix_testkit::{Ceph, Guest, GuestImage, GuestOptions, Libvirtd};

const MIB: u64 = 1 << 20;
const DISK_MIB: u64 = 256;
/// The guest writes this much while the disk moves, after the first 32 MiB.
const WRITE_MIB: u64 = 96;

/// md5 of the first `mib` MiB of `dev` as the guest reads it (from the disk, not its cache).
fn guest_md5(guest: &Guest<'_>, dev: &str, mib: u64) -> String {
    let cmd = format!("dd if={dev} bs=1M count={mib} iflag=direct 2>/dev/null | md5sum");
    guest.exec_ok(&["sh", "-c", &cmd]).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// md5 of the first `mib` MiB of an image as qemu-img reads it (raw conversion).
fn host_md5(format: &str, image: &str, scratch: &std::path::Path, mib: u64) -> String {
    let raw = scratch.join("read-back.raw");
    let out = Command::new("qemu-img").args(["convert", "-U", "-f", format, "-O", "raw", image]).arg(&raw).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Only the first `mib` MiB count: the rest is cut off before the sum.
    std::fs::OpenOptions::new().write(true).open(&raw).unwrap().set_len(mib * MIB).unwrap();
    let out = Command::new("md5sum").arg(&raw).output().unwrap();
    std::fs::remove_file(&raw).unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_disk_moves_while_the_guest_writes_to_it() {
    let ceph = Ceph::start().unwrap();
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::Builder::new().prefix("lq-live-move-").tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = GuestImage::build(&root.path().join("image"), &GuestOptions::default()).unwrap();
    let guest = Guest::boot(&libvirtd, &image, "lq-mover", "").unwrap_or_else(|e| panic!("{e}"));
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut k = Cluster::start_with(|_| {}, |n| n.libvirt_uri = uri).await;
        let node_id = k.node_id.clone();
        let p2_dir = k.pool_dir().with_file_name("p2");
        k.c.local_pool("p2", &node_id, &p2_dir).await;
        k.c.ceph_pool("rbd", &ceph).await;

        let v = k.c.create_volume("p1", "guest-data", DISK_MIB * MIB).await;
        let op = k.c.volumes.attach_volume(pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: "lq-mover".into(), ..Default::default() }).await;
        k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
        let dev = guest.disk_by_serial(&v.id).unwrap();
        guest.exec_ok(&["dd", "if=/dev/urandom", &format!("of={dev}"), "bs=1M", "count=32", "oflag=direct"]).unwrap();
        let before = guest_md5(&guest, &dev, 32);

        for (round, (pool, format)) in [("p2", "qcow2"), ("rbd", "raw")].into_iter().enumerate() {
            // The guest writes in the background (its own shell) while the disk moves.
            let done = format!("/tmp/written-{round}");
            let writer = format!(
                "(dd if=/dev/urandom of={dev} bs=1M seek=32 count={WRITE_MIB} oflag=direct 2>/dev/null; echo ok > {done}) >/dev/null 2>&1 &"
            );
            guest.exec_ok(&["sh", "-c", &writer]).unwrap();
            let op = k.c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: v.id.clone(), pool: pool.into(), ..Default::default() }).await;
            let task = k.c.wait_ok(&op.unwrap().into_inner().task_id).await;
            eprintln!("round {round}: moved to {pool} ({:?})", task.progress);
            assert!(guest.agent_command(r#"{"execute":"guest-ping"}"#).is_ok(), "the guest answers after the pivot");
            let deadline = Instant::now() + Duration::from_secs(120);
            while guest.exec(&["cat", &done]).map(|o| !o.success()).unwrap_or(true) {
                assert!(Instant::now() < deadline, "the guest's writer never finished");
                std::thread::sleep(Duration::from_millis(200));
            }
            let moved = k.c.volume(&v.id).await.unwrap();
            assert_eq!((moved.state, moved.attachment.as_ref().map(|a| a.vm.as_str())), (pb::VolumeState::Attached as i32, Some("lq-mover")));
            let xml = libvirtd.virsh(&["dumpxml", "lq-mover"]).unwrap();
            let new_source = if pool == "rbd" {
                format!("rbd:{TEST_POOL}/lq-{}:conf={}:id=admin", v.id, ceph.conf().display())
            } else {
                p2_dir.join(format!("lq-{}.qcow2", v.id)).display().to_string()
            };
            let named = if pool == "rbd" { format!("{TEST_POOL}/lq-{}", v.id) } else { new_source.clone() };
            assert!(xml.contains(&named), "round {round}: libvirt names the new source {named}: {xml}");
            assert_eq!(guest_md5(&guest, &dev, 32), before, "round {round}: the data written before is unchanged");
            let seen = guest_md5(&guest, &dev, 32 + WRITE_MIB);
            // QEMU keeps qcow2 metadata in memory until the disk is flushed: flush it
            // through QEMU's own block layer before reading the file from outside.
            let target = moved.attachment.as_ref().unwrap().target_dev.clone();
            let flush = format!("qemu-io -d scsi0-0-0-{} flush", target.as_bytes()[2] - b'a');
            assert_eq!(libvirtd.virsh(&["qemu-monitor-command", "lq-mover", "--hmp", &flush]).unwrap().trim(), "");
            assert_eq!(host_md5(format, &new_source, root.path(), 32 + WRITE_MIB), seen, "round {round}: the new volume holds what the guest reads");
        }
    });
    drop(guest);
}
