//! An RBD volume in a real QEMU (TCG) domain under a private libvirtd, against
//! a real Ceph cluster: the node defines the libvirt secret itself, the disk
//! XML names every monitor, and QEMU opens the image through librbd.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::ceph::TEST_POOL;
use limiquantix_testkit::libvirt::minimal_domain;
use limiquantix_testkit::{Ceph, Libvirtd};

const GIB: u64 = 1 << 30;

#[test]
fn qemu_opens_an_rbd_volume_through_librbd_with_the_nodes_secret() {
    let ceph = Ceph::start().expect("ceph");
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain("lq-rbd-vm", "")).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| c.libvirt_uri = uri).await;
        let pool = new_id();
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Ceph(pb::CephPoolConfig {
                monitors: vec![ceph.monitor()],
                ceph_pool: TEST_POOL.into(),
                client_id: "admin".into(),
                // As read from a key file: with its newline. QEMU must still get in.
                key: format!("{}\n", ceph.admin_key()),
                ..Default::default()
            })),
        };
        let info = node.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: pool.clone(), config: Some(config.clone()) }).await.unwrap().into_inner();
        assert_eq!(info.kind, pb::PoolKind::Ceph as i32);
        let shown = info.config.unwrap();
        let Some(pb::pool_config::Backend::Ceph(c)) = shown.backend else { panic!("{shown:?}") };
        assert!(c.key.is_empty(), "the key is write-only");
        // The node stored the key in libvirt as a private secret named after the pool.
        let secrets = libvirtd.virsh(&["secret-list"]).unwrap();
        assert!(secrets.contains(&pool), "{secrets}");
        let err = libvirtd.virsh(&["secret-get-value", &pool]).unwrap_err().to_string();
        assert!(err.contains("private"), "the value cannot be read back: {err}");

        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: new_id(), spec: spec(GIB), source: None };
        let vol = finish(node.client.create_volume(req).await).await.1.unwrap();

        let xml = node
            .client
            .get_volume_attach_info(pb::GetVolumeAttachInfoRequest { pool_id: pool.clone(), volume_id: vol.volume_id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .disk_xml;
        for want in [
            r#"<disk type="network" device="disk">"#.to_owned(),
            r#"<driver name="qemu" type="raw" cache="writeback" discard="unmap"/>"#.to_owned(),
            format!(r#"<source protocol="rbd" name="{TEST_POOL}/lq-{}">"#, vol.volume_id),
            format!(r#"<host name="127.0.0.1" port="{}"/>"#, ceph.monitor().rsplit(':').next().unwrap()),
            format!(r#"<secret type="ceph" uuid="{pool}"/>"#),
            r#"<auth username="admin">"#.to_owned(),
            format!("<serial>{}</serial>", vol.volume_id),
        ] {
            assert!(xml.contains(&want), "{want} in {xml}");
        }

        let attach = pb::NodeAttachVolumeRequest { pool_id: pool.clone(), volume_id: vol.volume_id.clone(), domain: "lq-rbd-vm".into(), bus: 0, read_only: false };
        let attached = node.client.attach_volume(attach).await;
        if let Err(e) = &attached {
            panic!("attach failed: {e:?}\nQEMU log:\n{}", libvirtd.qemu_log("lq-rbd-vm"));
        }
        let target = attached.unwrap().into_inner().target_dev;
        assert_eq!(libvirtd.disk_capacity("lq-rbd-vm", &target).unwrap(), GIB, "QEMU opened it through librbd");
        let watchers = ceph.rbd(&["status", "--format", "json", &format!("{TEST_POOL}/lq-{}", vol.volume_id)]).unwrap();
        assert!(watchers.contains("\"address\""), "QEMU watches the image: {watchers}");

        let resize = pb::NodeResizeVolumeRequest {
            pool_id: pool.clone(),
            volume_id: vol.volume_id.clone(),
            new_size_bytes: 2 * GIB,
            live_domain: "lq-rbd-vm".into(),
        };
        node.client.resize_volume(resize).await.unwrap();
        assert_eq!(libvirtd.disk_capacity("lq-rbd-vm", &target).unwrap(), 2 * GIB, "a live grow reaches the guest");

        let detach = pb::NodeDetachVolumeRequest { volume_id: vol.volume_id.clone(), domain: "lq-rbd-vm".into(), timeout_seconds: 20 };
        node.client.detach_volume(detach).await.unwrap();
        node.client
            .delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: vol.volume_id.clone(), ..Default::default() })
            .await
            .unwrap();
        node.client.destroy_storage_pool(pb::DestroyStoragePoolRequest { pool_id: pool.clone() }).await.unwrap();
        assert!(!libvirtd.virsh(&["secret-list"]).unwrap().contains(&pool), "the secret goes with the pool");

        // A pool in error (its cluster gone) is forgotten whole too: key files and secret.
        let broken = new_id();
        node.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: broken.clone(), config: Some(config) }).await.unwrap();
        node.stop().await;
        drop(ceph);
        let uri = libvirtd.uri().to_owned();
        let mut node = TestNode::start_with(root.path(), |c| {
            c.libvirt_uri = uri;
            c.ceph.mount_timeout_secs = 2;
            c.ceph.mon_op_timeout_secs = 2;
        })
        .await;
        let info = node.client.get_storage_pool_info(pb::GetStoragePoolInfoRequest { pool_id: broken.clone(), count_volumes: false }).await;
        assert_eq!(info.unwrap().into_inner().phase, pb::PoolPhase::Error as i32);
        let kept = |name: &str| root.path().join("state/ceph").join(format!("{broken}.{name}")).exists();
        assert!(kept("keyring") && kept("conf"), "the key is still on the node before the destroy");
        assert!(libvirtd.virsh(&["secret-list"]).unwrap().contains(&broken));
        node.client.destroy_storage_pool(pb::DestroyStoragePoolRequest { pool_id: broken.clone() }).await.unwrap();
        assert!(!kept("keyring") && !kept("conf"), "the key file goes with a pool in error");
        assert!(!libvirtd.virsh(&["secret-list"]).unwrap().contains(&broken), "and so does its libvirt secret");
        node.stop().await;
    });
}
