//! Snapshots of volumes a running VM (TCG, private libvirtd, no guest OS)
//! has open go through its QEMU: both disks at one instant (one QMP
//! transaction), holding what the VM had written, not what it writes after.
//! A quiesce the VM cannot give (no guest agent) is refused with nothing
//! taken, or gives a crash-consistent snapshot marked so when best effort
//! is enough. A retried request finds its snapshots; bad requests change
//! nothing. Snapshots of an open volume are deleted through the VM too.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TestNode, finish, new_id, spec};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::libvirt::minimal_domain;
use tonic::Code;

const MIB: u64 = 1 << 20;
const VM: &str = "lq-snap";

/// Whether `pattern` fills 4 MiB at `at` in snapshot `snapshot` of the image.
fn snapshot_holds(image: &str, snapshot: &str, pattern: &str, at: &str, scratch: &std::path::Path) -> bool {
    let raw = scratch.join("snapshot.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-l", &format!("snapshot.name={snapshot}"), "-O", "raw", image])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = Command::new("qemu-io").args(["-f", "raw", "-r", "-c", &format!("read -P {pattern} {at} 4M")]).arg(&raw).output().unwrap();
    std::fs::remove_file(&raw).unwrap();
    read.status.success() && !String::from_utf8_lossy(&read.stdout).contains("Pattern verification failed")
}

#[test]
fn open_volumes_are_snapshotted_through_their_vm() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    libvirtd.create_domain(&minimal_domain(VM, "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut node = TestNode::start_with(root.path(), |c| {
            c.libvirt_uri = uri;
            c.agent_timeout_secs = 3;
        })
        .await;
        let p = node.init_local_pool("p").await;
        let mut disks = Vec::new();
        for _ in 0..3 {
            let id = new_id();
            let req = pb::NodeCreateVolumeRequest { pool_id: p.clone(), volume_id: id.clone(), spec: spec(64 * MIB), source: None };
            let v = finish(node.client.create_volume(req).await).await.1.unwrap();
            disks.push((id, v.location));
        }
        let mut units = Vec::new();
        for (id, _) in &disks[..2] {
            let attach = pb::NodeAttachVolumeRequest { pool_id: p.clone(), volume_id: id.clone(), domain: VM.into(), bus: pb::DiskBus::Scsi as i32, read_only: false };
            let target = node.client.attach_volume(attach).await.unwrap().into_inner().target_dev;
            units.push(target.as_bytes()[2] - b'a');
        }
        let in_vm = |unit: u8, command: &str| {
            let cmd = format!("qemu-io -d scsi0-0-0-{unit} \"{command}\"");
            libvirtd.virsh(&["qemu-monitor-command", VM, "--hmp", &cmd]).unwrap().trim().to_owned()
        };
        for &u in &units {
            assert_eq!(in_vm(u, "write -P 0x11 0 4M"), "");
        }
        let req = |names: &[&(String, String)], name: &str, quiesce: pb::Quiesce| pb::CreateDomainSnapshotRequest {
            domain: VM.into(),
            volumes: names.iter().map(|(id, _)| pb::DomainVolume { pool_id: p.clone(), volume_id: id.clone() }).collect(),
            name: name.into(),
            quiesce: quiesce as i32,
        };
        let both = [&disks[0], &disks[1]];
        let listed = |node: &mut TestNode, id: String| {
            let mut client = node.client.clone();
            let p = p.clone();
            async move {
                let r = client.list_volume_snapshots(pb::ListVolumeSnapshotsRequest { pool_id: p, volume_id: id }).await.unwrap();
                r.into_inner().snapshots.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
        };

        // Crash-consistent: both disks at one instant, while QEMU holds them.
        let taken = node.client.create_domain_snapshot(req(&both, "before", pb::Quiesce::None)).await.unwrap().into_inner();
        assert_eq!(taken.snapshots.iter().map(|s| (s.volume_id.as_str(), s.name.as_str())).collect::<Vec<_>>(), vec![
            (disks[0].0.as_str(), "before"),
            (disks[1].0.as_str(), "before")
        ]);
        assert!(!taken.quiesced && taken.frozen_ms == 0 && taken.not_quiesced_reason.is_empty(), "{taken:?}");
        for &u in &units {
            assert_eq!(in_vm(u, "write -P 0x22 0 4M"), "");
            assert_eq!(in_vm(u, "flush"), "");
        }
        for (_, location) in &disks[..2] {
            assert!(snapshot_holds(location, "before", "0x11", "0", root.path()), "the snapshot holds what was written before it");
            assert!(!snapshot_holds(location, "before", "0x22", "0", root.path()), "and not what was written after");
        }

        // A retried request answers with the snapshots it finds.
        let again = node.client.create_domain_snapshot(req(&both, "before", pb::Quiesce::None)).await.unwrap().into_inner();
        assert_eq!(again.snapshots.len(), 2);
        assert!(!again.quiesced && again.not_quiesced_reason.contains("retried"), "{again:?}");

        // No guest agent: a required quiesce is refused with nothing taken.
        let err = node.client.create_domain_snapshot(req(&both, "app", pb::Quiesce::Required)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("guest agent") && err.message().contains("best-effort"), "{}", err.message());
        for (id, _) in &disks[..2] {
            assert_eq!(listed(&mut node, id.clone()).await, vec!["before"], "nothing taken");
        }
        // Best effort: taken crash-consistent, and marked so.
        let best = node.client.create_domain_snapshot(req(&both, "app", pb::Quiesce::BestEffort)).await.unwrap().into_inner();
        assert!(!best.quiesced && best.not_quiesced_reason.contains("guest agent"), "{best:?}");
        assert_eq!(listed(&mut node, disks[1].0.clone()).await, vec!["before", "app"]);

        // Refused, nothing taken on any disk: a volume the VM does not have,
        // names a kind would misread, a volume named twice, an unknown VM.
        let err = node.client.create_domain_snapshot(req(&[&disks[0], &disks[2]], "x1", pb::Quiesce::None)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        for bad in ["lq-mine", "123", "../x", ""] {
            let err = node.client.create_domain_snapshot(req(&both, bad, pb::Quiesce::None)).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        }
        let err = node.client.create_domain_snapshot(req(&[&disks[0], &disks[0]], "x2", pb::Quiesce::None)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let mut unknown = req(&both, "x3", pb::Quiesce::None);
        unknown.domain = "lq-nowhere".into();
        assert_eq!(node.client.create_domain_snapshot(unknown).await.unwrap_err().code(), Code::NotFound);
        for (id, _) in &disks {
            let names = listed(&mut node, id.clone()).await;
            assert!(names.iter().all(|n| n == "before" || n == "app"), "{names:?}");
        }

        // Deleted through the VM while it runs (qemu-img cannot: QEMU holds
        // the image); deleting one that is not there succeeds.
        for name in ["app", "app"] {
            let delete = pb::DeleteVolumeSnapshotRequest { pool_id: p.clone(), volume_id: disks[1].0.clone(), name: name.into(), domain: VM.into() };
            node.client.delete_volume_snapshot(delete).await.unwrap();
        }
        assert_eq!(listed(&mut node, disks[1].0.clone()).await, vec!["before"]);
        assert_eq!(listed(&mut node, disks[0].0.clone()).await, vec!["before", "app"], "the other disk keeps its own");
        assert!(!in_vm(units[1], "read -P 0x22 0 4M").contains("verification failed"), "the disk's data is untouched");
    });
}
