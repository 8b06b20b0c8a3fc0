//! A base of linked clones is never written (DESIGN.md rule 12), enforced by
//! the node itself (its API can be called directly): read-write attach,
//! resize and snapshots of the base are refused naming the clone; a
//! read-only attach works, a write through QEMU to that disk fails, and the
//! clone's data stays what it was.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;
use tonic::Code;

const GIB: u64 = 1 << 30;

fn qemu_io(path: &str, cmd: &str) -> bool {
    // Reads share the image with a VM that may have it open (-U).
    let share: &[&str] = if cmd.starts_with("read") { &["-r", "-U"] } else { &[] };
    let out = Command::new("qemu-io").args(["-f", "qcow2"]).args(share).args(["-c", cmd, path]).output().unwrap();
    if !out.status.success() {
        eprintln!("qemu-io {cmd} {path}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn a_base_is_refused_every_write_and_attached_read_only_cannot_be_written() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    libvirtd.create_domain(&minimal_domain("lq-base", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| c.libvirt_uri = uri).await;
        let pool = node.init_local_pool("p").await;
        let base = new_id();
        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: base.clone(), spec: spec(GIB), source: None };
        let base_info = finish(node.client.create_volume(req).await).await.1.unwrap();
        assert!(qemu_io(&base_info.location, "write -P 0x42 0 1M"));
        let clone = new_id();
        let req = pb::NodeCloneVolumeRequest {
            pool_id: pool.clone(),
            source_volume_id: base.clone(),
            volume_id: clone.clone(),
            mode: pb::CloneMode::Linked as i32,
            spec: None,
        };
        let clone_info = finish(node.client.clone_volume(req).await).await.1.unwrap();
        assert!(qemu_io(&clone_info.location, "read -P 0x42 0 1M"), "the clone reads through to the base");

        let names_the_clone = |e: tonic::Status| {
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains(&clone), "the refusal names the clone: {e:?}");
        };
        let attach = |read_only| pb::NodeAttachVolumeRequest {
            pool_id: pool.clone(),
            volume_id: base.clone(),
            domain: "lq-base".into(),
            bus: pb::DiskBus::Scsi as i32,
            read_only,
        };
        names_the_clone(node.client.attach_volume(attach(false)).await.unwrap_err());
        let info = pb::GetVolumeAttachInfoRequest { pool_id: pool.clone(), volume_id: base.clone(), ..Default::default() };
        names_the_clone(node.client.get_volume_attach_info(info).await.unwrap_err());
        let resize = pb::NodeResizeVolumeRequest { pool_id: pool.clone(), volume_id: base.clone(), new_size_bytes: 2 * GIB, live_domain: String::new() };
        names_the_clone(node.client.resize_volume(resize).await.unwrap_err());
        let snap = pb::CreateVolumeSnapshotRequest { pool_id: pool.clone(), volume_id: base.clone(), name: "s".into() };
        names_the_clone(node.client.create_volume_snapshot(snap).await.unwrap_err());
        let live = libvirtd.virsh(&["dumpxml", "lq-base"]).unwrap();
        assert!(!live.contains(&base), "nothing was attached: {live}");

        // Read-only: attached with <readonly/>, and QEMU refuses a write to it.
        let attached = node.client.attach_volume(attach(true)).await.unwrap().into_inner();
        assert!(attached.disk_xml.contains("<readonly/>"), "{}", attached.disk_xml);
        let live = libvirtd.virsh(&["dumpxml", "lq-base"]).unwrap();
        assert!(live.contains("<readonly/>") && live.contains(&base), "{live}");
        // The same write through QEMU works on a disk attached read-write.
        let plain = new_id();
        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: plain.clone(), spec: spec(GIB), source: None };
        finish(node.client.create_volume(req).await).await.1.unwrap();
        let writable = pb::NodeAttachVolumeRequest { volume_id: plain.clone(), ..attach(false) };
        let plain_target = node.client.attach_volume(writable).await.unwrap().into_inner().target_dev;
        // `qemu-io` in QEMU's monitor writes through the VM's own block layer;
        // it prints nothing on success and the reason on failure.
        let qemu_io_in_vm = |target: &str, command: &str| {
            // virtio-scsi unit N is QEMU device scsi0-0-0-N (sda = 0, sdb = 1, ...).
            let unit = target.as_bytes()[2] - b'a';
            let cmd = format!("qemu-io -d scsi0-0-0-{unit} \"{command}\"");
            libvirtd.virsh(&["qemu-monitor-command", "lq-base", "--hmp", &cmd]).unwrap().trim().to_owned()
        };
        assert_eq!(qemu_io_in_vm(&plain_target, "write -P 0x66 0 64k"), "");
        assert_eq!(qemu_io_in_vm(&plain_target, "flush"), "");
        let plain_path = base_info.location.replace(&base, &plain);
        assert!(qemu_io(&plain_path, "read -P 0x66 0 64k"), "a write through QEMU lands on a read-write disk");
        let refused = qemu_io_in_vm(&attached.target_dev, "write -P 0x66 0 64k");
        assert!(refused.contains("read-only"), "the same write to the read-only base fails: {refused:?}");
        let detach = pb::NodeDetachVolumeRequest { volume_id: base.clone(), domain: "lq-base".into(), timeout_seconds: 20 };
        node.client.detach_volume(detach).await.unwrap();

        assert!(qemu_io(&clone_info.location, "read -P 0x42 0 1M"), "the clone's data is unchanged");
        assert!(qemu_io(&base_info.location, "read -P 0x42 0 1M"), "and so is the base's");
    });
}

/// The same from inside a real guest OS: the base hot-plugged read-only is
/// readable there and a write to it fails in the guest; read-write is refused.
#[test]
fn a_guest_reads_a_base_attached_read_only_and_cannot_write_it() {
    use limiquantix_testkit::{Guest, GuestImage, GuestOptions};
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = GuestImage::build(&root.path().join("guest"), &GuestOptions::default()).unwrap();
    let guest = Guest::boot(&libvirtd, &image, "lq-base-guest", "").unwrap_or_else(|e| panic!("{e}"));
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(&root.path().join("node"), |c| c.libvirt_uri = uri).await;
        let pool = node.init_local_pool("p").await;
        let base = new_id();
        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: base.clone(), spec: spec(GIB), source: None };
        let base_info = finish(node.client.create_volume(req).await).await.1.unwrap();
        assert!(qemu_io(&base_info.location, "write -P 0x42 0 1M"));
        let clone = new_id();
        let req = pb::NodeCloneVolumeRequest {
            pool_id: pool.clone(),
            source_volume_id: base.clone(),
            volume_id: clone.clone(),
            mode: pb::CloneMode::Linked as i32,
            spec: None,
        };
        let clone_info = finish(node.client.clone_volume(req).await).await.1.unwrap();
        let attach = |read_only| pb::NodeAttachVolumeRequest {
            pool_id: pool.clone(),
            volume_id: base.clone(),
            domain: guest.name().into(),
            bus: pb::DiskBus::Scsi as i32,
            read_only,
        };
        let err = node.client.attach_volume(attach(false)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        node.client.attach_volume(attach(true)).await.unwrap();

        // The guest finds the hot-plugged disk by its serial, the volume id.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let dev = loop {
            match guest.disk_by_serial(&base) {
                Ok(dev) => break dev,
                Err(e) => assert!(std::time::Instant::now() < deadline, "the guest never saw the disk: {e}\n{}", guest.failure_report()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let read = guest.exec(&["dd", &format!("if={dev}"), "bs=4096", "count=1", "iflag=direct"]).unwrap();
        assert!(read.success() && read.stdout == vec![0x42; 4096], "the guest reads the base's data: {read:?}");
        let write = guest.exec(&["dd", "if=/dev/zero", &format!("of={dev}"), "bs=4096", "count=1", "oflag=direct"]).unwrap();
        assert!(!write.success(), "a guest write to the read-only base succeeded: {write:?}");
        assert!(qemu_io(&clone_info.location, "read -P 0x42 0 1M"), "the clone's data is unchanged");
    });
}
