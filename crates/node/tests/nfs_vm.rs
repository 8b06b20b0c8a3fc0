//! NFS volumes in a real QEMU (TCG) domain under a private libvirtd, against
//! a real nfs-ganesha in this test's network namespace: the disk XML is a
//! network disk that QEMU opens through its own NFS client (nothing is
//! mounted), a linked clone reads its base over NFS, writes reach the clone
//! only, and a live grow reaches the guest.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::libvirt::minimal_domain;
use limiquantix_testkit::{Ganesha, Libvirtd};

const GIB: u64 = 1 << 30;
const DOMAIN: &str = "lq-nfs-vm";

fn qemu_io(url: &str, cmd: &str) -> bool {
    // Reads share the image with a VM that may have it open.
    let share: &[&str] = if cmd.starts_with("read") { &["-r", "-U"] } else { &[] };
    let out = Command::new("qemu-io").args(["-f", "qcow2"]).args(share).args(["-c", cmd, url]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && !said.contains("failed")
}

/// Runs a qemu-io command inside the running QEMU on the disk whose serial
/// is `serial` (HMP `qemu-io -d`: the disk's device alias is its qdev id)
/// and returns what it printed (QEMU's stdout, which libvirt logs).
fn qemu_io_in_vm(libvirtd: &Libvirtd, serial: &str, cmd: &str) -> String {
    let xml = libvirtd.virsh(&["dumpxml", DOMAIN]).unwrap();
    let disk = xml.split("<disk ").find(|d| d.contains(&format!("<serial>{serial}</serial>"))).expect("the disk is in the domain");
    let alias = disk.split("<alias name='").nth(1).and_then(|a| a.split('\'').next()).expect("an alias");
    let before = libvirtd.qemu_log(DOMAIN).len();
    libvirtd.virsh(&["qemu-monitor-command", DOMAIN, "--hmp", &format!("qemu-io -d {alias} \"{cmd}\"")]).unwrap();
    libvirtd.qemu_log(DOMAIN)[before..].to_owned()
}

#[test]
fn qemu_reaches_nfs_volumes_through_its_own_nfs_client() {
    limiquantix_testkit::private_network().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
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
            backend: Some(pb::pool_config::Backend::Nfs(pb::NfsPoolConfig {
                server: "127.0.0.1".into(),
                export_path: nfs.export().display().to_string(),
                ..Default::default()
            })),
        };
        let info = node.client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: pool.clone(), config: Some(config) }).await.unwrap().into_inner();
        assert_eq!(info.kind, pb::PoolKind::Nfs as i32);

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

        let xml = node
            .client
            .get_volume_attach_info(pb::GetVolumeAttachInfoRequest { pool_id: pool.clone(), volume_id: clone.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .disk_xml;
        let export = nfs.export().display().to_string();
        for want in [
            r#"<disk type="network" device="disk">"#.to_owned(),
            format!(r#"<source protocol="nfs" name="{export}/lq-{clone}.qcow2">"#),
            r#"<host name="127.0.0.1"/>"#.to_owned(),
            r#"<identity user="root" group="root"/>"#.to_owned(),
            format!("<serial>{clone}</serial>"),
        ] {
            assert!(xml.contains(&want), "{want} in {xml}");
        }

        let attach = pb::NodeAttachVolumeRequest { pool_id: pool.clone(), volume_id: clone.clone(), domain: DOMAIN.into(), bus: 0, read_only: false };
        let attached = node.client.attach_volume(attach).await;
        if let Err(e) = &attached {
            panic!("attach failed: {e:?}\nQEMU log:\n{}\nganesha:\n{}", libvirtd.qemu_log(DOMAIN), nfs.log_tail());
        }
        let target = attached.unwrap().into_inner().target_dev;
        assert_eq!(libvirtd.disk_capacity(DOMAIN, &target).unwrap(), GIB, "QEMU opened it");
        let read = qemu_io_in_vm(&libvirtd, &clone, "read -P 0x42 0 1M");
        assert!(!read.contains("failed") && read.contains("read 1048576/1048576"), "the VM reads the base's data through the clone: {read}");
        let wrote = qemu_io_in_vm(&libvirtd, &clone, "write -P 0x43 0 64k");
        assert!(wrote.contains("wrote 65536/65536"), "{wrote}");
        assert!(qemu_io(&base_info.location, "read -P 0x42 0 1M"), "the base is not written");

        let resize = pb::NodeResizeVolumeRequest { pool_id: pool.clone(), volume_id: clone.clone(), new_size_bytes: 2 * GIB, live_domain: DOMAIN.into() };
        node.client.resize_volume(resize).await.unwrap();
        assert_eq!(libvirtd.disk_capacity(DOMAIN, &target).unwrap(), 2 * GIB, "a live grow reaches the guest");

        let detach = pb::NodeDetachVolumeRequest { volume_id: clone.clone(), domain: DOMAIN.into(), timeout_seconds: 20 };
        node.client.detach_volume(detach).await.unwrap();
        assert!(qemu_io(&clone_info.location, "read -P 0x43 0 64k"), "the VM's write is in the clone's file");
        for id in [&clone, &base] {
            node.client.delete_volume(pb::NodeDeleteVolumeRequest { pool_id: pool.clone(), volume_id: id.clone(), ..Default::default() }).await.unwrap();
        }
        node.stop().await;
    });
}
