//! An iSCSI pool in direct mode through the control plane, against a real
//! tgt: the target's LUNs become volumes by themselves (adopted by the pool
//! refresh, named from their world-wide names), keep their ids when the
//! array renumbers its LUNs, go to error when the array stops presenting
//! them, cannot be made, grown or removed here, and leave with the pool.

mod common;

use std::time::{Duration, Instant};

use common::{Clients, create_req};
use limiquantix_api::v1 as pb;
use limiquantix_control::ControlPlane;
use limiquantix_testkit::Tgt;
use limiquantix_testkit::tgt::{CHAP_USER, TARGET};
use tonic::Code;

const MIB: u64 = 1 << 20;

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
            portal: tgt.portal(),
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
