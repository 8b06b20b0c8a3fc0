//! An iSCSI pool in direct mode through the control plane, against a real
//! tgt: the target's LUNs become volumes by themselves (adopted by the pool
//! refresh, named from their world-wide names), take an image written over
//! them once the caller confirms it, keep their ids when the array
//! renumbers its LUNs, go to error when the array stops presenting them,
//! cannot be made, grown or removed here, and leave with the pool.

mod common;

use std::time::{Duration, Instant};

use common::{Clients, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_testkit::Tgt;
use limiquantix_testkit::tgt::{CHAP_USER, TARGET};
use tonic::Code;

const MIB: u64 = 1 << 20;

fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn volumes(c: &mut Clients) -> Vec<pb::Volume> {
    let req = pb::ListVolumesRequest { pool: "san".into(), ..Default::default() };
    let mut v = c.volumes.list_volumes(req).await.unwrap().into_inner().volumes;
    v.sort_by_key(|v| v.size_bytes);
    v
}

async fn wait_for(c: &mut Clients, what: &str, done: impl Fn(&[pb::Volume]) -> bool) -> Vec<pb::Volume> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = volumes(c).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_targets_luns_become_volumes_and_change_only_on_the_array() {
    let tgt = Tgt::start(&[64, 32]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = common::control_config(root.path());
        config.pool_refresh_secs = 1;
        let cp = ControlPlane::start(&config).await.unwrap();
        let mut c = Clients::connect(&cp.url()).await;
        let (node, node_id) = common::start_node(root.path(), "n1", &cp.url(), |_| {}).await;
        c.wait_node_online(&node_id).await;

        let iscsi = pb::IscsiPoolConfig {
            portals: vec![tgt.portal()],
            target_iqn: TARGET.into(),
            initiator_iqn: "iqn.2024-01.io.limiquantix.test:node1".into(),
            chap_username: CHAP_USER.into(),
            chap_password: tgt.chap_secret().into(),
            mode: pb::IscsiMode::Direct as i32,
            ..Default::default()
        };
        let req = pb::CreatePoolRequest { name: "san".into(), config: Some(pb::PoolConfig { backend: Some(pb::pool_config::Backend::Iscsi(iscsi)) }), ..Default::default() };
        let op = c.pools.create_pool(req).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "san".into() }).await.unwrap().into_inner();
        assert!(pool.capabilities.as_ref().unwrap().array_managed, "{pool:?}");

        // The LUNs appear as volumes, named from their ids.
        let found = wait_for(&mut c, "the LUNs appear", |v| v.len() == 2).await;
        assert_eq!(found.iter().map(|v| v.size_bytes).collect::<Vec<_>>(), [32 * MIB, 64 * MIB]);
        for v in &found {
            assert_eq!(v.name, format!("lun-{}", &v.id[..8]));
            assert_eq!(v.state, pb::VolumeState::Available as i32);
        }
        let big = found[1].clone();

        // Made, grown and removed on the array only.
        let refused = c.volumes.create_volume(create_req("san", "mine", MIB)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.message().contains("LUNs of its storage array"), "{refused:?}");
        let grow = pb::ResizeVolumeRequest { volume_id: big.id.clone(), new_size_bytes: 128 * MIB };
        assert_eq!(c.volumes.resize_volume(grow).await.unwrap_err().code(), Code::FailedPrecondition);
        let del = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: big.id.clone() }).await.unwrap_err();
        assert_eq!(del.code(), Code::FailedPrecondition);

        // An image written over an unused LUN, once the caller confirms it;
        // zeros in the image overwrite what the LUN held.
        let small = found[0].clone();
        let images = root.path().join("n1/node/images");
        let image = images.join("disk.qcow2");
        run(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("16M"));
        run(std::process::Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0xab 0 4M", "-c", "write -P 0xcd 12M 1M"]).arg(&image));
        let too_big = images.join("big.qcow2");
        run(std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&too_big).arg("48M"));
        std::fs::write(tgt.disk_file(2), vec![0xff; 8 << 20]).unwrap();
        std::fs::File::options().write(true).open(tgt.disk_file(2)).unwrap().set_len(32 * MIB).unwrap();
        let onto = |path: &std::path::Path, overwrite: bool| pb::ImportVolumeRequest {
            onto_volume_id: small.id.clone(),
            overwrite,
            node_id: node_id.clone(),
            path: path.display().to_string(),
            format: pb::ImageFormat::Qcow2 as i32,
            ..Default::default()
        };
        let unconfirmed = c.volumes.import_volume(onto(&image, false)).await.unwrap_err();
        assert_eq!(unconfirmed.code(), Code::FailedPrecondition, "{unconfirmed:?}");
        assert!(unconfirmed.message().contains("replaces everything"), "{unconfirmed:?}");
        let bigger = c.volumes.import_volume(onto(&too_big, true)).await.unwrap_err();
        assert_eq!(bigger.code(), Code::InvalidArgument, "{bigger:?}");
        assert_eq!(c.volume(&small.id).await.unwrap().state, pb::VolumeState::Available as i32, "refusals change nothing");
        let watch = limiquantix_testkit::argv_watch::ArgvWatch::start(tgt.chap_secret());
        let op = c.volumes.import_volume(onto(&image, true)).await.unwrap().into_inner();
        assert_eq!(op.volume.as_ref().unwrap().state, pb::VolumeState::Writing as i32);
        c.wait_ok(&op.task_id).await;
        let (leaks, programs) = watch.finish();
        assert!(leaks.is_empty(), "the CHAP secret on a command line: {leaks:?}");
        assert!(programs.contains("qemu-img"), "the watch saw the copy run: {programs:?}");
        let written = c.volume(&small.id).await.unwrap();
        assert_eq!((written.state, written.size_bytes), (pb::VolumeState::Available as i32, 32 * MIB));
        let compare = std::process::Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "raw"])
            .arg(&image)
            .arg(tgt.disk_file(2))
            .output()
            .unwrap();
        assert!(compare.status.success(), "the LUN holds the image: {}", String::from_utf8_lossy(&compare.stdout));
        let local = c.pools.create_pool(pb::CreatePoolRequest {
            name: "local".into(),
            node_ids: vec![node_id.clone()],
            config: Some(pb::PoolConfig { backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: root.path().join("n1/node/pools/l").display().to_string() })) }),
            ..Default::default()
        });
        let op = local.await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let mine = c.create_volume("local", "mine", MIB).await;
        let not_a_lun = c.volumes.import_volume(pb::ImportVolumeRequest { onto_volume_id: mine.id.clone(), ..onto(&image, true) }).await.unwrap_err();
        assert_eq!(not_a_lun.code(), Code::FailedPrecondition, "{not_a_lun:?}");
        let op = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: mine.id.clone() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let op = c.pools.delete_pool(pb::DeletePoolRequest { pool: "local".into() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;

        // Renumbered on the array: the same volumes, the same sizes.
        tgt.swap_luns(1, 2).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = volumes(&mut c).await;
        assert_eq!(after.iter().map(|v| (v.id.clone(), v.size_bytes)).collect::<Vec<_>>(), found.iter().map(|v| (v.id.clone(), v.size_bytes)).collect::<Vec<_>>());

        // A LUN the array stops presenting: its volume goes to error, it is not forgotten.
        tgt.tgtadm(&["--mode", "logicalunit", "--op", "delete", "--tid", "1", "--lun", "2"]).unwrap();
        let gone = wait_for(&mut c, "the removed LUN's volume goes to error", |v| v.iter().any(|v| v.state == pb::VolumeState::Error as i32)).await;
        let lost = gone.iter().find(|v| v.state == pb::VolumeState::Error as i32).unwrap();
        assert_eq!(lost.id, big.id, "LUN 2 held the 64 MiB disk after the swap");
        assert!(lost.message.contains("no longer presents"), "{lost:?}");

        // The pool goes, and the records of the array's volumes with it.
        let op = c.pools.delete_pool(pb::DeletePoolRequest { pool: "san".into() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let left = c.volumes.list_volumes(pb::ListVolumesRequest::default()).await.unwrap().into_inner().volumes;
        assert!(left.is_empty(), "{left:?}");
        node.stop().await.unwrap();
        cp.stop_within(Duration::from_secs(5)).await.unwrap();
    });
}

/// LVM mode through the control plane: a volume group on a logged-in LUN
/// (iscsiadm's login stood in for, see testkit's iscsi_login), thick raw
/// volumes, no snapshots; and the pool's metadata changed by one task at a
/// time: a create waits while another task holds the pool's lock, and takes
/// over a lock whose task has ended.
#[test]
fn lvm_mode_volumes_are_made_one_metadata_change_at_a_time() {
    use limiquantix_control::{keys, pool_locks, repo::Txn};
    use limiquantix_testkit::iscsi_login::LoginShim;
    use limiquantix_testkit::loopdev::LoopDevice;

    let tgt = Tgt::start(&[128]).unwrap();
    let lun = LoopDevice::over(&tgt.disk_file(1)).unwrap();
    let shim = LoginShim::new(&[(1, &lun.path)]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cp = ControlPlane::start(&common::control_config(root.path())).await.unwrap();
        let mut c = Clients::connect(&cp.url()).await;
        let (node, node_id) = common::start_node(root.path(), "n1", &cp.url(), |n| {
            n.iscsi.iscsiadm = shim.program().display().to_string();
            n.iscsi.nodes_dir = shim.nodes_dir();
            n.iscsi.by_path_dir = shim.by_path_dir();
        })
        .await;
        c.wait_node_online(&node_id).await;

        // Two portals, the first dead; mutual CHAP: both secrets travel to the node and come back from no API.
        let mutual = tgt.add_mutual_chap().unwrap();
        let dead = format!("127.0.0.1:{}", limiquantix_testkit::free_port().unwrap());
        let iscsi = pb::IscsiPoolConfig {
            portals: vec![dead.clone(), tgt.portal()],
            target_iqn: TARGET.into(),
            lun: 1,
            initiator_iqn: "iqn.2024-01.io.limiquantix.test:node1".into(),
            chap_username: CHAP_USER.into(),
            chap_password: tgt.chap_secret().into(),
            mode: pb::IscsiMode::Lvm as i32,
            volume_group: "lqsan".into(),
            create_volume_group: true,
            mutual_chap_username: limiquantix_testkit::tgt::MUTUAL_CHAP_USER.into(),
            mutual_chap_password: mutual.clone(),
        };
        let req = pb::CreatePoolRequest { name: "san".into(), config: Some(pb::PoolConfig { backend: Some(pb::pool_config::Backend::Iscsi(iscsi)) }), ..Default::default() };
        let op = c.pools.create_pool(req).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        let pool = c.pools.get_pool(pb::GetPoolRequest { pool: "san".into() }).await.unwrap().into_inner();
        let Some(pb::pool_config::Backend::Iscsi(shown)) = pool.config.clone().and_then(|c| c.backend) else { panic!("{pool:?}") };
        assert_eq!(shown.portals, [dead, tgt.portal()]);
        assert_eq!(shown.mutual_chap_username, limiquantix_testkit::tgt::MUTUAL_CHAP_USER);
        assert!(shown.chap_password.is_empty() && shown.mutual_chap_password.is_empty(), "secrets are write-only");
        let record = shim.nodes_dir().join(TARGET).join(tgt.portal().replace(':', ","));
        assert!(std::fs::read_to_string(&record).unwrap().contains(&format!("node.session.auth.password_in = {mutual}")));
        let caps = pool.capabilities.clone().unwrap();
        assert!(caps.one_metadata_writer && !caps.array_managed && !caps.snapshots && !caps.thin_provisioning, "{caps:?}");
        assert!(pool.capacity.as_ref().unwrap().total_bytes > 120 * MIB, "{pool:?}");

        // Thick raw volumes in whole extents; no snapshots on plain LVM.
        let v = c.create_volume("san", "db", 10 * MIB).await;
        assert_eq!((v.size_bytes, v.format), (12 * MIB, pb::VolumeFormat::Raw as i32));
        let snap = pb::CreateSnapshotRequest { volume_id: v.id.clone(), name: "s1".into(), ..Default::default() };
        let refused = c.volumes.create_snapshot(snap).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

        // Another task holds the pool's lock: a create waits, saying for whom.
        let repo = &cp.app.repo;
        let holder = "5d1c8f3e-2f4b-4c1e-9a6d-0b1c2d3e4f50";
        let mut task = pb::Task { id: holder.into(), kind: "volume.create".into(), state: pb::TaskState::Running as i32, ..Default::default() };
        let mut txn = Txn::new();
        txn.put(keys::task(holder), &task);
        txn.commit(repo).await.unwrap();
        assert_eq!(pool_locks::try_take(repo, &pool.id, holder).await.unwrap(), None);
        let op = c.volumes.create_volume(create_req("san", "web", 4 * MIB)).await.unwrap().into_inner();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
            assert_eq!(t.state, pb::TaskState::Running as i32, "the create did not wait: {t:?}");
            if t.step.contains(holder) {
                break;
            }
            assert!(Instant::now() < deadline, "the waiting task does not say for whom: {t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(c.volume(&op.volume.as_ref().unwrap().id).await.unwrap().state, pb::VolumeState::Creating as i32);
        pool_locks::release(repo, &pool.id, holder).await.unwrap();
        c.wait_ok(&op.task_id).await;

        // A lock left by a task that ended (a crash while it held it) is taken over.
        assert_eq!(pool_locks::try_take(repo, &pool.id, holder).await.unwrap(), None);
        task.state = pb::TaskState::Failed as i32;
        let mut txn = Txn::new();
        txn.put(keys::task(holder), &task);
        txn.commit(repo).await.unwrap();
        let web = c.volumes.list_volumes(pb::ListVolumesRequest { name_prefix: "web".into(), ..Default::default() }).await.unwrap().into_inner().volumes;
        let grow = pb::ResizeVolumeRequest { volume_id: web[0].id.clone(), new_size_bytes: 9 * MIB };
        let op = c.volumes.resize_volume(grow).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        assert_eq!(c.volume(&web[0].id).await.unwrap().size_bytes, 12 * MIB);
        assert!(repo.get_raw(&keys::pool_lock(&pool.id)).await.unwrap().is_none(), "released after the resize");

        for id in [&v.id, &web[0].id] {
            let op = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: id.to_string() }).await.unwrap().into_inner();
            c.wait_ok(&op.task_id).await;
        }
        let op = c.pools.delete_pool(pb::DeletePoolRequest { pool: "san".into() }).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        assert!(shim.links().is_empty(), "logged out: {:?}", shim.links());
        node.stop().await.unwrap();
        cp.stop_within(Duration::from_secs(5)).await.unwrap();
    });
}
