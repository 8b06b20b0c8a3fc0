//! Every <disk> shape the node can emit validates against libvirt's own schema
//! (virt-xml-validate), wrapped in a domain.

use std::process::Command;

use limiquantix_storage::model::{DiskBus, VolumeFormat};
use limiquantix_storage::xml::{BackingImage, DiskAuth, DiskDefinition, DiskDriver, DiskSource, NetHost, SecretRef};
use limiquantix_testkit::libvirt::minimal_domain;

fn host(name: &str, port: Option<u16>) -> NetHost {
    NetHost { name: name.into(), port }
}

fn shapes() -> Vec<(&'static str, DiskDefinition)> {
    let serial = "0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11".to_string();
    let disk = |source, driver, target: &str, bus| DiskDefinition {
        source,
        driver,
        target_dev: target.into(),
        bus,
        serial: serial.clone(),
        read_only: false,
        backing_chain: Vec::new(),
    };
    let read_only = |d: DiskDefinition| DiskDefinition { read_only: true, ..d };
    let nfs = |file: &str| DiskSource::Nfs {
        host: host("nas01.example.com", None),
        path: format!("/export/vmstore/{file}"),
        identity: Some(("root".into(), "root".into())),
    };
    vec![
        ("file qcow2 read-only (a base of linked clones)", read_only(disk(
            DiskSource::File { path: "/var/lib/limiquantix/pools/p1/lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11.qcow2".into() },
            DiskDriver::file(VolumeFormat::Qcow2, true), "sdf", DiskBus::Scsi))),
        ("file qcow2", disk(
            DiskSource::File { path: "/var/lib/limiquantix/pools/p1/lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11.qcow2".into() },
            DiskDriver::file(VolumeFormat::Qcow2, true), "sda", DiskBus::Scsi)),
        ("file raw without O_DIRECT", disk(
            DiskSource::File { path: "/srv/pool with spaces & 'quotes'/lq-x.raw".into() },
            DiskDriver::file(VolumeFormat::Raw, false), "vda", DiskBus::Virtio)),
        ("block", disk(
            DiskSource::Block { dev: "/dev/lqvg/lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11".into() },
            DiskDriver::block(), "sdb", DiskBus::Scsi)),
        ("network rbd", disk(
            DiskSource::Rbd {
                pool: "vms".into(),
                namespace: None,
                image: "lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11".into(),
                hosts: vec![host("10.0.0.1", Some(6789)), host("fd00::2", Some(6789)), host("10.0.0.3", None)],
                auth: Some(DiskAuth { username: "libvirt".into(), secret: SecretRef::Ceph { uuid: "2a1f4c2e-8f7b-4d6e-9b1a-3c5d7e9f0a1b".into() } }),
            },
            DiskDriver::rbd(), "sdc", DiskBus::Scsi)),
        ("network nfs", disk(
            DiskSource::Nfs {
                host: host("192.168.10.5", None),
                path: "/export/vmstore/lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11.qcow2".into(),
                identity: Some(("root".into(), "root".into())),
            },
            DiskDriver::nfs(VolumeFormat::Qcow2), "sdd", DiskBus::Scsi)),
        ("network nfs linked clone, its chain spelled out", DiskDefinition {
            backing_chain: vec![
                BackingImage { source: nfs("lq-base.qcow2"), format: VolumeFormat::Qcow2 },
                BackingImage { source: nfs("lq-golden.raw"), format: VolumeFormat::Raw },
            ],
            ..disk(nfs("lq-clone.qcow2"), DiskDriver::nfs(VolumeFormat::Qcow2), "sdg", DiskBus::Scsi)
        }),
        ("network iscsi", disk(
            DiskSource::Iscsi {
                host: host("127.0.0.1", Some(3260)),
                iqn: "iqn.2024-01.io.limiquantix:tgt1".into(),
                lun: 1,
                initiator_iqn: Some("iqn.2024-01.io.limiquantix:node1".into()),
                auth: Some(DiskAuth { username: "lquser".into(), secret: SecretRef::Iscsi { usage: "lq-iscsi-tgt1".into() } }),
            },
            DiskDriver::iscsi(), "sde", DiskBus::Scsi)),
    ]
}

#[test]
fn every_disk_shape_validates_against_the_libvirt_schema() {
    let dir = tempfile::tempdir().unwrap();
    for (name, disk) in shapes() {
        let xml = disk.to_xml();
        assert!(xml.contains(&format!("<serial>{}</serial>", disk.serial)), "{name}: {xml}");
        assert!(xml.contains(&format!("type=\"{}\"", disk.driver.format)), "{name}: the format is always stated");
        let file = dir.path().join("domain.xml");
        std::fs::write(&file, minimal_domain("lq-validate", &xml)).unwrap();
        let out = Command::new("virt-xml-validate").arg(&file).arg("domain").output().expect("virt-xml-validate runs");
        assert!(
            out.status.success(),
            "{name} does not validate:\n{xml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_validator_rejects_a_broken_disk() {
    // Guards the test above: a disk without a target must fail validation.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("domain.xml");
    let broken = "<disk type='file' device='disk'><source file='/x'/></disk>";
    std::fs::write(&file, minimal_domain("lq-validate", broken)).unwrap();
    let out = Command::new("virt-xml-validate").arg(&file).arg("domain").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_secret_xml_validates_against_the_libvirt_schema() {
    use limiquantix_storage::SecretUsage;
    use limiquantix_storage::xml::secret_xml;
    let dir = tempfile::tempdir().unwrap();
    for usage in [SecretUsage::Ceph("limiquantix pool x client.libvirt".into()), SecretUsage::Iscsi("iqn.2024-01.io.x:t<&>".into())] {
        let xml = secret_xml("2a1f4c2e-8f7b-4d6e-9b1a-3c5d7e9f0a1b", &usage);
        assert!(xml.contains(r#"private="yes""#), "{xml}");
        let file = dir.path().join("secret.xml");
        std::fs::write(&file, &xml).unwrap();
        let out = Command::new("virt-xml-validate").arg(&file).arg("secret").output().unwrap();
        assert!(out.status.success(), "{xml}\n{}", String::from_utf8_lossy(&out.stderr));
    }
}
