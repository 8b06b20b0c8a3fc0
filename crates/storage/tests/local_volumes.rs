//! Local-directory volumes through the StorageManager, against real qemu-img.

mod common;

use common::{Fixture, Recorder, has_pattern, image_info, write_pattern};
use limiquantix_storage::model::{CloneMode, Provisioning, VolumeFormat, VolumeSource, VolumeSpec};
use limiquantix_storage::{StorageError, VolumeId};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[tokio::test]
async fn thin_qcow2_is_the_default_and_sparse() {
    let f = Fixture::new().await;
    let spec = VolumeSpec { size_bytes: Some(10 * GIB), ..Default::default() };
    let v = f.create_spec(spec).await;
    assert_eq!(v.format, VolumeFormat::Qcow2);
    assert_eq!(v.size_bytes, 10 * GIB);
    assert!(v.allocated_bytes < 10 * MIB, "thin volume allocated {}", v.allocated_bytes);
    let info = image_info(&f.path_of(&v));
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 10 * GIB);
    assert_eq!(f.path_of(&v).file_name().unwrap().to_string_lossy(), format!("lq-{}.qcow2", v.id));
    assert_eq!(f.manager.get_volume(f.pool, v.id).await.unwrap(), v);
}

#[tokio::test]
async fn thick_volumes_reserve_their_space() {
    let f = Fixture::new().await;
    for format in [VolumeFormat::Raw, VolumeFormat::Qcow2] {
        let spec = VolumeSpec { size_bytes: Some(64 * MIB), format: Some(format), provisioning: Some(Provisioning::Thick) };
        let v = f.create_spec(spec).await;
        assert!(v.allocated_bytes >= 64 * MIB, "{format} thick allocated only {}", v.allocated_bytes);
    }
}

#[tokio::test]
async fn thick_volume_larger_than_free_space_is_refused_and_nothing_is_created() {
    let f = Fixture::new().await;
    let before = f.listing();
    let free = f.manager.pool_report(f.pool).await.unwrap().capacity.unwrap().free_bytes;
    let too_big = (free / 512 + 1024) * 512;
    let spec = VolumeSpec { size_bytes: Some(too_big), format: Some(VolumeFormat::Raw), provisioning: Some(Provisioning::Thick) };
    let err = f
        .manager
        .create_volume(f.pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::ResourceExhausted(_)), "{err}");
    assert!(err.to_string().contains("free"), "{err}");
    assert_eq!(f.listing(), before);
}

#[tokio::test]
async fn bad_sizes_are_refused_and_nothing_is_created() {
    let f = Fixture::new().await;
    let before = f.listing();
    for size in [0u64, 1000, (1 << 63) + 512, u64::MAX - 511] {
        let spec = VolumeSpec { size_bytes: Some(size), ..Default::default() };
        let err = f
            .manager
            .create_volume(f.pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{size}: {err}");
    }
    // An empty volume without a size (size 0 on the wire) is refused too.
    let err = f
        .manager
        .create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), VolumeSource::Empty, &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a size"), "{err}");
    assert_eq!(f.listing(), before);
}

#[tokio::test]
async fn create_is_idempotent_for_the_same_spec_only() {
    let f = Fixture::new().await;
    let id = VolumeId::new_random();
    let spec = VolumeSpec { size_bytes: Some(GIB), format: Some(VolumeFormat::Qcow2), ..Default::default() };
    let first = f.manager.create_volume(f.pool, id, spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
    write_pattern(&f.path_of(&first), "qcow2", 0x5a, 0, MIB);
    let again = f.manager.create_volume(f.pool, id, spec, VolumeSource::Empty, &|_| {}).await.unwrap();
    assert_eq!(again.id, first.id);
    assert!(has_pattern(&f.path_of(&again), "qcow2", 0x5a, 0, MIB), "a retried create must not wipe data");

    let other = VolumeSpec { size_bytes: Some(2 * GIB), format: Some(VolumeFormat::Qcow2), ..Default::default() };
    let err = f.manager.create_volume(f.pool, id, other, VolumeSource::Empty, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    let raw = VolumeSpec { size_bytes: Some(GIB), format: Some(VolumeFormat::Raw), ..Default::default() };
    let err = f.manager.create_volume(f.pool, id, raw, VolumeSource::Empty, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    assert_eq!(f.listing().len(), 1, "no second file for the same id: {:?}", f.listing());
}

#[tokio::test]
async fn resize_grows_and_never_shrinks() {
    let f = Fixture::new().await;
    for format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
        let v = f.create(GIB, format).await;
        write_pattern(&f.path_of(&v), format.as_str(), 0x11, 0, MIB);
        let grown = f.manager.resize_volume(f.pool, v.id, 3 * GIB, None).await.unwrap();
        assert_eq!(grown.size_bytes, 3 * GIB);
        assert_eq!(image_info(&f.path_of(&v))["virtual-size"], 3 * GIB);
        assert!(has_pattern(&f.path_of(&v), format.as_str(), 0x11, 0, MIB));

        let same = f.manager.resize_volume(f.pool, v.id, 3 * GIB, None).await.unwrap();
        assert_eq!(same.size_bytes, 3 * GIB);

        let before = f.listing();
        let err = f.manager.resize_volume(f.pool, v.id, GIB, None).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("shrink"), "{err}");
        assert_eq!(image_info(&f.path_of(&v))["virtual-size"], 3 * GIB);
        assert_eq!(f.listing(), before);
        for bad in [0, 1000, u64::MAX] {
            assert!(matches!(f.manager.resize_volume(f.pool, v.id, bad, None).await, Err(StorageError::InvalidArgument(_))));
        }
    }
}

#[tokio::test]
async fn thick_volumes_stay_thick_when_grown() {
    let f = Fixture::new().await;
    let spec = VolumeSpec { size_bytes: Some(32 * MIB), format: Some(VolumeFormat::Raw), provisioning: Some(Provisioning::Thick) };
    let v = f.create_spec(spec).await;
    let grown = f.manager.resize_volume(f.pool, v.id, 96 * MIB, None).await.unwrap();
    assert!(grown.allocated_bytes >= 96 * MIB, "grown thick volume allocated {}", grown.allocated_bytes);
}

#[tokio::test]
async fn linked_clone_records_a_relative_backing_file_and_its_format() {
    let f = Fixture::new().await;
    for base_format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
        let base = f.create(GIB, base_format).await;
        write_pattern(&f.path_of(&base), base_format.as_str(), 0x42, 0, MIB);
        let clone_id = VolumeId::new_random();
        let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
        let clone = f.manager.create_volume(f.pool, clone_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
        assert_eq!(clone.backing, Some(base.id));
        assert_eq!(clone.format, VolumeFormat::Qcow2);
        assert_eq!(clone.size_bytes, GIB);
        let info = image_info(&f.path_of(&clone));
        let base_name = format!("lq-{}.{}", base.id, base_format);
        assert_eq!(info["backing-filename"], base_name.as_str(), "relative, so the pool can move");
        assert_eq!(info["backing-filename-format"], base_format.as_str());
        assert!(has_pattern(&f.path_of(&clone), "qcow2", 0x42, 0, MIB), "the clone reads the base's data");
        assert!(clone.allocated_bytes < 2 * MIB);
    }
}

#[tokio::test]
async fn clone_is_linked_by_default_and_can_be_grown() {
    let f = Fixture::new().await;
    let base = f.create(GIB, VolumeFormat::Qcow2).await;
    let spec = VolumeSpec { size_bytes: Some(2 * GIB), ..Default::default() };
    let source = VolumeSource::Clone { source: base.id, mode: None };
    let clone = f.manager.create_volume(f.pool, VolumeId::new_random(), spec, source, &|_| {}).await.unwrap();
    assert_eq!(clone.backing, Some(base.id));
    assert_eq!(clone.size_bytes, 2 * GIB);

    let smaller = VolumeSpec { size_bytes: Some(GIB / 2), ..Default::default() };
    let source = VolumeSource::Clone { source: base.id, mode: None };
    let err = f.manager.create_volume(f.pool, VolumeId::new_random(), smaller, source, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");

    let thick = VolumeSpec { provisioning: Some(Provisioning::Thick), ..Default::default() };
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
    let err = f.manager.create_volume(f.pool, VolumeId::new_random(), thick, source, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn a_base_with_linked_clones_cannot_be_deleted_or_reverted() {
    let f = Fixture::new().await;
    let base = f.create(GIB, VolumeFormat::Qcow2).await;
    f.manager.create_snapshot(f.pool, base.id, "golden").await.unwrap();
    let mut clones = Vec::new();
    for _ in 0..2 {
        let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
        let c = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await.unwrap();
        clones.push(c.id);
    }
    let before = f.listing();
    let err = f.manager.delete_volume(f.pool, base.id).await.unwrap_err();
    assert!(matches!(err, StorageError::FailedPrecondition(_)), "{err}");
    for c in &clones {
        assert!(err.to_string().contains(&c.to_string()), "the error lists dependent {c}: {err}");
    }
    let err = f.manager.revert_snapshot(f.pool, base.id, "golden").await.unwrap_err();
    assert!(matches!(err, StorageError::FailedPrecondition(_)), "{err}");
    assert_eq!(f.listing(), before);

    for c in &clones {
        f.manager.delete_volume(f.pool, *c).await.unwrap();
    }
    f.manager.delete_volume(f.pool, base.id).await.unwrap();
    assert!(f.listing().is_empty(), "{:?}", f.listing());
}

#[tokio::test]
async fn delete_is_idempotent() {
    let f = Fixture::new().await;
    let v = f.create(GIB, VolumeFormat::Raw).await;
    f.manager.delete_volume(f.pool, v.id).await.unwrap();
    assert!(!f.path_of(&v).exists());
    f.manager.delete_volume(f.pool, v.id).await.unwrap();
    let err = f.manager.get_volume(f.pool, v.id).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn full_clone_is_an_independent_sparse_copy_with_progress() {
    let f = Fixture::new().await;
    let base = f.create(2 * GIB, VolumeFormat::Qcow2).await;
    write_pattern(&f.path_of(&base), "qcow2", 0x77, 0, 4 * MIB);
    write_pattern(&f.path_of(&base), "qcow2", 0x78, GIB, 4 * MIB);
    let rec = Recorder::default();
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Full) };
    let sink = rec.sink();
    let copy = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &sink).await.unwrap();
    assert_eq!(copy.backing, None);
    assert_eq!(copy.size_bytes, 2 * GIB);
    assert_eq!(copy.format, VolumeFormat::Qcow2);
    assert!(copy.allocated_bytes < 64 * MIB, "sparse copy allocated {}", copy.allocated_bytes);
    assert!(has_pattern(&f.path_of(&copy), "qcow2", 0x77, 0, 4 * MIB));
    assert!(has_pattern(&f.path_of(&copy), "qcow2", 0x78, GIB, 4 * MIB));
    assert!(has_pattern(&f.path_of(&copy), "qcow2", 0, 512 * MIB, MIB), "holes stay zero");

    assert_progress_completes(&rec, 8 * MIB);

    // Independent: the base can go, the copy keeps its data.
    f.manager.delete_volume(f.pool, base.id).await.unwrap();
    assert!(has_pattern(&f.path_of(&copy), "qcow2", 0x77, 0, 4 * MIB));
}

/// Progress reports a constant total of at least `min_total`, never goes back, and ends done.
fn assert_progress_completes(rec: &Recorder, min_total: u64) {
    let events = rec.events();
    assert!(events.len() >= 2, "{events:?}");
    let total = events[0].total_bytes;
    assert!(total >= min_total, "{events:?}");
    assert!(events.iter().all(|p| p.total_bytes == total && p.done_bytes <= total && p.phase == "copying"), "{events:?}");
    assert!(events.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes), "progress never goes back: {events:?}");
    assert_eq!(events.last().unwrap().done_bytes, total, "{events:?}");
}

#[tokio::test]
async fn full_clone_of_a_linked_clone_flattens_it_and_may_change_format() {
    let f = Fixture::new().await;
    let base = f.create(GIB, VolumeFormat::Qcow2).await;
    write_pattern(&f.path_of(&base), "qcow2", 0x21, 0, MIB);
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
    let linked = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await.unwrap();
    write_pattern(&f.path_of(&linked), "qcow2", 0x22, MIB, MIB);
    let spec = VolumeSpec { format: Some(VolumeFormat::Raw), ..Default::default() };
    let source = VolumeSource::Clone { source: linked.id, mode: Some(CloneMode::Full) };
    let rec = Recorder::default();
    let sink = rec.sink();
    let flat = f.manager.create_volume(f.pool, VolumeId::new_random(), spec, source, &sink).await.unwrap();
    assert_progress_completes(&rec, GIB);
    assert_eq!(flat.format, VolumeFormat::Raw);
    assert_eq!(flat.backing, None);
    assert!(has_pattern(&f.path_of(&flat), "raw", 0x21, 0, MIB));
    assert!(has_pattern(&f.path_of(&flat), "raw", 0x22, MIB, MIB));
}

#[tokio::test]
async fn unknown_pool_and_unknown_volumes_are_not_found() {
    let f = Fixture::new().await;
    let missing_pool = limiquantix_storage::PoolId::new_random();
    let err = f.manager.get_volume(missing_pool, VolumeId::new_random()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)) && err.to_string().contains("InitStoragePool"), "{err}");
    let spec = VolumeSpec { size_bytes: Some(GIB), ..Default::default() };
    let err = f.manager.create_volume(missing_pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");

    let ghost = VolumeId::new_random();
    assert!(matches!(f.manager.resize_volume(f.pool, ghost, GIB, None).await, Err(StorageError::NotFound(_))));
    assert!(matches!(f.manager.create_snapshot(f.pool, ghost, "s").await, Err(StorageError::NotFound(_))));
    assert!(matches!(f.manager.list_snapshots(f.pool, ghost).await, Err(StorageError::NotFound(_))));
    let source = VolumeSource::Clone { source: ghost, mode: None };
    let err = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    assert!(f.listing().is_empty());
}

#[tokio::test]
async fn capacity_is_the_file_systems_and_counting_is_on_request() {
    let f = Fixture::new().await;
    let a = f.create(GIB, VolumeFormat::Qcow2).await;
    let spec = VolumeSpec { size_bytes: Some(16 * MIB), format: Some(VolumeFormat::Raw), provisioning: Some(Provisioning::Thick) };
    let b = f.create_spec(spec).await;
    let cap = f.manager.pool_report(f.pool).await.unwrap().capacity.unwrap();
    let st = rustix::fs::statvfs(f.pool_dir()).unwrap();
    assert_eq!(cap.total_bytes, st.f_blocks * st.f_frsize);
    let free_now = st.f_bavail * st.f_frsize;
    assert!(cap.free_bytes.abs_diff(free_now) < 64 * MIB, "free {} vs statvfs {free_now}", cap.free_bytes);
    assert_eq!(cap.allocated_bytes, (st.f_blocks - st.f_bfree) * st.f_frsize, "what the file system has in use");
    assert_eq!(cap.counted, None, "the report never reads every volume");
    let counted = f.manager.count_volumes(f.pool).await.unwrap();
    assert_eq!((counted.volumes, counted.provisioned_bytes), (2, GIB + 16 * MIB));
    let _ = (a, b);
}

#[tokio::test]
async fn listing_pages_through_every_volume_in_id_order() {
    let f = Fixture::new().await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(f.create(MIB, VolumeFormat::Raw).await.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = f.manager.list_volumes(f.pool, after, 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|v| v.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(matches!(f.manager.list_volumes(f.pool, None, 5000).await, Err(StorageError::InvalidArgument(_))));
}

/// Empty thin volumes are written by the engine itself (no qemu-img process):
/// they must be exactly what qemu-img would have made, and work in QEMU.
#[tokio::test]
async fn empty_volumes_made_without_qemu_img_are_what_qemu_img_makes() {
    let f = Fixture::new().await;
    for size in [512, 64 * 1024, GIB + 512, 10 * GIB, 1 << 50] {
        let v = f.create(size, VolumeFormat::Qcow2).await;
        let ours = f.path_of(&v);
        let reference = f.root.path().join(format!("ref-{size}.qcow2"));
        common::qemu_img(&["create", "-q", "-f", "qcow2", reference.to_str().unwrap(), &size.to_string()]);
        let check = std::process::Command::new("qemu-img").args(["check", "--output=json", "-f", "qcow2"]).arg(&ours).output().unwrap();
        assert!(check.status.success(), "qemu-img check of {size}: {}", String::from_utf8_lossy(&check.stdout));
        let (a, b) = (image_info(&ours), image_info(&reference));
        for field in ["virtual-size", "cluster-size", "format"] {
            assert_eq!(a[field], b[field], "{field} of a {size}-byte image");
        }
        assert_eq!(a["format-specific"]["data"]["refcount-bits"], b["format-specific"]["data"]["refcount-bits"]);
        assert_eq!(a["format-specific"]["data"]["compat"], "1.1");
        assert_eq!(std::fs::metadata(&ours).unwrap().len(), std::fs::metadata(&reference).unwrap().len(), "same layout, size {size}");
        let same = std::process::Command::new("qemu-img").args(["compare", "-f", "qcow2", "-F", "qcow2"]).arg(&ours).arg(&reference).status().unwrap();
        assert!(same.success(), "reads as zeros like qemu-img's, size {size}");
        // QEMU writes and reads it, at both ends, and qemu-img keeps working on it.
        let tail = size - 512;
        write_pattern(&ours, "qcow2", 0xa5, tail, 512);
        if tail > 0 {
            write_pattern(&ours, "qcow2", 0x5a, 0, 512);
            assert!(has_pattern(&ours, "qcow2", 0x5a, 0, 512));
        }
        assert!(has_pattern(&ours, "qcow2", 0xa5, tail, 512));
        f.manager.create_snapshot(f.pool, v.id, "s").await.unwrap();
        if size < 1 << 50 {
            assert_eq!(f.manager.resize_volume(f.pool, v.id, size + GIB, None).await.unwrap().size_bytes, size + GIB);
        }
        let check = std::process::Command::new("qemu-img").args(["check", "-f", "qcow2"]).arg(&ours).status().unwrap();
        assert!(check.success(), "still clean after writes, a snapshot and a resize");
    }
    let raw = f.create(GIB, VolumeFormat::Raw).await;
    let meta = std::fs::metadata(f.path_of(&raw)).unwrap();
    assert_eq!(meta.len(), GIB);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "a thin raw volume is a hole");
}
