//! An iSCSI pool in direct mode against a real tgt, with a real QEMU (TCG)
//! under a private libvirtd: the target's disk LUNs are the volumes, with
//! ids that stay with each disk when the array renumbers its LUNs; QEMU opens
//! a LUN through libiscsi with the CHAP secret the node keeps in a private
//! libvirt secret; array-side operations are refused naming the mode; the
//! secret is on no command line.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestNode, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::libvirt::minimal_domain;
use limiquantix_testkit::tgt::{CHAP_USER, TARGET};
use limiquantix_testkit::{Libvirtd, Tgt};
use tonic::Code;

const MIB: u64 = 1 << 20;
const DOMAIN: &str = "lq-iscsi-vm";

/// Every process's command line, to look for a secret.
fn all_command_lines() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&cmdline).replace('\0', " "));
            all.push('\n');
        }
    }
    all
}

#[test]
fn qemu_opens_a_lun_through_libiscsi_with_the_nodes_chap_secret() {
    let tgt = Tgt::start(&[64, 32]).unwrap();
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain(DOMAIN, "")).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| c.libvirt_uri = uri).await;
        let pool = new_id();
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Iscsi(pb::IscsiPoolConfig {
                portals: vec![tgt.portal()],
                target_iqn: TARGET.into(),
                initiator_iqn: "iqn.2024-01.io.limiquantix.test:node1".into(),
                chap_username: CHAP_USER.into(),
                chap_password: tgt.chap_secret().into(),
                mode: pb::IscsiMode::Direct as i32,
                ..Default::default()
            })),
        };
        let info = node.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: pool.clone(), config: Some(config) }).await.unwrap().into_inner();
        assert_eq!(info.kind, pb::PoolKind::Iscsi as i32);
        assert_eq!(info.capacity.unwrap().total_bytes, 96 * MIB, "the sum of its disk LUNs");
        let Some(pb::pool_config::Backend::Iscsi(shown)) = info.config.unwrap().backend else { panic!() };
        assert!(shown.chap_password.is_empty(), "the secret is write-only");

        let list = |node: &mut TestNode| {
            let req = pb::NodeListVolumesRequest { pool_id: pool.clone(), ..Default::default() };
            let mut client = node.client.clone();
            async move { client.list_volumes(req).await.unwrap().into_inner().volumes }
        };
        let volumes = list(&mut node).await;
        let mut sizes: Vec<u64> = volumes.iter().map(|v| v.size_bytes).collect();
        sizes.sort();
        assert_eq!(sizes, [32 * MIB, 64 * MIB], "{volumes:?}");
        let big = volumes.iter().find(|v| v.size_bytes == 64 * MIB).unwrap().clone();

        // The array's LUNs are made and removed on the array.
        let req = pb::NodeCreateVolumeRequest { pool_id: pool.clone(), volume_id: new_id(), spec: spec(MIB), source: None };
        let refused = match node.client.create_volume(req).await {
            Err(e) => e,
            Ok(stream) => common::finish(Ok(stream)).await.1.unwrap_err(),
        };
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("direct mode"), "{refused:?}");
        let del = node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: big.volume_id.clone(), ..Default::default() }).await.unwrap_err();
        assert_eq!(del.code(), Code::FailedPrecondition, "{del:?}");

        // QEMU opens the LUN through libiscsi with the node's secret.
        let secrets = libvirtd.virsh(&["secret-list"]).unwrap();
        assert!(secrets.contains(&pool), "{secrets}");
        let attach = pb::NodeAttachVolumeRequest { pool_id: pool.clone(), volume_id: big.volume_id.clone(), domain: DOMAIN.into(), bus: 0, read_only: false };
        let attached = node.client.attach_volume(attach).await;
        if let Err(e) = &attached {
            panic!("attach failed: {e:?}\nQEMU log:\n{}", libvirtd.qemu_log(DOMAIN));
        }
        let target = attached.unwrap().into_inner().target_dev;
        assert_eq!(libvirtd.disk_capacity(DOMAIN, &target).unwrap(), 64 * MIB, "QEMU opened the LUN");
        assert!(!all_command_lines().contains(tgt.chap_secret()), "the CHAP secret is on a command line");
        let detach = pb::NodeDetachVolumeRequest { volume_id: big.volume_id.clone(), domain: DOMAIN.into(), timeout_seconds: 20 };
        node.client.detach_volume(detach).await.unwrap();

        // The array renumbers its LUNs: each volume keeps its disk. A lookup
        // (what an attach uses) asks the target afresh at once.
        tgt.swap_luns(1, 2).unwrap();
        let get = pb::NodeGetVolumeRequest { pool_id: pool.clone(), volume_id: big.volume_id.clone() };
        let same = node.client.get_volume(get).await.unwrap().into_inner();
        assert_eq!(same.size_bytes, 64 * MIB, "the same disk under its new LUN number");
        assert!(same.location.ends_with("/2"), "{same:?}");
        let xml = node
            .client
            .get_volume_attach_info(pb::GetVolumeAttachInfoRequest { pool_id: pool.clone(), volume_id: big.volume_id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .disk_xml;
        assert!(xml.contains(&format!("name=\"{TARGET}/2\"")), "the disk points at the LUN's new number: {xml}");
        node.stop().await;
    });
}
