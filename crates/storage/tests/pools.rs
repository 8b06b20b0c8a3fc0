//! Local pools: where they may live, how they persist across restarts, and
//! kinds this node cannot serve yet.

mod common;

use common::{engine_config, listing};
use limiquantix_storage::model::{LocalPoolConfig, NfsMode, NfsPoolConfig, PoolConfig, VolumeFormat, VolumeSource, VolumeSpec};
use limiquantix_storage::{PoolId, PoolPhase, StorageError, StorageManager, VolumeId};

fn local(path: impl Into<std::path::PathBuf>) -> PoolConfig {
    PoolConfig::Local(LocalPoolConfig { path: path.into() })
}

async fn manager(root: &std::path::Path) -> StorageManager {
    std::fs::create_dir_all(root.join("pools")).unwrap();
    StorageManager::open(engine_config(root)).await.unwrap()
}

#[tokio::test]
async fn pool_paths_must_stay_inside_the_roots() {
    let root = tempfile::tempdir().unwrap();
    let m = manager(root.path()).await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("pools/escape")).unwrap();
    std::fs::write(root.path().join("pools/a-file"), b"x").unwrap();
    let cases = [
        (root.path().join("pools/escape"), "outside this node's local pool roots"),
        (root.path().join("pools/escape/deeper"), "outside this node's local pool roots"),
        (outside.path().to_path_buf(), "outside this node's local pool roots"),
        ("/etc".into(), "outside this node's local pool roots"),
        (root.path().join("pools/../state"), "must not contain"),
        ("relative/pool".into(), "must be absolute"),
        (root.path().join("pools/a-file"), "not a directory"),
    ];
    for (path, expect) in cases {
        let err = m.init_pool(PoolId::new_random(), local(&path)).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{}: {err}", path.display());
        assert!(err.to_string().contains(expect), "{}: expected {expect:?} in {err}", path.display());
    }
    assert!(listing(outside.path()).is_empty(), "nothing was created outside the roots");
    assert!(!root.path().join("pools/escape/deeper").exists());
    assert!(m.list_pools().await.unwrap().is_empty());
    assert!(listing(&root.path().join("state/pools")).is_empty(), "no pool record was written");
}

#[tokio::test]
async fn a_symlink_that_stays_inside_the_roots_is_fine() {
    let root = tempfile::tempdir().unwrap();
    let m = manager(root.path()).await;
    std::fs::create_dir(root.path().join("pools/real")).unwrap();
    std::os::unix::fs::symlink(root.path().join("pools/real"), root.path().join("pools/alias")).unwrap();
    let report = m.init_pool(PoolId::new_random(), local(root.path().join("pools/alias"))).await.unwrap();
    assert_eq!(report.phase, PoolPhase::Ready);
}

#[tokio::test]
async fn init_is_idempotent_and_refuses_a_second_config_or_a_shared_directory() {
    let root = tempfile::tempdir().unwrap();
    let m = manager(root.path()).await;
    let id = PoolId::new_random();
    let dir = root.path().join("pools/p1");
    let first = m.init_pool(id, local(&dir)).await.unwrap();
    assert!(dir.is_dir(), "the directory was created");
    let again = m.init_pool(id, local(&dir)).await.unwrap();
    assert_eq!(first.id, again.id);

    let err = m.init_pool(id, local(root.path().join("pools/p2"))).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    let err = m.init_pool(PoolId::new_random(), local(&dir)).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    assert_eq!(m.list_pools().await.unwrap().len(), 1);
}

#[tokio::test]
async fn nfs_pools_without_a_server_or_with_a_bad_config_are_refused_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let m = manager(root.path()).await;
    let nfs = |server: &str, mode| {
        PoolConfig::Nfs(NfsPoolConfig {
            server: server.into(),
            export_path: "/export".into(),
            version: Default::default(),
            mode,
            options: Default::default(),
        })
    };
    let err = m.init_pool(PoolId::new_random(), nfs("127.0.0.1", NfsMode::Kernel)).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains("port 2049"), "probed, nothing mounted: {err}");
    // A bad config is refused for what it is, not as "not supported".
    let err = m.init_pool(PoolId::new_random(), nfs("nas?nfsport=1", NfsMode::Userspace)).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
    // No server there: unavailable, saying which export.
    let err = m.init_pool(PoolId::new_random(), nfs("127.0.0.1", NfsMode::Userspace)).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains("127.0.0.1:/export"), "{err}");
    assert!(m.list_pools().await.unwrap().is_empty());
}

#[tokio::test]
async fn pools_and_volumes_survive_a_restart_and_destroy_keeps_volumes() {
    let root = tempfile::tempdir().unwrap();
    let id = PoolId::new_random();
    let dir = root.path().join("pools/p1");
    let vol = VolumeId::new_random();
    {
        let m = manager(root.path()).await;
        m.init_pool(id, local(&dir)).await.unwrap();
        let spec = VolumeSpec { size_bytes: Some(1 << 30), ..Default::default() };
        m.create_volume(id, vol, spec, VolumeSource::Empty, &|_| {}).await.unwrap();
    }
    // A leftover of a create interrupted by a crash.
    let leftover = dir.join(format!(".lq-{}.qcow2.partial", VolumeId::new_random()));
    std::fs::write(&leftover, b"half").unwrap();

    let m = manager(root.path()).await;
    let pools = m.list_pools().await.unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!((pools[0].id, &pools[0].phase), (id, &PoolPhase::Ready));
    assert_eq!(m.get_volume(id, vol).await.unwrap().size_bytes, 1 << 30);
    assert!(!leftover.exists(), "half-made volumes are removed when the pool is re-activated");

    m.destroy_pool(id).await.unwrap();
    m.destroy_pool(id).await.unwrap();
    assert!(m.list_pools().await.unwrap().is_empty());
    assert!(matches!(m.get_volume(id, vol).await, Err(StorageError::NotFound(_))));
    assert!(dir.join(format!("lq-{vol}.qcow2")).exists(), "destroy never deletes volumes");
    let m = manager(root.path()).await;
    assert!(m.list_pools().await.unwrap().is_empty(), "a destroyed pool stays forgotten");
}

#[tokio::test]
async fn a_missing_pool_directory_is_an_error_until_it_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let id = PoolId::new_random();
    let dir = root.path().join("pools/disk1");
    {
        let m = manager(root.path()).await;
        m.init_pool(id, local(&dir)).await.unwrap();
    }
    let unmounted = root.path().join("pools/disk1-away");
    std::fs::rename(&dir, &unmounted).unwrap();

    let m = manager(root.path()).await;
    let report = m.pool_report(id).await.unwrap();
    assert!(matches!(&report.phase, PoolPhase::Error(msg) if msg.contains("missing")), "{:?}", report.phase);
    assert!(!dir.exists(), "a re-opened pool never recreates its directory");
    let spec = VolumeSpec { size_bytes: Some(1 << 20), ..Default::default() };
    let err = m.create_volume(id, VolumeId::new_random(), spec.clone(), VolumeSource::Empty, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");

    std::fs::rename(&unmounted, &dir).unwrap();
    assert_eq!(m.pool_report(id).await.unwrap().phase, PoolPhase::Ready);
    m.create_volume(id, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.unwrap();
}

#[tokio::test]
async fn disks_on_a_file_system_with_o_direct_use_cache_none_and_native_io() {
    let root = tempfile::tempdir().unwrap();
    let m = manager(root.path()).await;
    let id = PoolId::new_random();
    m.init_pool(id, local(root.path().join("pools/p"))).await.unwrap();
    let spec = VolumeSpec { size_bytes: Some(1 << 20), format: Some(VolumeFormat::Raw), ..Default::default() };
    let v = m.create_volume(id, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.unwrap();
    let xml = m.attach_info(id, v.id, Default::default(), false, &[], None).await.unwrap().to_xml();
    assert!(xml.contains(r#"type="raw" cache="none" io="native" discard="unmap""#), "{xml}");
    assert!(listing(&root.path().join("pools/p")).keys().all(|n| n.starts_with("lq-")), "the probe file is gone");
}
