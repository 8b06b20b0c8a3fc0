//! A volume attached to a running VM (TCG, private libvirtd) moves into
//! another pool of the node while the VM keeps it open: libvirt mirrors the
//! disk onto a new volume and pivots; the VM then reads and writes the new
//! volume (writes made through QEMU before the move are in it, writes after
//! land only there), and it still detaches by its serial. Refusals leave the
//! VM on its source with nothing made.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;
use tonic::Code;

const MIB: u64 = 1 << 20;

fn qemu_io(path: &str, cmd: &str) -> bool {
    let out = Command::new("qemu-io").args(["-f", "qcow2", "-r", "-U", "-c", cmd, path]).output().unwrap();
    out.status.success()
}

#[test]
fn an_attached_volume_moves_while_its_vm_runs() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    libvirtd.create_domain(&minimal_domain("lq-move", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| c.libvirt_uri = uri).await;
        let (p, q) = (node.init_local_pool("p").await, node.init_local_pool("q").await);
        let id = new_id();
        let req = pb::NodeCreateVolumeRequest { pool_id: p.clone(), volume_id: id.clone(), spec: spec(64 * MIB), source: None };
        let source = finish(node.client.create_volume(req).await).await.1.unwrap();
        let out = Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x11 0 4M", &source.location]).output().unwrap();
        assert!(out.status.success());
        let attach = pb::NodeAttachVolumeRequest { pool_id: p.clone(), volume_id: id.clone(), domain: "lq-move".into(), bus: pb::DiskBus::Scsi as i32, read_only: false };
        let target = node.client.attach_volume(attach).await.unwrap().into_inner().target_dev;
        // Writes through the VM's own block layer (HMP qemu-io on the disk's device).
        let in_vm = |command: &str| {
            let unit = target.as_bytes()[2] - b'a';
            let cmd = format!("qemu-io -d scsi0-0-0-{unit} \"{command}\"");
            libvirtd.virsh(&["qemu-monitor-command", "lq-move", "--hmp", &cmd]).unwrap().trim().to_owned()
        };
        assert_eq!(in_vm("write -P 0x22 8M 4M"), "");

        // Refused, nothing made: a VM that does not have it, the same pool.
        let live = |domain: &str, to: &str| pb::NodeLiveCopyRequest {
            pool_id: to.into(),
            volume_id: id.clone(),
            from_pool_id: p.clone(),
            domain: domain.into(),
            format: 0,
        };
        libvirtd.create_domain(&minimal_domain("lq-other", "")).unwrap();
        let (_, err) = finish(node.client.live_copy_volume(live("lq-other", &q)).await).await;
        assert_eq!(err.unwrap_err().code(), Code::FailedPrecondition);
        let (_, err) = finish(node.client.live_copy_volume(live("lq-move", &p)).await).await;
        assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
        assert!(std::fs::read_dir(root.path().join("pools/q")).unwrap().next().is_none(), "nothing made in q");

        let (progress, moved) = finish(node.client.live_copy_volume(live("lq-move", &q)).await).await;
        let moved = moved.unwrap();
        assert!(progress.iter().any(|p| p.phase == "mirroring"), "{progress:?}");
        assert_eq!((moved.volume_id.as_str(), moved.pool_id.as_str(), moved.size_bytes), (id.as_str(), q.as_str(), 64 * MIB));
        let xml = libvirtd.virsh(&["dumpxml", "lq-move"]).unwrap();
        assert!(xml.contains(&moved.location) && !xml.contains(&source.location), "the VM uses the new volume: {xml}");
        assert!(!xml.contains("<mirror"), "no block job left: {xml}");

        // After the pivot the VM writes into the new volume only.
        assert_eq!(in_vm("write -P 0x33 16M 4M"), "");
        assert_eq!(in_vm("flush"), "");
        for (pattern, at) in [("0x11", "0"), ("0x22", "8M"), ("0x33", "16M")] {
            assert!(qemu_io(&moved.location, &format!("read -P {pattern} {at} 4M")), "{pattern} at {at} in the new volume");
        }
        assert!(!qemu_io(&source.location, "read -P 0x33 16M 4M"), "the old volume no longer gets writes");

        // It detaches by its serial, as before the move.
        let detach = pb::NodeDetachVolumeRequest { volume_id: id.clone(), domain: "lq-move".into(), timeout_seconds: 20 };
        node.client.detach_volume(detach).await.unwrap();
        assert!(!libvirtd.virsh(&["dumpxml", "lq-move"]).unwrap().contains(&id));
    });
}
