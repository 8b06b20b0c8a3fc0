//! A volume copied into another pool of the same node (the data path of a
//! move): a linked clone arrives flattened with every byte its chain
//! shows, across kinds (local qcow2 → Ceph raw → local qcow2), and a
//! repeated copy finds the volume it made; bad requests change nothing.

use std::path::Path;

use limiquantix_storage::model::{
    CephPoolConfig, CloneMode, LocalPoolConfig, PoolConfig, Provisioning, Secret, VolumeFormat, VolumeSource, VolumeSpec,
};
use limiquantix_storage::{PoolId, StorageError, StorageManager, VolumeId};
use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;

mod common;

const MIB: u64 = 1 << 20;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn compare(a: &str, b: &str) -> bool {
    let out = std::process::Command::new("qemu-img").args(["compare", a, b]).output().unwrap();
    out.status.code() == Some(0)
}

fn local(root: &Path, name: &str) -> PoolConfig {
    PoolConfig::Local(LocalPoolConfig { path: root.join("pools").join(name) })
}

fn copy_of(pool: PoolId, volume: VolumeId) -> VolumeSource {
    VolumeSource::OtherPool { pool, volume, with_snapshots: false }
}

#[test]
fn a_linked_clone_copied_into_another_pool_arrives_flattened_and_whole() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("pools")).unwrap();
    rt().block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let (a, b) = (PoolId::new_random(), PoolId::new_random());
        m.init_pool(a, local(root.path(), "a")).await.unwrap();
        m.init_pool(b, local(root.path(), "b")).await.unwrap();
        let spec = VolumeSpec { size_bytes: Some(64 * MIB), format: Some(VolumeFormat::Qcow2), provisioning: Some(Provisioning::Thin) };
        let base = m.create_volume(a, VolumeId::new_random(), spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
        common::write_pattern(Path::new(&base.location), "qcow2", 0x11, 0, 8 * MIB);
        let clone_src = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
        let clone = m.create_volume(a, VolumeId::new_random(), VolumeSpec::default(), clone_src, &|_| {}).await.unwrap();
        common::write_pattern(Path::new(&clone.location), "qcow2", 0x22, 32 * MIB, 4 * MIB);

        // The same id in the other pool: what the clone reads, without a base.
        let events = common::Recorder::default();
        let copy = m.create_volume(b, clone.id, VolumeSpec::default(), copy_of(a, clone.id), &events.sink()).await.unwrap();
        assert_eq!((copy.id, copy.format, copy.size_bytes, copy.backing), (clone.id, VolumeFormat::Qcow2, 64 * MIB, None));
        assert!(copy.location.starts_with(&root.path().join("pools/b").display().to_string()), "{}", copy.location);
        assert!(compare(&clone.location, &copy.location), "the copy reads as the clone does");
        assert!(common::has_pattern(Path::new(&copy.location), "qcow2", 0x11, 0, 8 * MIB), "the base's data came along");
        assert!(common::image_info(Path::new(&copy.location)).get("backing-filename").is_none(), "no backing file");
        assert!(events.events().last().is_some_and(|p| p.done_bytes == p.total_bytes && p.total_bytes == 64 * MIB));
        // A retried copy finds it; the source is untouched.
        let again = m.create_volume(b, clone.id, VolumeSpec::default(), copy_of(a, clone.id), &|_| {}).await.unwrap();
        assert_eq!(again, copy);
        assert_eq!(m.get_volume(a, clone.id).await.unwrap().backing, Some(base.id));

        // Refusals, nothing made: the same pool, a volume that is not there, a smaller size.
        let err = m.create_volume(a, VolumeId::new_random(), VolumeSpec::default(), copy_of(a, base.id), &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
        let err = m.create_volume(b, VolumeId::new_random(), VolumeSpec::default(), copy_of(a, VolumeId::new_random()), &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
        let small = VolumeSpec { size_bytes: Some(MIB), ..Default::default() };
        let err = m.create_volume(b, base.id, small, copy_of(a, base.id), &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)) && err.to_string().contains("never shrink"), "{err}");
        assert_eq!(m.list_volumes(b, None, 100).await.unwrap().0.len(), 1, "only the copy is in pool b");

        // With its snapshots: a self-contained qcow2 arrives with them (its
        // file copied whole); a linked clone cannot (it would need its base).
        let snapshotted = m.create_volume(a, VolumeId::new_random(), spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
        common::write_pattern(Path::new(&snapshotted.location), "qcow2", 0x31, 0, 4 * MIB);
        m.create_snapshot(a, snapshotted.id, "first").await.unwrap();
        common::write_pattern(Path::new(&snapshotted.location), "qcow2", 0x32, 0, 4 * MIB);
        m.create_snapshot(a, snapshotted.id, "second").await.unwrap();
        common::write_pattern(Path::new(&snapshotted.location), "qcow2", 0x33, 0, 4 * MIB);
        let with = VolumeSource::OtherPool { pool: a, volume: snapshotted.id, with_snapshots: true };
        let kept = m.create_volume(b, snapshotted.id, VolumeSpec::default(), with, &|_| {}).await.unwrap();
        let names: Vec<String> = m.list_snapshots(b, kept.id).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["first", "second"], "the snapshots came along");
        assert!(common::has_pattern(Path::new(&kept.location), "qcow2", 0x33, 0, 4 * MIB), "and the current data");
        m.revert_snapshot(b, kept.id, "first").await.unwrap();
        assert!(common::has_pattern(Path::new(&kept.location), "qcow2", 0x31, 0, 4 * MIB), "a snapshot that moved reverts");
        let linked_with = VolumeSource::OtherPool { pool: a, volume: clone.id, with_snapshots: true };
        let err = m.create_volume(b, VolumeId::new_random(), VolumeSpec::default(), linked_with, &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains("linked clone"), "{err}");
        assert_eq!(m.list_volumes(b, None, 100).await.unwrap().0.len(), 2, "nothing else made in pool b");
    });
}

#[test]
fn a_volume_goes_from_a_file_to_ceph_and_back_byte_for_byte() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("pools")).unwrap();
    rt().block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let (files, rbd, back) = (PoolId::new_random(), PoolId::new_random(), PoolId::new_random());
        m.init_pool(files, local(root.path(), "files")).await.unwrap();
        m.init_pool(back, local(root.path(), "back")).await.unwrap();
        let config = CephPoolConfig {
            monitors: vec![ceph.monitor()],
            ceph_pool: TEST_POOL.into(),
            client_id: "admin".into(),
            rados_namespace: String::new(),
            create_if_missing: false,
            key: Secret::new(ceph.admin_key().to_owned()),
        };
        m.init_pool(rbd, PoolConfig::Ceph(config)).await.unwrap();

        let spec = VolumeSpec { size_bytes: Some(32 * MIB), format: Some(VolumeFormat::Qcow2), provisioning: Some(Provisioning::Thin) };
        let v = m.create_volume(files, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.unwrap();
        common::write_pattern(Path::new(&v.location), "qcow2", 0x5a, 4 * MIB, 6 * MIB);

        let on_ceph = m.create_volume(rbd, v.id, VolumeSpec::default(), copy_of(files, v.id), &|_| {}).await.unwrap();
        assert_eq!((on_ceph.format, on_ceph.size_bytes), (VolumeFormat::Raw, 32 * MIB), "Ceph keeps raw images");
        let rbd_name = format!("rbd:{TEST_POOL}/lq-{}:conf={}:id=admin", v.id, ceph.conf().display());
        assert!(compare(&v.location, &rbd_name), "the RBD image holds the file's data");

        let home = m.create_volume(back, v.id, VolumeSpec::default(), copy_of(rbd, v.id), &|_| {}).await.unwrap();
        assert_eq!(home.format, VolumeFormat::Qcow2, "the pool's default format");
        assert!(compare(&v.location, &home.location), "and back again");
    });
}
