//! Internal qcow2 snapshots: create, list, revert, delete, copy from one.

mod common;

use common::{Fixture, has_pattern, image_info, write_pattern};
use limiquantix_storage::model::{VolumeFormat, VolumeSource, VolumeSpec};
use limiquantix_storage::{Name, StorageError, VolumeId};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[tokio::test]
async fn snapshot_revert_brings_back_the_data_of_that_moment() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Qcow2).await;
    let path = f.path_of(&v);
    write_pattern(&path, "qcow2", 0xaa, 0, MIB);
    let snap = f.manager.create_snapshot(f.pool, v.id, "before-upgrade").await.unwrap();
    assert_eq!(snap.name, "before-upgrade");
    assert!(snap.created_unix_seconds > 1_700_000_000);
    write_pattern(&path, "qcow2", 0xbb, 0, MIB);
    assert!(has_pattern(&path, "qcow2", 0xbb, 0, MIB));

    let reverted = f.manager.revert_snapshot(f.pool, v.id, "before-upgrade").await.unwrap();
    assert_eq!(reverted.snapshot_count, 1);
    assert!(has_pattern(&path, "qcow2", 0xaa, 0, MIB), "revert restored the snapshot's data");

    let listed = f.manager.list_snapshots(f.pool, v.id).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["before-upgrade"]);
    assert_eq!(image_info(&path)["snapshots"][0]["name"], "before-upgrade");

    f.manager.delete_snapshot(f.pool, v.id, "before-upgrade").await.unwrap();
    assert!(f.manager.list_snapshots(f.pool, v.id).await.unwrap().is_empty());
    // Idempotent: deleting again, or a snapshot of a deleted volume, succeeds.
    f.manager.delete_snapshot(f.pool, v.id, "before-upgrade").await.unwrap();
    f.manager.delete_snapshot(f.pool, VolumeId::new_random(), "before-upgrade").await.unwrap();
}

#[tokio::test]
async fn creating_the_same_snapshot_twice_returns_the_first() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Qcow2).await;
    let a = f.manager.create_snapshot(f.pool, v.id, "s1").await.unwrap();
    let b = f.manager.create_snapshot(f.pool, v.id, "s1").await.unwrap();
    assert_eq!(a, b);
    assert_eq!(f.manager.list_snapshots(f.pool, v.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reverting_a_missing_snapshot_is_not_found_and_changes_nothing() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Qcow2).await;
    write_pattern(&f.path_of(&v), "qcow2", 0x33, 0, MIB);
    let err = f.manager.revert_snapshot(f.pool, v.id, "nope").await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    assert!(has_pattern(&f.path_of(&v), "qcow2", 0x33, 0, MIB));
}

#[tokio::test]
async fn raw_volumes_have_no_snapshots() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Raw).await;
    let before = f.listing();
    let err = f.manager.create_snapshot(f.pool, v.id, "s1").await.unwrap_err();
    assert!(matches!(err, StorageError::FailedPrecondition(_)), "{err}");
    assert!(err.to_string().contains("qcow2"), "the error says what to do: {err}");
    assert!(f.manager.list_snapshots(f.pool, v.id).await.unwrap().is_empty());
    assert_eq!(f.listing(), before);
}

#[tokio::test]
async fn snapshot_names_follow_the_name_rules() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Qcow2).await;
    let long = "a".repeat(64);
    for bad in ["", "a/b", "..", "../x", "a b", "<x>", "a&b", "it's", "\"q\"", "-rf", long.as_str(), "Snap", "12"] {
        let err = f.manager.create_snapshot(f.pool, v.id, bad).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{bad:?}: {err}");
        assert!(matches!(f.manager.revert_snapshot(f.pool, v.id, bad).await, Err(StorageError::InvalidArgument(_))) || bad == "12");
    }
    assert!(f.manager.list_snapshots(f.pool, v.id).await.unwrap().is_empty());
    assert_eq!(image_info(&f.path_of(&v)).get("snapshots"), None);
}

#[tokio::test]
async fn a_volume_can_be_created_from_a_snapshot() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Qcow2).await;
    write_pattern(&f.path_of(&v), "qcow2", 0x01, 0, MIB);
    f.manager.create_snapshot(f.pool, v.id, "monday").await.unwrap();
    write_pattern(&f.path_of(&v), "qcow2", 0x02, 0, MIB);

    let name = Name::parse("snapshot", "monday").unwrap();
    let source = VolumeSource::Snapshot { volume: v.id, name };
    let restored = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await.unwrap();
    assert_eq!(restored.size_bytes, GIB);
    assert_eq!(restored.snapshot_count, 0);
    assert!(has_pattern(&f.path_of(&restored), "qcow2", 0x01, 0, MIB), "the snapshot's data, not the current");
    assert!(has_pattern(&f.path_of(&v), "qcow2", 0x02, 0, MIB), "the source is untouched");

    let missing = VolumeSource::Snapshot { volume: v.id, name: Name::parse("snapshot", "tuesday").unwrap() };
    let before = f.listing();
    let err = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), missing, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    assert_eq!(f.listing(), before);
}
