//! NFS pools in userspace mode against a real nfs-ganesha with its own
//! portmapper (each test in its own network namespace): every volume
//! operation of a local pool, through libnfs and qemu-img's `nfs://`, with
//! nothing mounted; half-made files cleaned; a frozen server fails calls
//! within the pool's timeout.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use limiquantix_storage::model::{
    CloneMode, ImageFormat, NfsMode, NfsMountOptions, NfsPoolConfig, NfsVersion, PoolConfig, Provisioning, VolumeFormat,
    VolumeSource, VolumeSpec,
};
use limiquantix_storage::{Name, PoolId, StorageError, StorageManager, VolumeId};
use limiquantix_testkit::Ganesha;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn nfs_config(nfs: &Ganesha, timeo_deciseconds: u32) -> PoolConfig {
    PoolConfig::Nfs(NfsPoolConfig {
        server: "127.0.0.1".into(),
        export_path: nfs.export().display().to_string(),
        version: NfsVersion::V3,
        mode: NfsMode::Userspace,
        options: NfsMountOptions { timeo_deciseconds, ..Default::default() },
    })
}

/// A network namespace of the test's own, its NFS server, and a runtime
/// whose threads and children share that namespace.
fn start() -> (Ganesha, tokio::runtime::Runtime) {
    limiquantix_testkit::private_network().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    (nfs, rt)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Guest data is written and read through the server, as VMs do (ganesha
/// caches attributes: writes behind its back are not seen at once).
fn url(nfs: &Ganesha, local_file: &Path) -> std::path::PathBuf {
    nfs.plain_url(&format!("/{}", local_file.file_name().unwrap().to_str().unwrap())).into()
}

fn spec(size: u64, format: VolumeFormat) -> VolumeSpec {
    VolumeSpec { size_bytes: Some(size), format: Some(format), provisioning: Some(Provisioning::Thin) }
}

#[test]
fn nfs_volumes_end_to_end() {
    let (nfs, rt) = start();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("images")).unwrap();
    let export = nfs.export_local();
    rt.block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let pool = PoolId::new_random();
        let report = m.init_pool(pool, nfs_config(&nfs, 0)).await.unwrap_or_else(|e| panic!("{e}\n{}", nfs.log_tail()));
        assert!(report.capabilities.shared && report.capabilities.linked_clone && report.capabilities.snapshots);
        // Capacity is the server's file system (FSSTAT), not a sum of volumes.
        let cap = report.capacity.unwrap();
        let st = rustix::fs::statvfs(&export).unwrap();
        assert_eq!(cap.total_bytes, st.f_blocks * st.f_frsize);
        assert!(cap.free_bytes > 0 && cap.free_bytes <= cap.total_bytes, "{cap:?}");
        // One export, one pool on this node.
        let twice = m.init_pool(PoolId::new_random(), nfs_config(&nfs, 0)).await.unwrap_err();
        assert!(matches!(twice, StorageError::AlreadyExists(_)) && twice.to_string().contains(&pool.to_string()), "{twice}");

        // Empty volumes, qcow2 and raw; thick is refused (the server allocates).
        let base_id = VolumeId::new_random();
        let base = m.create_volume(pool, base_id, spec(GIB, VolumeFormat::Qcow2), VolumeSource::Empty, &|_| {}).await.unwrap();
        let base_file = export.join(format!("lq-{base_id}.qcow2"));
        assert_eq!((base.size_bytes, base.format, base.backing), (GIB, VolumeFormat::Qcow2, None));
        assert_eq!(base.location, format!("nfs://127.0.0.1{}/lq-{base_id}.qcow2", nfs.export().display()));
        assert_eq!(common::image_info(&base_file)["virtual-size"], GIB);
        let raw_id = VolumeId::new_random();
        let raw = m.create_volume(pool, raw_id, spec(64 * MIB, VolumeFormat::Raw), VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!(raw.size_bytes, 64 * MIB);
        assert_eq!(std::fs::metadata(export.join(format!("lq-{raw_id}.raw"))).unwrap().len(), 64 * MIB);
        let thick = VolumeSpec { provisioning: Some(Provisioning::Thick), ..spec(MIB, VolumeFormat::Raw) };
        let refused = m.create_volume(pool, VolumeId::new_random(), thick, VolumeSource::Empty, &|_| {}).await.unwrap_err();
        assert!(matches!(refused, StorageError::InvalidArgument(_)), "{refused}");
        let (page, _) = m.list_volumes(pool, None, 100).await.unwrap();
        let mut ids = vec![base_id, raw_id];
        ids.sort();
        assert_eq!(page.iter().map(|v| v.id).collect::<Vec<_>>(), ids);
        let no_snap = m.create_snapshot(pool, raw_id, "s1").await.unwrap_err();
        assert!(no_snap.to_string().contains("raw volumes have no snapshots"), "{no_snap}");

        // A linked clone names its base by URL and reads through to it.
        common::write_pattern(&url(&nfs, &base_file), "qcow2", 0x42, 0, 4 * MIB);
        let clone_id = VolumeId::new_random();
        let linked = VolumeSource::Clone { source: base_id, mode: Some(CloneMode::Linked) };
        let clone = m.create_volume(pool, clone_id, VolumeSpec::default(), linked, &|_| {}).await.unwrap();
        let clone_file = export.join(format!("lq-{clone_id}.qcow2"));
        assert_eq!(clone.backing, Some(base_id));
        assert_eq!(common::image_info(&clone_file)["backing-filename"], format!("{}/lq-{base_id}.qcow2", nfs.plain_url("")));
        assert!(common::has_pattern(&url(&nfs, &clone_file), "qcow2", 0x42, 0, 4 * MIB));
        let blocked = m.delete_volume(pool, base_id).await.unwrap_err();
        assert!(matches!(blocked, StorageError::FailedPrecondition(_)) && blocked.to_string().contains(&clone_id.to_string()), "{blocked}");

        // Snapshots of the clone: create, list, revert, delete.
        let snap = m.create_snapshot(pool, clone_id, "before").await.unwrap();
        assert_eq!(snap.name, "before");
        common::write_pattern(&url(&nfs, &clone_file), "qcow2", 0x43, 0, MIB);
        assert_eq!(m.list_snapshots(pool, clone_id).await.unwrap().iter().map(|s| s.name.clone()).collect::<Vec<_>>(), ["before"]);
        m.revert_snapshot(pool, clone_id, "before").await.unwrap();
        assert!(common::has_pattern(&url(&nfs, &clone_file), "qcow2", 0x42, 0, MIB), "reverted");
        common::write_pattern(&url(&nfs, &clone_file), "qcow2", 0x44, 0, MIB);

        // A full clone is a complete, independent copy; one from the snapshot has the snapshot's data.
        let rec = common::Recorder::default();
        let sink = rec.sink();
        let copy_id = VolumeId::new_random();
        let full = VolumeSource::Clone { source: clone_id, mode: Some(CloneMode::Full) };
        let copy = m.create_volume(pool, copy_id, VolumeSpec::default(), full, &sink).await.unwrap();
        assert_eq!((copy.backing, copy.snapshot_count), (None, 0));
        let copy_file = export.join(format!("lq-{copy_id}.qcow2"));
        common::qemu_img(&["compare", "-f", "qcow2", "-F", "qcow2", url(&nfs, &clone_file).to_str().unwrap(), url(&nfs, &copy_file).to_str().unwrap()]);
        assert!(rec.events().last().is_some_and(|p| p.done_bytes == p.total_bytes), "{:?}", rec.events());
        let from_snap_id = VolumeId::new_random();
        let source = VolumeSource::Snapshot { volume: clone_id, name: Name::parse("snapshot", "before").unwrap() };
        m.create_volume(pool, from_snap_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
        let from_snap_file = export.join(format!("lq-{from_snap_id}.qcow2"));
        assert!(common::has_pattern(&url(&nfs, &from_snap_file), "qcow2", 0x42, 0, MIB), "the snapshot's data, not the current");
        m.delete_snapshot(pool, clone_id, "before").await.unwrap();
        assert!(m.list_snapshots(pool, clone_id).await.unwrap().is_empty());

        // Grow only; flatten makes the clone stand alone.
        assert_eq!(m.resize_volume(pool, copy_id, 2 * GIB, None).await.unwrap().size_bytes, 2 * GIB);
        assert!(matches!(m.resize_volume(pool, copy_id, GIB, None).await, Err(StorageError::InvalidArgument(_))));
        let flat = m.flatten_volume(pool, clone_id, &|_| {}).await.unwrap();
        assert_eq!(flat.backing, None);
        assert!(common::has_pattern(&url(&nfs, &clone_file), "qcow2", 0x42, MIB, 3 * MIB));

        // Import an image from the node's import directory.
        let img = root.path().join("images/disk.qcow2");
        common::qemu_img(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"]);
        common::write_pattern(&img, "qcow2", 0x77, MIB, MIB);
        let imported_id = VolumeId::new_random();
        let source = VolumeSource::Image { path: img.clone(), format: ImageFormat::Qcow2 };
        let imported = m.create_volume(pool, imported_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
        assert_eq!(imported.size_bytes, 64 * MIB);
        assert!(common::has_pattern(&url(&nfs, &export.join(format!("lq-{imported_id}.qcow2"))), "qcow2", 0x77, MIB, MIB));

        for id in [clone_id, base_id, raw_id, copy_id, from_snap_id, imported_id] {
            m.delete_volume(pool, id).await.unwrap();
        }
        assert!(files(&export).is_empty(), "nothing left: {:?}", files(&export));
    });
}

#[test]
fn a_dropped_copy_leaves_nothing_and_activation_sweeps_only_stale_leftovers() {
    let (nfs, rt) = start();
    let root = tempfile::tempdir().unwrap();
    let export = nfs.export_local();
    // A copy that takes seconds (64 MiB/s): it is surely running when dropped.
    let mut engine = common::engine_config(root.path());
    engine.copy_bytes_per_sec = Some(64 * MIB);
    rt.block_on(async {
        let m = StorageManager::open(engine).await.unwrap();
        let pool = PoolId::new_random();
        m.init_pool(pool, nfs_config(&nfs, 0)).await.unwrap();
        let src = m.create_volume(pool, VolumeId::new_random(), spec(256 * MIB, VolumeFormat::Raw), VolumeSource::Empty, &|_| {}).await.unwrap();
        let src_file = export.join(format!("lq-{}.raw", src.id));
        common::write_pattern(&url(&nfs, &src_file), "raw", 0x5a, 0, 256 * MIB);
        let before = files(&export);

        let full = VolumeSource::Clone { source: src.id, mode: Some(CloneMode::Full) };
        let copying = m.create_volume(pool, VolumeId::new_random(), VolumeSpec::default(), full, &|_| {});
        // Dropped mid-copy: nothing may stay.
        let dropped = tokio::time::timeout(Duration::from_millis(500), copying).await;
        assert!(dropped.is_err(), "the copy ended before it could be dropped: {dropped:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while files(&export) != before {
            assert!(Instant::now() < deadline, "a dropped copy left {:?}", files(&export));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Leftovers of a create that died: an old one goes at activation, a
        // young one (another node's create in progress) stays.
        let stale = export.join(format!(".lq-{}.qcow2.partial", VolumeId::new_random()));
        let young = export.join(format!(".lq-{}.qcow2.partial", VolumeId::new_random()));
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&young, b"half").unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(hour_ago).unwrap();
        drop(m);
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        m.pool_report(pool).await.unwrap();
        assert!(!stale.exists(), "the stale leftover is removed");
        assert!(young.exists(), "a young partial file may be another node's create");
        assert_eq!(m.get_volume(pool, src.id).await.unwrap().size_bytes, 256 * MIB);
    });
}

#[test]
fn a_frozen_server_fails_calls_within_the_pool_timeout() {
    let (nfs, rt) = start();
    let root = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let pool = PoolId::new_random();
        m.init_pool(pool, nfs_config(&nfs, 20)).await.unwrap();
        let v = m.create_volume(pool, VolumeId::new_random(), spec(MIB, VolumeFormat::Qcow2), VolumeSource::Empty, &|_| {}).await.unwrap();

        std::fs::create_dir_all(root.path().join("pools")).unwrap();
        let local = PoolId::new_random();
        m.init_pool(local, PoolConfig::Local(limiquantix_storage::model::LocalPoolConfig { path: root.path().join("pools/ssd") })).await.unwrap();
        let local_create = async || {
            let started = Instant::now();
            m.create_volume(local, VolumeId::new_random(), spec(MIB, VolumeFormat::Qcow2), VolumeSource::Empty, &|_| {}).await.unwrap();
            started.elapsed()
        };
        let healthy = local_create().await;

        nfs.pause();
        let started = Instant::now();
        let err = m.get_volume(pool, v.id).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        let report = m.pool_report(pool).await.unwrap();
        assert!(report.capacity.is_none() && format!("{:?}", report.phase).contains("did not answer"), "{report:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "answered in {:?}", started.elapsed());
        // The node's local pool does not wait on the frozen server (figures in
        // the benchmark: local_p99_with_hung_nfs_ratio).
        let frozen = local_create().await;
        eprintln!("local create: {healthy:?} healthy, {frozen:?} with the NFS server frozen");
        nfs.resume();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match m.get_volume(pool, v.id).await {
                Ok(found) => {
                    assert_eq!(found.size_bytes, MIB);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "the pool did not recover: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn a_server_crash_in_the_middle_of_a_copy_leaves_the_volume_complete_or_absent() {
    let (mut nfs, rt) = start();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("images")).unwrap();
    let export = nfs.export_local();
    // Slow copies (64 MiB/s), so the crash lands in the middle.
    let mut engine = common::engine_config(root.path());
    engine.copy_bytes_per_sec = Some(64 * MIB);
    let img = root.path().join("images/disk.raw");
    common::qemu_img(&["create", "-q", "-f", "raw", img.to_str().unwrap(), "256M"]);
    common::write_pattern(&img, "raw", 0x6b, 0, 256 * MIB);
    rt.block_on(async {
        let m = StorageManager::open(engine).await.unwrap();
        let pool = PoolId::new_random();
        m.init_pool(pool, nfs_config(&nfs, 0)).await.unwrap();
        let src = m.create_volume(pool, VolumeId::new_random(), spec(256 * MIB, VolumeFormat::Raw), VolumeSource::Empty, &|_| {}).await.unwrap();
        common::write_pattern(&url(&nfs, &export.join(format!("lq-{}.raw", src.id))), "raw", 0x5a, 0, 256 * MIB);

        let sources = [
            ("full clone", VolumeSource::Clone { source: src.id, mode: Some(CloneMode::Full) }, url(&nfs, &export.join(format!("lq-{}.raw", src.id)))),
            ("import", VolumeSource::Image { path: img.clone(), format: ImageFormat::Raw }, img.clone()),
        ];
        for (what, source, original) in sources {
            let id = VolumeId::new_random();
            let rec = common::Recorder::default();
            let sink = rec.sink();
            let copy = m.create_volume(pool, id, VolumeSpec { format: Some(VolumeFormat::Raw), ..Default::default() }, source, &sink);
            let crash = async {
                // Once some data has moved, kill -9 the server and bring it back.
                let deadline = Instant::now() + Duration::from_secs(30);
                while !rec.events().iter().any(|p| p.done_bytes > 32 * MIB) {
                    assert!(Instant::now() < deadline, "{what}: no progress");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                nfs.crash_and_restart().unwrap();
            };
            let (result, ()) = tokio::join!(copy, crash);
            let file = export.join(format!("lq-{id}.raw"));
            match result {
                Ok(v) => {
                    assert_eq!(v.size_bytes, 256 * MIB);
                    let (a, b) = (original.to_str().unwrap().to_owned(), url(&nfs, &file).to_str().unwrap().to_owned());
                    common::qemu_img(&["compare", "-f", "raw", "-F", "raw", &a, &b]);
                    eprintln!("{what}: completed across the server's crash, identical");
                }
                Err(e) => {
                    assert!(!file.exists(), "{what} failed ({e}) but left its volume");
                    assert!(matches!(m.get_volume(pool, id).await, Err(StorageError::NotFound(_))), "{what}");
                    eprintln!("{what}: failed cleanly: {e}");
                }
            }
        }
    });
}
