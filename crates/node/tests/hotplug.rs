//! Hot-plug through the node's libvirt glue, against a private libvirtd and a
//! real QEMU (TCG) domain: attach on virtio-scsi with the volume id as serial,
//! idempotent repeats, live resize the guest sees, detach confirmed by QEMU.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;
use tonic::Code;

const GIB: u64 = 1 << 30;

#[test]
fn attach_resize_and_detach_on_a_running_vm() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    libvirtd.create_domain(&minimal_domain("lq-hotplug", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| c.libvirt_uri = uri).await;
        let pool = node.init_local_pool("p").await;
        let mut volumes = Vec::new();
        for _ in 0..2 {
            let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: new_id(), spec: spec(GIB), source: None };
            volumes.push(finish(node.client.create_volume(req).await).await.1.unwrap().volume_id);
        }
        let attach = |volume: &str, domain: &str| pb::NodeAttachVolumeRequest {
            pool_id: pool.clone(),
            volume_id: volume.to_owned(),
            domain: domain.to_owned(),
            bus: 0,
            read_only: false,
        };

        let first = node.client.attach_volume(attach(&volumes[0], "lq-hotplug")).await.unwrap().into_inner();
        assert_eq!(first.target_dev, "sda");
        assert!(first.disk_xml.contains(&format!("<serial>{}</serial>", volumes[0])), "{}", first.disk_xml);
        let again = node.client.attach_volume(attach(&volumes[0], "lq-hotplug")).await.unwrap().into_inner();
        assert_eq!(again.target_dev, "sda", "a repeated attach finds the disk already there");
        let second = node.client.attach_volume(attach(&volumes[1], "lq-hotplug")).await.unwrap().into_inner();
        assert_eq!(second.target_dev, "sdb", "the next free target");
        let listed = libvirtd.virsh(&["domblklist", "lq-hotplug"]).unwrap();
        assert!(listed.contains("sda") && listed.contains("sdb"), "{listed}");
        assert_eq!(libvirtd.disk_capacity("lq-hotplug", "sda").unwrap(), GIB);

        // Live resize: QEMU grows the image and the guest sees the new size.
        let resize = pb::NodeResizeVolumeRequest {
            pool_id: pool.clone(),
            volume_id: volumes[0].clone(),
            new_size_bytes: 2 * GIB,
            live_domain: "lq-hotplug".into(),
        };
        let grown = node.client.resize_volume(resize).await.unwrap().into_inner();
        assert_eq!(grown.size_bytes, 2 * GIB);
        assert_eq!(libvirtd.disk_capacity("lq-hotplug", "sda").unwrap(), 2 * GIB);

        let del = pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: volumes[0].clone(), ..Default::default() };
        assert_eq!(node.client.delete_volume(del.clone()).await.unwrap_err().code(), Code::FailedPrecondition);

        let detach = |volume: &str| pb::NodeDetachVolumeRequest { volume_id: volume.to_owned(), domain: "lq-hotplug".into(), timeout_seconds: 20 };
        node.client.detach_volume(detach(&volumes[0])).await.unwrap();
        let live = libvirtd.virsh(&["dumpxml", "lq-hotplug"]).unwrap();
        assert!(!live.contains(&volumes[0]), "QEMU released the disk: {live}");
        assert!(live.contains(&volumes[1]));
        node.client.detach_volume(detach(&volumes[0])).await.expect("detaching a detached volume succeeds");
        node.client.delete_volume(del).await.expect("deletable once detached");

        let missing = node.client.attach_volume(attach(&volumes[1], "lq-no-such-vm")).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        assert!(missing.message().contains("lq-no-such-vm"), "{missing:?}");
        let bad = node.client.attach_volume(attach(&volumes[1], "a/b")).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        let ghost = node.client.attach_volume(attach(&new_id(), "lq-hotplug")).await.unwrap_err();
        assert_eq!(ghost.code(), Code::NotFound);
        node.stop().await;
    });
}
