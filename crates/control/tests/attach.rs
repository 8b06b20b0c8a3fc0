//! Hot attach / detach through the control plane, against a private libvirtd
//! and a real QEMU (TCG) domain; then the attach and detach sagas aborted at
//! every step and resumed by a restarted control plane: the volume is
//! attached in the store exactly when QEMU has the disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::process::{spawn, write_config};
use common::{Clients, GIB};
use limiquantix_api::v1 as pb;
use limiquantix_node::RunningNode;
use limiquantix_testkit::Libvirtd;
use limiquantix_testkit::free_port;
use limiquantix_testkit::libvirt::minimal_domain;
use tonic::Code;

/// The ids of every task of the volume.
async fn volume_tasks(c: &mut Clients, volume_id: &str) -> Vec<String> {
    let req = pb::ListTasksRequest { resource_id: volume_id.to_owned(), page_size: 1000, ..Default::default() };
    c.tasks.list_tasks(req).await.unwrap().into_inner().tasks.into_iter().map(|t| t.id).collect()
}

fn qemu_has(libvirtd: &Libvirtd, domain: &str, volume_id: &str) -> bool {
    libvirtd.virsh(&["dumpxml", domain]).unwrap().contains(&format!("<serial>{volume_id}</serial>"))
}

#[test]
fn attach_resize_detach_and_crashes_at_every_step() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain("lq-cp-vm", "")).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let config = write_config(root.path(), port);
    let mut cp = spawn(&config, None);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut ncfg = common::node_config(root.path(), &url);
        ncfg.libvirt_uri = libvirtd.uri().to_owned();
        let node = RunningNode::start(&ncfg).await.unwrap();
        let node_id = limiquantix_node::registration::node_id(&ncfg.state_dir).unwrap();
        let mut c = Clients::connect(&url).await;
        c.wait_node_online(&node_id).await;
        c.local_pool("p1", &node_id, &root.path().join("node/pools/p1")).await;
        let v = c.create_volume("p1", "data", GIB).await;
        let attach = |vm: &str| pb::AttachVolumeRequest { volume_id: v.id.clone(), vm: vm.into(), ..Default::default() };

        let op = c.volumes.attach_volume(attach("lq-cp-vm")).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let attached = c.volume(&v.id).await.unwrap();
        assert_eq!(attached.state, pb::VolumeState::Attached as i32);
        let a = attached.attachment.clone().unwrap();
        assert_eq!((a.vm.as_str(), a.node_id.as_str(), a.target_dev.as_str()), ("lq-cp-vm", node_id.as_str(), "sda"));
        assert!(qemu_has(&libvirtd, "lq-cp-vm", &v.id));

        let err = c.volumes.attach_volume(attach("lq-cp-vm")).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("already attached to VM lq-cp-vm"), "{err:?}");
        let err = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: v.id.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "an attached volume cannot be deleted");

        // A grow of an attached volume goes through libvirt: the guest sees it.
        let op = c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: v.id.clone(), new_size_bytes: 2 * GIB }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        assert_eq!(libvirtd.disk_capacity("lq-cp-vm", "sda").unwrap(), 2 * GIB);
        assert_eq!(c.volume(&v.id).await.unwrap().state, pb::VolumeState::Attached as i32);

        let op = c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        assert!(!qemu_has(&libvirtd, "lq-cp-vm", &v.id), "QEMU released it");
        let detached = c.volume(&v.id).await.unwrap();
        assert_eq!(detached.state, pb::VolumeState::Available as i32);
        assert!(detached.attachment.is_none());
        let err = c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);

        // A VM that does not exist: the task fails NOT_FOUND, the volume is untouched.
        let op = c.volumes.attach_volume(attach("lq-no-such-vm")).await.unwrap().into_inner();
        let t = c.wait(&op.task_id).await;
        assert_eq!((t.state, t.error_code), (pb::TaskState::Failed as i32, Code::NotFound as i32), "{t:?}");
        assert!(t.error.contains("lq-no-such-vm"), "{t:?}");
        let after = c.volume(&v.id).await.unwrap();
        assert!(after.state == pb::VolumeState::Available as i32 && after.task_id.is_empty(), "{after:?}");

        // Crashes at every step of attach and detach.
        let points = [
            "volume.attach:attach-on-node:before",
            "volume.attach:attach-on-node:after",
            "volume.attach:finish:before",
            "volume.attach:finish:after",
            "volume.detach:detach-on-node:before",
            "volume.detach:detach-on-node:after",
            "volume.detach:finish:before",
        ];
        for fault in points {
            drop(c);
            cp.child.stop(Duration::from_secs(10));
            cp = spawn(&config, Some(fault));
            c = Clients::connect(&url).await;
            c.wait_node_online(&node_id).await;
            // Put the volume where the saga under test starts from.
            let is_attach = fault.starts_with("volume.attach");
            let current = c.volume(&v.id).await.unwrap();
            let attached_now = current.state == pb::VolumeState::Attached as i32;
            if attached_now == is_attach {
                cp.child.stop(Duration::from_secs(10));
                cp = spawn(&config, None);
                c = Clients::connect(&url).await;
                let op = if is_attach {
                    c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await
                } else {
                    c.volumes.attach_volume(attach("lq-cp-vm")).await
                };
                let task_id = op.unwrap().into_inner().task_id;
                c.wait_ok(&task_id).await;
                drop(c);
                cp.child.stop(Duration::from_secs(10));
                cp = spawn(&config, Some(fault));
                c = Clients::connect(&url).await;
                c.wait_node_online(&node_id).await;
            }
            let before = volume_tasks(&mut c, &v.id).await;
            let answer = if is_attach {
                c.volumes.attach_volume(attach("lq-cp-vm")).await
            } else {
                c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await
            };
            assert!(cp.child.wait_exit(Duration::from_secs(30)).is_some_and(|s| !s.success()), "{fault} did not fire");
            cp = spawn(&config, None);
            c = Clients::connect(&url).await;
            // The fault may kill the control plane before its answer leaves:
            // the task is then the volume's one that was not there before.
            let task_id = match answer {
                Ok(op) => op.into_inner().task_id,
                Err(e) if matches!(e.code(), Code::Unknown | Code::Unavailable) => {
                    let after = volume_tasks(&mut c, &v.id).await;
                    after.into_iter().find(|t| !before.contains(t)).unwrap_or_else(|| panic!("{fault}: no new task"))
                }
                Err(e) => panic!("{fault}: not accepted: {e:?}"),
            };
            let t = c.wait(&task_id).await;
            assert_eq!(t.state, pb::TaskState::Succeeded as i32, "{fault}: {t:?}");
            let now = c.volume(&v.id).await.unwrap();
            assert!(now.task_id.is_empty(), "{fault}: {now:?}");
            let attached_in_store = now.state == pb::VolumeState::Attached as i32;
            assert_eq!(attached_in_store, qemu_has(&libvirtd, "lq-cp-vm", &v.id), "{fault}: store and QEMU agree");
            assert_eq!(attached_in_store, fault.starts_with("volume.attach"), "{fault}: the saga finished its work");
        }
        drop(c);
        cp.child.stop(Duration::from_secs(10));
        node.stop().await.unwrap();
    });
}

#[test]
fn templates_and_bases_are_never_written_but_attach_read_only() {
    let libvirtd = Libvirtd::start().expect("private libvirtd");
    libvirtd.create_domain(&minimal_domain("lq-tpl-vm", "")).unwrap();
    let uri = libvirtd.uri().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut k = common::Cluster::start_with(|_| {}, |n| n.libvirt_uri = uri).await;
        let golden = k.c.create_volume("p1", "golden", GIB).await;
        let marked = k.c.volumes.mark_template(pb::MarkTemplateRequest { volume_id: golden.id.clone() }).await.unwrap().into_inner();
        assert!(marked.template);
        let again = k.c.volumes.mark_template(pb::MarkTemplateRequest { volume_id: golden.id.clone() }).await.unwrap().into_inner();
        assert!(again.template, "marking twice is harmless");

        let refused_as_template = |e: tonic::Status, what: &str| {
            assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e:?}");
            assert!(e.message().contains("template"), "{what}: {e:?}");
        };
        let resize = pb::ResizeVolumeRequest { volume_id: golden.id.clone(), new_size_bytes: 2 * GIB };
        refused_as_template(k.c.volumes.resize_volume(resize).await.unwrap_err(), "resize");
        let snap = pb::CreateSnapshotRequest { volume_id: golden.id.clone(), name: "s".into(), ..Default::default() };
        refused_as_template(k.c.volumes.create_snapshot(snap).await.unwrap_err(), "snapshot");
        let rw = pb::AttachVolumeRequest { volume_id: golden.id.clone(), vm: "lq-tpl-vm".into(), ..Default::default() };
        refused_as_template(k.c.volumes.attach_volume(rw.clone()).await.unwrap_err(), "read-write attach");

        // Linked clones come from it; a clone is an ordinary volume.
        let clone = pb::CloneVolumeRequest {
            source_volume_id: golden.id.clone(),
            name: "vm1-disk".into(),
            mode: pb::CloneMode::Linked as i32,
            ..Default::default()
        };
        let op = k.c.volumes.clone_volume(clone).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let child = k.c.volume(&op.volume.unwrap().id).await.unwrap();
        assert_eq!(child.backing_volume_id, golden.id);
        assert!(!child.template);

        // Read-only attach is how a VM uses it: QEMU gets <readonly/>.
        let ro = pb::AttachVolumeRequest { read_only: true, ..rw };
        let op = k.c.volumes.attach_volume(ro).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let attached = k.c.volume(&golden.id).await.unwrap();
        assert!(attached.attachment.as_ref().is_some_and(|a| a.read_only), "{attached:?}");
        let live = libvirtd.virsh(&["dumpxml", "lq-tpl-vm"]).unwrap();
        assert!(live.contains("<readonly/>") && qemu_has(&libvirtd, "lq-tpl-vm", &golden.id), "{live}");
        let op = k.c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: golden.id.clone() }).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;

        // A plain volume with a linked clone is a base: the same rules, naming the clone.
        let base = k.c.create_volume("p1", "base", GIB).await;
        let clone = pb::CloneVolumeRequest { source_volume_id: base.id.clone(), name: "c".into(), ..Default::default() };
        let op = k.c.volumes.clone_volume(clone).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        let c_id = op.volume.unwrap().id;
        let rw = pb::AttachVolumeRequest { volume_id: base.id.clone(), vm: "lq-tpl-vm".into(), ..Default::default() };
        let err = k.c.volumes.attach_volume(rw).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains(&c_id) && err.message().contains("read-only"), "names the clone and the way out: {err:?}");
        let revert = pb::RevertSnapshotRequest { volume_id: base.id.clone(), name: "s".into() };
        assert_eq!(k.c.volumes.revert_snapshot(revert).await.unwrap_err().code(), Code::NotFound, "no such snapshot comes first");
    });
}
