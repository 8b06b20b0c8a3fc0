//! End to end with a real QEMU: an imported qcow2 image, a linked clone of it,
//! and the <disk> GetVolumeAttachInfo returns, started in a domain under a
//! private libvirtd. QEMU must open the clone (through its backing chain) at
//! the clone's size, and the node must refuse to change a disk a VM holds.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;

const GIB: u64 = 1 << 30;

#[test]
fn qemu_opens_a_linked_clone_of_an_imported_image_with_the_attach_xml() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    // QEMU runs as libvirt-qemu: it must be able to reach the pool directory.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start(root.path()).await;
        let pool = node.init_local_pool("vmstore").await;

        let image = root.path().join("images/debian.qcow2");
        let out = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("1G").output().unwrap();
        assert!(out.status.success());
        let out = Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x5c 0 1M"]).arg(&image).output().unwrap();
        assert!(out.status.success());

        let base_id = new_id();
        let source = pb::VolumeSource {
            source: Some(pb::volume_source::Source::Image(pb::ImageSource {
                path: image.display().to_string(),
                format: pb::ImageFormat::Qcow2 as i32,
            })),
        };
        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: base_id.clone(), spec: None, source: Some(source) };
        let (_, base) = finish(node.client.create_volume(req).await).await;
        assert_eq!(base.unwrap().size_bytes, GIB);

        let clone_id = new_id();
        let req = pb::NodeCloneVolumeRequest {
            pool_id: pool.clone(),
            source_volume_id: base_id.clone(),
            volume_id: clone_id.clone(),
            mode: pb::CloneMode::Linked as i32,
            spec: spec(2 * GIB),
        };
        let (_, clone) = finish(node.client.clone_volume(req).await).await;
        let clone = clone.unwrap();
        assert_eq!(clone.backing_volume_id, base_id);

        // The domain already has a disk on sda: the node must pick another target.
        let cdrom = "<disk type='file' device='cdrom'><target dev='sda' bus='scsi'/><readonly/></disk>";
        let existing = minimal_domain("lq-e2e", cdrom);
        let info = node
            .client
            .get_volume_attach_info(pb::GetVolumeAttachInfoRequest {
                pool_id: pool.clone(),
                volume_id: clone_id.clone(),
                bus: pb::DiskBus::Scsi as i32,
                used_targets: vec![],
                domain_xml: existing.clone(),
                read_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.target_dev, "sdb");
        assert_eq!(info.serial, clone_id);

        let domain = minimal_domain("lq-e2e", &format!("{cdrom}\n{}", info.disk_xml));
        if let Err(e) = libvirtd.create_domain(&domain) {
            panic!("domain failed to start: {e}\n{}\nQEMU log:\n{}", domain, libvirtd.qemu_log("lq-e2e"));
        }
        assert_eq!(libvirtd.disk_capacity("lq-e2e", "sdb").unwrap(), 2 * GIB, "QEMU sees the clone's size");
        let live = libvirtd.virsh(&["dumpxml", "lq-e2e"]).unwrap();
        assert!(live.contains(&format!("<serial>{clone_id}</serial>")), "{live}");
        assert!(live.contains(&format!("lq-{base_id}.qcow2")), "QEMU resolved the backing chain: {live}");

        // While QEMU holds the disk, the node refuses to change it.
        let err = node
            .client
            .delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: clone_id.clone(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("in use by a running VM"), "{err:?}");
        let err = node
            .client
            .resize_volume(pb::NodeResizeVolumeRequest { pool_id: pool.clone(), volume_id: clone_id.clone(), new_size_bytes: 3 * GIB, live_domain: String::new() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

        let copy = pb::NodeCloneVolumeRequest {
            pool_id: pool.clone(),
            source_volume_id: clone_id.clone(),
            volume_id: new_id(),
            mode: pb::CloneMode::Full as i32,
            spec: None,
        };
        let (_, copied) = finish(node.client.clone_volume(copy).await).await;
        assert_eq!(copied.unwrap_err().code(), tonic::Code::FailedPrecondition, "no copy of a disk a VM writes to");
        // The base is only read by QEMU: copying it is fine.
        let copy = pb::NodeCloneVolumeRequest {
            pool_id: pool.clone(),
            source_volume_id: base_id.clone(),
            volume_id: new_id(),
            mode: pb::CloneMode::Full as i32,
            spec: None,
        };
        let (_, copied) = finish(node.client.clone_volume(copy).await).await;
        assert_eq!(copied.unwrap().size_bytes, GIB);

        libvirtd.virsh(&["destroy", "lq-e2e"]).unwrap();
        node.client
            .delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: clone_id.clone(), ..Default::default() })
            .await
            .expect("deletable once the VM is gone");
        node.stop().await;
    });
}
