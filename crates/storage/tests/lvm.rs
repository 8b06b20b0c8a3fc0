//! The typed LVM wrapper on a real loop device, with its private config
//! (metadata only: this kernel has no device-mapper): a group on the device,
//! volumes made, grown, listed and removed with sizes from LVM's JSON, a full
//! group refused as out of space, and nothing outside the device seen.

use std::time::Duration;

use limiquantix_storage::StorageError;
use limiquantix_storage::tools::lvm::Lvm;
use limiquantix_testkit::loopdev::LoopDevice;

const MIB: u64 = 1 << 20;

#[test]
fn a_volume_group_on_one_device_and_its_volumes() {
    let dev = LoopDevice::attach(256).unwrap();
    let conf = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let lvm = Lvm::new(conf.path(), &dev.path, false, Duration::from_secs(60)).unwrap();
        assert_eq!(lvm.vgs("lqvg").await.unwrap(), None, "only this device is seen, and it is empty");
        lvm.pvcreate().await.unwrap();
        lvm.vgcreate("lqvg").await.unwrap();
        let vg = lvm.vgs("lqvg").await.unwrap().expect("the group");
        assert!(vg.size_bytes > 200 * MIB && vg.free_bytes == vg.size_bytes && vg.extent_bytes == 4 * MIB, "{vg:?}");

        let lv = "lq-0b7c3a52-5bb4-4e69-8a43-0c1a3e0f7d11";
        lvm.lvcreate("lqvg", lv, 10 * MIB).await.unwrap();
        let taken = lvm.lvcreate("lqvg", lv, 10 * MIB).await.unwrap_err();
        assert!(matches!(taken, StorageError::AlreadyExists(_)), "{taken}");
        let listed = lvm.lvs("lqvg").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size_bytes), (lv, 12 * MIB), "rounded up to whole extents");
        assert_eq!(listed[0].path.to_str().unwrap(), format!("/dev/lqvg/{lv}"));
        assert_eq!(lvm.vgs("lqvg").await.unwrap().unwrap().free_bytes, vg.size_bytes - 12 * MIB);

        lvm.lvextend("lqvg", lv, 64 * MIB).await.unwrap();
        assert_eq!(lvm.lvs("lqvg").await.unwrap()[0].size_bytes, 64 * MIB);
        let full = lvm.lvcreate("lqvg", "lq-too-big", 1024 * MIB).await.unwrap_err();
        assert!(matches!(full, StorageError::ResourceExhausted(_)) && full.to_string().contains("full"), "{full}");
        assert_eq!(lvm.lvs("lqvg").await.unwrap().len(), 1, "the refused volume was not made");
        for bad in ["-rf", "a b", "vg/x"] {
            assert!(matches!(lvm.lvcreate("lqvg", bad, MIB).await, Err(StorageError::InvalidArgument(_))), "{bad}");
        }

        lvm.lvremove("lqvg", lv).await.unwrap();
        assert!(lvm.lvs("lqvg").await.unwrap().is_empty());
        assert!(matches!(lvm.lvremove("lqvg", lv).await, Err(StorageError::NotFound(_))));
        lvm.vgremove("lqvg").await.unwrap();
        assert_eq!(lvm.vgs("lqvg").await.unwrap(), None);
    });
    assert!(Lvm::new(conf.path(), std::path::Path::new("/dev/loop0|x"), false, Duration::from_secs(1)).is_err());
}
