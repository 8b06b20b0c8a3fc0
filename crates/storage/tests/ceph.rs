//! Ceph RBD pools against a real single-node cluster (testkit): volumes,
//! clones, snapshots, trash, import, bad configs, and a frozen cluster.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use limiquantix_storage::model::{
    CephPoolConfig, CloneMode, ImageFormat, LocalPoolConfig, PoolConfig, Provisioning, Secret, VolumeFormat, VolumeSource,
    VolumeSpec,
};
use limiquantix_storage::{CephTimeouts, EngineConfig, Name, PoolId, StorageError, StorageManager, VolumeId};
use limiquantix_testkit::Ceph;
use limiquantix_testkit::ceph::TEST_POOL;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn ceph_config(ceph: &Ceph) -> CephPoolConfig {
    CephPoolConfig {
        monitors: vec![ceph.monitor()],
        ceph_pool: TEST_POOL.into(),
        client_id: "admin".into(),
        rados_namespace: String::new(),
        create_if_missing: false,
        key: Secret::new(ceph.admin_key().to_owned()),
    }
}

fn engine(root: &std::path::Path, timeout: Duration) -> EngineConfig {
    let mut e = common::engine_config(root);
    e.ceph_timeouts = CephTimeouts { mon_op: timeout, osd_op: timeout, mount: timeout };
    e
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `qemu-io` on an RBD image through the cluster's own conf.
fn qemu_io(ceph: &Ceph, image: &str, cmd: &str) -> bool {
    let target = format!("rbd:{TEST_POOL}/{image}:conf={}:id=admin", ceph.conf().display());
    let out = Command::new("timeout").args(["120", "qemu-io", "-f", "raw", "-c", cmd, &target]).output().unwrap();
    assert_ne!(out.status.code(), Some(124), "qemu-io {cmd} on {image} hung");
    out.status.success()
}

fn image(id: VolumeId) -> String {
    format!("lq-{id}")
}

#[test]
fn rbd_volumes_end_to_end() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("images")).unwrap();
    rt().block_on(async {
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(10))).await.unwrap();
        let pool = PoolId::new_random();
        let report = m.init_pool(pool, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let cap = report.capacity.unwrap();
        assert!(cap.total_bytes > GIB && cap.free_bytes > 0 && cap.free_bytes <= cap.total_bytes, "{cap:?}");
        assert!(report.capabilities.shared && report.capabilities.linked_clone);

        // Empty volume: raw, thin; qcow2 and thick are refused.
        let spec = |size| VolumeSpec { size_bytes: Some(size), ..Default::default() };
        let base_id = VolumeId::new_random();
        let base = m.create_volume(pool, base_id, spec(GIB), VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!((base.format, base.size_bytes), (VolumeFormat::Raw, GIB));
        assert_eq!(base.location, format!("rbd:{TEST_POOL}/lq-{base_id}"));
        let info = ceph.rbd(&["info", "--format", "json", &format!("{TEST_POOL}/{}", image(base_id))]).unwrap();
        for feature in ["layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"] {
            assert!(info.contains(feature), "{feature} in {info}");
        }
        let qcow = VolumeSpec { size_bytes: Some(GIB), format: Some(VolumeFormat::Qcow2), ..Default::default() };
        assert!(matches!(m.create_volume(pool, VolumeId::new_random(), qcow, VolumeSource::Empty, &|_| {}).await, Err(StorageError::InvalidArgument(_))));
        let thick = VolumeSpec { size_bytes: Some(GIB), provisioning: Some(Provisioning::Thick), ..Default::default() };
        assert!(matches!(m.create_volume(pool, VolumeId::new_random(), thick, VolumeSource::Empty, &|_| {}).await, Err(StorageError::InvalidArgument(_))));
        assert!(qemu_io(&ceph, &image(base_id), "write -P 0x42 0 4M"));
        assert!(m.get_volume(pool, base_id).await.unwrap().allocated_bytes >= 4 * MIB);

        // Linked clone: snapshot + protect + clone.
        let clone_id = VolumeId::new_random();
        let linked = VolumeSource::Clone { source: base_id, mode: Some(CloneMode::Linked) };
        let clone = m.create_volume(pool, clone_id, VolumeSpec::default(), linked, &|_| {}).await.unwrap();
        assert_eq!(clone.backing, Some(base_id));
        assert!(qemu_io(&ceph, &image(clone_id), "read -P 0x42 0 4M"), "the clone reads its base");
        assert_eq!(m.get_volume(pool, base_id).await.unwrap().snapshot_count, 0, "the clone snapshot is not a user snapshot");
        let err = m.delete_volume(pool, base_id).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains(&clone_id.to_string()), "{err}");

        // Clones of an unchanged base share one clone snapshot; a changed base gets a new one.
        let clone_snaps = || {
            let out = ceph.rbd(&["snap", "ls", "--format", "json", &format!("{TEST_POOL}/{}", image(base_id))]).unwrap();
            out.matches("\"lq-clone-").count()
        };
        assert_eq!(clone_snaps(), 1);
        let second = VolumeId::new_random();
        let linked = VolumeSource::Clone { source: base_id, mode: Some(CloneMode::Linked) };
        m.create_volume(pool, second, VolumeSpec::default(), linked, &|_| {}).await.unwrap();
        assert_eq!(clone_snaps(), 1, "an unchanged base is not snapshotted again");
        assert!(qemu_io(&ceph, &image(base_id), "write -P 0x44 8M 1M"));
        let third = VolumeId::new_random();
        let linked = VolumeSource::Clone { source: base_id, mode: Some(CloneMode::Linked) };
        m.create_volume(pool, third, VolumeSpec::default(), linked, &|_| {}).await.unwrap();
        assert_eq!(clone_snaps(), 2, "a changed base gets a new clone snapshot");
        assert!(qemu_io(&ceph, &image(third), "read -P 0x44 8M 1M"), "the new clone sees the change");
        assert!(qemu_io(&ceph, &image(second), "read -P 0 8M 1M"), "the earlier clone does not");
        for id in [second, third] {
            m.delete_volume(pool, id).await.unwrap();
        }

        // A base is never written while a clone reads it; flattened, the clone stands alone.
        let err = m.create_snapshot(pool, base_id, "before").await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)) && err.to_string().contains(&clone_id.to_string()), "{err}");
        let err = m.resize_volume(pool, base_id, 2 * GIB, None).await.unwrap_err();
        assert!(matches!(err, StorageError::FailedPrecondition(_)), "{err}");
        let snaps = ceph.rbd(&["snap", "ls", "--format", "json", &format!("{TEST_POOL}/{}", image(base_id))]).unwrap();
        let clone_snap = snaps.split("\"name\":\"").skip(1).map(|s| s.split('"').next().unwrap()).find(|n| n.starts_with("lq-clone-"));
        let clone_snap = clone_snap.unwrap_or_else(|| panic!("the clone's snapshot is kept: {snaps}")).to_owned();
        let err = m.delete_snapshot(pool, base_id, &clone_snap).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "the backend's clone snapshots are not the user's to delete: {err}");
        let flat = m.flatten_volume(pool, clone_id, &|_| {}).await.unwrap();
        assert_eq!(flat.backing, None);
        assert!(qemu_io(&ceph, &image(clone_id), "read -P 0x42 0 4M"));

        // Snapshots: create, list, revert, delete.
        let snap = m.create_snapshot(pool, base_id, "before").await.unwrap();
        assert_eq!(snap.name, "before");
        assert!(snap.created_unix_seconds > 1_700_000_000);
        assert!(qemu_io(&ceph, &image(base_id), "write -P 0x43 0 4M"));
        m.revert_snapshot(pool, clone_id, "nope").await.unwrap_err();
        let listed = m.list_snapshots(pool, base_id).await.unwrap();
        assert_eq!(listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["before"]);
        assert!(matches!(m.create_snapshot(pool, base_id, "lq-mine").await, Err(StorageError::InvalidArgument(_))));

        // Full clone (deep copy, flattened, no snapshots) and a volume from a snapshot.
        let copy_id = VolumeId::new_random();
        let full = VolumeSource::Clone { source: base_id, mode: Some(CloneMode::Full) };
        let rec = common::Recorder::default();
        let sink = rec.sink();
        let copy = m.create_volume(pool, copy_id, VolumeSpec::default(), full, &sink).await.unwrap();
        assert_eq!((copy.backing, copy.snapshot_count), (None, 0));
        assert!(qemu_io(&ceph, &image(copy_id), "read -P 0x43 0 4M"));
        let events = rec.events();
        assert!(!events.is_empty() && events.last().unwrap().done_bytes == events.last().unwrap().total_bytes, "{events:?}");
        let from_snap_id = VolumeId::new_random();
        let source = VolumeSource::Snapshot { volume: base_id, name: Name::parse("snapshot", "before").unwrap() };
        m.create_volume(pool, from_snap_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
        assert!(qemu_io(&ceph, &image(from_snap_id), "read -P 0x42 0 4M"), "the snapshot's data, not the current");
        m.revert_snapshot(pool, copy_id, "before").await.unwrap_err();

        // Resize grows only.
        assert_eq!(m.resize_volume(pool, copy_id, 2 * GIB, None).await.unwrap().size_bytes, 2 * GIB);
        assert!(matches!(m.resize_volume(pool, copy_id, GIB, None).await, Err(StorageError::InvalidArgument(_))));

        // With no clone left on it, the base can go.
        m.delete_snapshot(pool, base_id, "before").await.unwrap();
        m.delete_volume(pool, base_id).await.unwrap();
        assert!(matches!(m.get_volume(pool, base_id).await, Err(StorageError::NotFound(_))));

        // Import a qcow2 image into RBD.
        let img = root.path().join("images/disk.qcow2");
        common::qemu_img(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"]);
        common::write_pattern(&img, "qcow2", 0x77, MIB, MIB);
        let imported_id = VolumeId::new_random();
        let source = VolumeSource::Image { path: img.clone(), format: ImageFormat::Qcow2 };
        let imported = m.create_volume(pool, imported_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
        assert_eq!(imported.size_bytes, 64 * MIB);
        assert!(qemu_io(&ceph, &image(imported_id), "read -P 0x77 1M 1M"));
        for e in std::fs::read_dir(root.path().join("state/ceph")).unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "client files are private");
        }

        // Deleted images go to the trash, and the purger empties it.
        for id in [clone_id, copy_id, from_snap_id, imported_id] {
            m.delete_volume(pool, id).await.unwrap();
        }
        let (page, _) = m.list_volumes(pool, None, 100).await.unwrap();
        assert!(page.is_empty(), "{page:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let trash = ceph.rbd(&["trash", "ls", "--format", "json", TEST_POOL]).unwrap();
            if trash.trim() == "[]" {
                break;
            }
            assert!(Instant::now() < deadline, "the trash was not purged: {trash}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left = ceph.rbd(&["ls", "--format", "json", TEST_POOL]).unwrap();
        assert_eq!(left.trim(), "[]", "no image left behind");
    });
}

#[test]
fn bad_ceph_configs_are_refused_clearly_and_nothing_is_kept() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(3))).await.unwrap();
        let try_init = |change: &dyn Fn(&mut CephPoolConfig)| {
            let mut c = ceph_config(&ceph);
            change(&mut c);
            let m = &m;
            async move { m.init_pool(PoolId::new_random(), PoolConfig::Ceph(c)).await.unwrap_err() }
        };
        let err = try_init(&|c| c.ceph_pool = "no-such-pool".into()).await;
        assert!(matches!(err, StorageError::NotFound(_)) && err.to_string().contains("no-such-pool"), "{err}");

        let other = ceph.create_user("other", TEST_POOL).unwrap();
        let err = try_init(&|c| c.key = Secret::new(other.clone())).await;
        assert!(matches!(err, StorageError::PermissionDenied(_)), "a valid key of another user: {err}");
        assert!(!err.to_string().contains(&other));

        let start = Instant::now();
        let err = try_init(&|c| c.monitors = vec!["127.0.0.1:1".into()]).await;
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(15), "bounded by the mount timeout: {:?}", start.elapsed());

        for (change, what) in [
            (Box::new(|c: &mut CephPoolConfig| c.ceph_pool = "vms; rm -rf /".into()) as Box<dyn Fn(&mut CephPoolConfig)>, "Ceph pool name"),
            (Box::new(|c: &mut CephPoolConfig| c.rados_namespace = "a/b".into()), "RADOS namespace"),
            (Box::new(|c: &mut CephPoolConfig| c.key = Secret::new("not-base64!".into())), "cephx key"),
        ] {
            let err = try_init(&*change).await;
            assert!(matches!(err, StorageError::InvalidArgument(_)) && err.to_string().contains(what), "{err}");
        }
        let err = try_init(&|c| c.rados_namespace = "tenant-a".into()).await;
        assert!(matches!(err, StorageError::NotFound(_)), "a namespace that does not exist: {err}");

        assert!(m.list_pools().await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(root.path().join("state/pools")).unwrap().count(), 0, "no pool record, no secret file");

        // The same Ceph pool under a second id is refused, and the client
        // files written for it (they hold the key) go with it.
        let first = PoolId::new_random();
        m.init_pool(first, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let err = m.init_pool(PoolId::new_random(), PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists(_)) && err.to_string().contains(&first.to_string()), "{err}");
        let files: Vec<String> = std::fs::read_dir(root.path().join("state/ceph"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(files.len() == 2 && files.iter().all(|f| f.starts_with(&first.to_string())), "{files:?}");
    });
}

#[test]
fn a_frozen_cluster_gives_unavailable_quickly_and_recovers() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("pools")).unwrap();
    rt().block_on(async {
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(3))).await.unwrap();
        let rbd_pool = PoolId::new_random();
        m.init_pool(rbd_pool, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let local = PoolId::new_random();
        m.init_pool(local, PoolConfig::Local(LocalPoolConfig { path: root.path().join("pools/l") })).await.unwrap();
        let vol = VolumeId::new_random();
        let spec = VolumeSpec { size_bytes: Some(GIB), ..Default::default() };
        m.create_volume(rbd_pool, vol, spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();

        ceph.pause_osd();
        let start = Instant::now();
        let err = m.create_volume(rbd_pool, VolumeId::new_random(), spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(12), "within the timeout: {:?}", start.elapsed());
        // The node's other pools do not notice.
        m.create_volume(local, VolumeId::new_random(), spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();

        ceph.resume_osd();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match m.get_volume(rbd_pool, vol).await {
                Ok(v) => {
                    assert_eq!(v.size_bytes, GIB);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "never recovered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        m.create_volume(rbd_pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.expect("works again, no restart");

        // A restarted node reconnects with the key it kept (0600 file) and finds its volumes.
        drop(m);
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(3))).await.unwrap();
        let reports = m.list_pools().await.unwrap();
        assert!(reports.iter().all(|r| r.phase == limiquantix_storage::PoolPhase::Ready), "{reports:?}");
        assert_eq!(m.get_volume(rbd_pool, vol).await.unwrap().size_bytes, GIB);
    });
}

#[test]
fn pools_and_namespaces_are_created_when_asked() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(10))).await.unwrap();
        let mut cfg = ceph_config(&ceph);
        cfg.ceph_pool = "lq-made".into();
        cfg.rados_namespace = "tenant-a".into();
        cfg.create_if_missing = true;
        let pool = PoolId::new_random();
        m.init_pool(pool, PoolConfig::Ceph(cfg)).await.unwrap();
        let report = m.pool_report(pool).await.unwrap();
        assert_eq!(report.phase, limiquantix_storage::PoolPhase::Ready, "a pool just made is ready at once");
        assert!(report.capacity.is_some_and(|c| c.total_bytes > 0), "{:?}", report.capacity);
        let apps = ceph.ceph(&["osd", "pool", "application", "get", "lq-made", "-f", "json"]).unwrap();
        assert!(apps.contains("rbd"), "the new pool is an RBD pool: {apps}");
        let namespaces = ceph.rbd(&["namespace", "ls", "--format", "json", "lq-made"]).unwrap();
        assert!(namespaces.contains("tenant-a"), "{namespaces}");
        let id = VolumeId::new_random();
        let spec = VolumeSpec { size_bytes: Some(GIB), ..Default::default() };
        let v = m.create_volume(pool, id, spec, VolumeSource::Empty, &|_| {}).await.unwrap();
        assert_eq!(v.location, format!("rbd:lq-made/tenant-a/lq-{id}"));
        let listed = ceph.rbd(&["ls", "--format", "json", "lq-made/tenant-a"]).unwrap();
        assert!(listed.contains(&format!("lq-{id}")), "the image lives in the namespace: {listed}");
        let disk = m.attach_info(pool, id, Default::default(), false, &[], None).await.unwrap().to_xml();
        assert!(disk.contains(&format!(r#"name="lq-made/tenant-a/lq-{id}""#)), "{disk}");
    });
}

/// Images in the test pool, by name.
fn images(ceph: &Ceph) -> Vec<String> {
    let ls = ceph.rbd(&["ls", "--format", "json", TEST_POOL]).unwrap();
    let names: Vec<String> = serde_json::from_str(&ls).unwrap();
    names
}

/// Waits until the pool holds exactly `expected` images (the purger may need a pass).
async fn wait_images(ceph: &Ceph, expected: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    let mut want = expected.to_vec();
    want.sort();
    loop {
        let mut now = images(ceph);
        now.sort();
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "images {now:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `create` and drops it once it has reported some progress.
async fn drop_midway(m: &std::sync::Arc<StorageManager>, pool: PoolId, id: VolumeId, source: VolumeSource) {
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    let m2 = m.clone();
    let task = tokio::spawn(async move {
        let progress = move |p: limiquantix_storage::model::Progress| {
            if p.done_bytes > 0 && p.done_bytes < p.total_bytes {
                tx.send_replace(p.done_bytes);
            }
        };
        m2.create_volume(pool, id, VolumeSpec::default(), source, &progress).await
    });
    // Checked at once: the watch's borrow held on would block the copy's next report.
    let reached = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|d| *d > 0)).await.is_ok_and(|r| r.is_ok());
    assert!(reached, "the copy never made progress: {:?}", task.is_finished());
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled(), "dropped before it finished");
}

#[test]
fn interrupted_copies_and_imports_leave_nothing_and_retries_start_clean() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("images")).unwrap();
    rt().block_on(async {
        let m = std::sync::Arc::new(StorageManager::open(engine(root.path(), Duration::from_secs(10))).await.unwrap());
        let pool = PoolId::new_random();
        m.init_pool(pool, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let src = VolumeId::new_random();
        m.create_volume(pool, src, VolumeSpec { size_bytes: Some(GIB), ..Default::default() }, VolumeSource::Empty, &|_| {})
            .await
            .unwrap();
        assert!(qemu_io(&ceph, &image(src), "write -P 0x5a 0 512M"));
        let only_src = vec![image(src)];

        // A full clone dropped midway stops: neither the volume nor a staging image stays.
        let copy = VolumeId::new_random();
        drop_midway(&m, pool, copy, VolumeSource::Clone { source: src, mode: Some(CloneMode::Full) }).await;
        wait_images(&ceph, &only_src, Duration::from_secs(5)).await;
        assert!(matches!(m.get_volume(pool, copy).await, Err(StorageError::NotFound(_))));

        // An import dropped midway: its qemu-img is killed and its staging image goes.
        let raw = root.path().join("images/big.raw");
        std::fs::File::create(&raw).unwrap().set_len(GIB).unwrap();
        common::qemu_img(&["convert", "-f", "raw", "-O", "raw", "-n",
            &format!("rbd:{TEST_POOL}/{}:conf={}:id=admin", image(src), ceph.conf().display()), raw.to_str().unwrap()]);
        let imported = VolumeId::new_random();
        drop_midway(&m, pool, imported, VolumeSource::Image { path: raw.clone(), format: ImageFormat::Raw }).await;
        wait_images(&ceph, &only_src, Duration::from_secs(40)).await;

        // A retried create finds what a killed attempt left under a staging
        // name, removes it and builds the volume whole.
        let leftover = format!("lq-staging-{copy}-0badc0de");
        ceph.rbd(&["create", "--size", "1G", &format!("{TEST_POOL}/{leftover}")]).unwrap();
        assert!(qemu_io(&ceph, &leftover, "write -P 0x11 0 4M"));
        let full = m
            .create_volume(pool, copy, VolumeSpec::default(), VolumeSource::Clone { source: src, mode: Some(CloneMode::Full) }, &|_| {})
            .await
            .unwrap();
        assert_eq!(full.size_bytes, GIB);
        assert!(qemu_io(&ceph, &image(copy), "read -P 0x5a 0 4M") && qemu_io(&ceph, &image(copy), "read -P 0x5a 508M 4M"));
        wait_images(&ceph, &[image(src), image(copy)], Duration::from_secs(5)).await;

        // The copy is the source's data, byte for byte.
        let conf = ceph.conf().display().to_string();
        let url = |id| format!("rbd:{TEST_POOL}/{}:conf={conf}:id=admin", image(id));
        let compare = Command::new("timeout").args(["300", "qemu-img", "compare", "-f", "raw", "-F", "raw", &url(src), &url(copy)]).output().unwrap();
        assert!(compare.status.success(), "{}", String::from_utf8_lossy(&compare.stdout));
    });
}

/// The base's clone snapshots, as rbd lists them.
fn clone_snapshots_of(ceph: &Ceph, base: VolumeId) -> usize {
    let out = ceph.rbd(&["snap", "ls", "--format", "json", &format!("{TEST_POOL}/{}", image(base))]).unwrap();
    out.matches("\"lq-clone-").count()
}

/// Clones `base` `rounds` times on `node`, deleting all but every 10th; the
/// clones kept.
async fn clone_rounds(node: &StorageManager, pool: PoolId, base: VolumeId, rounds: usize) -> Result<Vec<VolumeId>, String> {
    let mut kept = Vec::new();
    for round in 0..rounds {
        let id = VolumeId::new_random();
        let linked = VolumeSource::Clone { source: base, mode: Some(CloneMode::Linked) };
        node.create_volume(pool, id, VolumeSpec::default(), linked, &|_| {}).await.map_err(|e| format!("clone {round} failed: {e}"))?;
        if round % 10 == 9 {
            kept.push(id);
        } else {
            node.delete_volume(pool, id).await.map_err(|e| format!("delete {round} failed: {e}"))?;
        }
    }
    Ok(kept)
}

const SECOND_NODE_ENV: &str = "LQ_TEST_SECOND_NODE";
const CLONE_ROUNDS: usize = 40;

/// The second node of the test below, run by it as a process of its own
/// (nodes are separate processes, each with its own Ceph client). Run
/// directly, without the test's environment, it has nothing to do.
#[test]
fn second_node_process() {
    let Ok(spec) = std::env::var(SECOND_NODE_ENV) else { return };
    let [monitor, key, pool, base, root]: [&str; 5] = spec.split('|').collect::<Vec<_>>().try_into().expect("five fields");
    let config = CephPoolConfig {
        monitors: vec![monitor.into()],
        ceph_pool: TEST_POOL.into(),
        client_id: "admin".into(),
        rados_namespace: String::new(),
        create_if_missing: false,
        key: Secret::new(key.into()),
    };
    let (pool, base) = (pool.parse().unwrap(), base.parse().unwrap());
    rt().block_on(async {
        let node = StorageManager::open(engine(std::path::Path::new(root), Duration::from_secs(10))).await.unwrap();
        node.init_pool(pool, PoolConfig::Ceph(config)).await.unwrap();
        for id in clone_rounds(&node, pool, base, CLONE_ROUNDS).await.unwrap() {
            println!("KEPT {id}");
        }
    });
}

/// Two nodes (two processes) share a pool and clone the same unchanged base
/// at once, each deleting its clones: each node's purger keeps collecting
/// the clone snapshot the other node may just have picked. Every clone must
/// succeed and read its base, and the snapshots are collected in the end.
#[test]
fn clones_on_one_node_survive_the_purger_of_another() {
    let ceph = Ceph::start().unwrap();
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rt().block_on(async {
        let node_a = StorageManager::open(engine(root_a.path(), Duration::from_secs(10))).await.unwrap();
        let pool = PoolId::new_random();
        node_a.init_pool(pool, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let base = VolumeId::new_random();
        node_a
            .create_volume(pool, base, VolumeSpec { size_bytes: Some(64 * MIB), ..Default::default() }, VolumeSource::Empty, &|_| {})
            .await
            .unwrap();
        assert!(qemu_io(&ceph, &image(base), "write -P 0x6b 0 4M"));

        let spec = format!("{}|{}|{pool}|{base}|{}", ceph.monitor(), ceph.admin_key(), root_b.path().display());
        let mut second = std::process::Command::new(std::env::current_exe().unwrap());
        second.args(["--exact", "second_node_process", "--nocapture", "--test-threads", "1"]).env(SECOND_NODE_ENV, spec);
        let second = tokio::task::spawn_blocking(move || second.output());
        let mut kept = clone_rounds(&node_a, pool, base, CLONE_ROUNDS).await.unwrap();
        let second = second.await.unwrap().unwrap();
        let out = String::from_utf8_lossy(&second.stdout);
        assert!(second.status.success(), "the second node failed: {out}\n{}", String::from_utf8_lossy(&second.stderr));
        // The harness prints its own words before the first line.
        kept.extend(out.lines().filter_map(|l| l.split("KEPT ").nth(1)).map(|id| id.trim().parse::<VolumeId>().unwrap()));
        assert_eq!(kept.len(), 2 * CLONE_ROUNDS / 10, "{out}");
        for id in &kept {
            assert!(qemu_io(&ceph, &image(*id), "read -P 0x6b 0 4M"), "clone {id} reads its base");
        }

        // Once no clone is left, the purger collects every clone snapshot.
        for id in kept {
            node_a.delete_volume(pool, id).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while clone_snapshots_of(&ceph, base) > 0 {
            assert!(Instant::now() < deadline, "clone snapshots left: {}", clone_snapshots_of(&ceph, base));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        wait_images(&ceph, &[image(base)], Duration::from_secs(30)).await;
    });
}

/// A node with two Ceph pools holds two librados clients in one process:
/// one comes and goes (connect, work, shutdown) again and again while the
/// other clones and deletes. librados cannot take a connect racing a
/// shutdown in one process; the node must keep them apart.
#[test]
fn a_second_ceph_pool_comes_and_goes_while_the_first_works() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let m = std::sync::Arc::new(StorageManager::open(engine(root.path(), Duration::from_secs(10))).await.unwrap());
        let first = PoolId::new_random();
        m.init_pool(first, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let base = VolumeId::new_random();
        let spec = VolumeSpec { size_bytes: Some(64 << 20), ..Default::default() };
        m.create_volume(first, base, spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
        let worker = {
            let m = m.clone();
            tokio::spawn(async move { clone_rounds(&m, first, base, 30).await })
        };
        for round in 0..12 {
            let second = PoolId::new_random();
            let mut cfg = ceph_config(&ceph);
            cfg.rados_namespace = "second".into();
            cfg.create_if_missing = true;
            m.init_pool(second, PoolConfig::Ceph(cfg)).await.unwrap_or_else(|e| panic!("round {round}: init: {e}"));
            let id = VolumeId::new_random();
            m.create_volume(second, id, spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
            m.delete_volume(second, id).await.unwrap();
            m.destroy_pool(second).await.unwrap_or_else(|e| panic!("round {round}: destroy: {e}"));
        }
        let kept = worker.await.unwrap().unwrap();
        assert_eq!(kept.len(), 3, "every clone of the first pool was made");
    });
}

/// Deleting a base races the purger for its unused clone snapshot: the
/// purger may take it between the delete's look and its removal. Either
/// way the delete succeeds and nothing is left.
#[test]
fn deleting_a_base_while_the_purger_collects_its_clone_snapshot_succeeds() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let m = StorageManager::open(engine(root.path(), Duration::from_secs(10))).await.unwrap();
        let pool = PoolId::new_random();
        m.init_pool(pool, PoolConfig::Ceph(ceph_config(&ceph))).await.unwrap();
        let spec = VolumeSpec { size_bytes: Some(64 << 20), ..Default::default() };
        for round in 0..25u64 {
            let base = VolumeId::new_random();
            m.create_volume(pool, base, spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap();
            let clone = VolumeId::new_random();
            let linked = VolumeSource::Clone { source: base, mode: Some(CloneMode::Linked) };
            m.create_volume(pool, clone, VolumeSpec::default(), linked, &|_| {}).await.unwrap();
            m.delete_volume(pool, clone).await.unwrap();
            // Spread the base's delete over the purger's work on the clone.
            tokio::time::sleep(Duration::from_millis(round * 7 % 40)).await;
            m.delete_volume(pool, base).await.unwrap_or_else(|e| panic!("round {round}: deleting the base failed: {e}"));
        }
        wait_images(&ceph, &[], Duration::from_secs(60)).await;
    });
}
