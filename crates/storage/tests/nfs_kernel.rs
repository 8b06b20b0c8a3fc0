//! NFS pools in kernel mode. This kernel has no NFS client, so mount(8) is
//! the one step replaced: a `mount` on PATH records its argv and bind-mounts
//! a directory in its place (in the test's own mount namespace); everything
//! around it runs for real: the probe of a real nfs-ganesha on port 2049,
//! the mount point named from the pool id, volumes as files on the mount,
//! no second mount after a restart, unmount on destroy with a forced lazy
//! unmount when the plain one fails, and a probe that refuses a dead server
//! before anything is mounted.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use limiquantix_storage::model::{
    LocalPoolConfig, NfsMode, NfsMountOptions, NfsPoolConfig, NfsVersion, PoolConfig, Provisioning, VolumeFormat, VolumeSource, VolumeSpec,
};
use limiquantix_storage::{PoolId, StorageError, StorageManager, VolumeId};
use limiquantix_testkit::Ganesha;

const MOUNT: &str = r#"#!/bin/sh
echo "mount $*" >> "$LQ_TEST_MOUNT_LOG"
for target; do :; done
exec /usr/bin/mount --bind "$LQ_TEST_SERVER_DIR" "$target"
"#;

const UMOUNT: &str = r#"#!/bin/sh
echo "umount $*" >> "$LQ_TEST_MOUNT_LOG"
if [ "$2" != "-f" ] && [ -e "$LQ_TEST_MOUNT_LOG.busy" ]; then echo "umount: target is busy." >&2; exit 32; fi
exec /usr/bin/umount "$@"
"#;

/// mount(8) standing in for a kernel NFS mount that can hang: the FUSE
/// passthrough daemon over the server directory (its pid kept for the test).
const MOUNT_FUSE: &str = r#"#!/bin/sh
echo "mount $*" >> "$LQ_TEST_MOUNT_LOG"
for target; do :; done
"$LQ_TEST_FUSE" "$LQ_TEST_SERVER_DIR" "$target" -o allow_other,default_permissions </dev/null >/dev/null 2>&1 &
echo $! > "$LQ_TEST_MOUNT_LOG.daemon"
i=0
until awk -v m="$target" '$5==m{f=1} END{exit !f}' /proc/thread-self/mountinfo; do
  i=$((i+1)); [ $i -lt 500 ] || exit 32; sleep 0.01
done
"#;

struct Shims {
    dir: tempfile::TempDir,
}

impl Shims {
    /// Puts the stand-in mount(8) and the recording umount(8) first on
    /// PATH; `server_dir` is what "the export" mounts.
    fn install(server_dir: &Path) -> Self {
        Self::install_with(server_dir, MOUNT)
    }

    fn install_with(server_dir: &Path, mount: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, script) in [("mount", mount), ("umount", UMOUNT)] {
            let path = dir.path().join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
        // SAFETY: set before the runtime and its threads exist; each test
        // runs in its own process (nextest).
        unsafe {
            std::env::set_var("PATH", path);
            std::env::set_var("LQ_TEST_MOUNT_LOG", dir.path().join("log"));
            std::env::set_var("LQ_TEST_SERVER_DIR", server_dir);
            std::env::set_var("LQ_TEST_FUSE", limiquantix_testkit::fuse::passthrough_program());
        }
        Self { dir }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// The pid of the FUSE daemon the last mount started.
    fn daemon(&self) -> i32 {
        std::fs::read_to_string(self.dir.path().join("log.daemon")).unwrap().trim().parse().unwrap()
    }

    fn make_umount_busy(&self) {
        std::fs::write(self.dir.path().join("log.busy"), b"").unwrap();
    }
}

fn kernel_config(export: &Path) -> PoolConfig {
    kernel_config_timeo(export, 100)
}

fn kernel_config_timeo(export: &Path, timeo_deciseconds: u32) -> PoolConfig {
    PoolConfig::Nfs(NfsPoolConfig {
        server: "127.0.0.1".into(),
        export_path: export.display().to_string(),
        version: NfsVersion::V4_1,
        mode: NfsMode::Kernel,
        options: NfsMountOptions { timeo_deciseconds, retrans: 3, ..Default::default() },
    })
}

fn mounted(target: &Path) -> bool {
    std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
}

#[test]
fn a_kernel_mode_pool_is_mounted_with_typed_options_and_unmounted_on_destroy() {
    limiquantix_testkit::private_network().unwrap();
    limiquantix_testkit::private_mounts().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let shims = Shims::install(server_dir.path());
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let pool = PoolId::new_random();
        let report = m.init_pool(pool, kernel_config(&nfs.export())).await.unwrap();
        assert!(report.capabilities.shared);
        let mount_point: PathBuf = root.path().join(format!("state/nfs/{pool}"));
        let source = format!("127.0.0.1:{}", nfs.export().display());
        assert_eq!(
            shims.calls(),
            [format!("mount --no-canonicalize -t nfs -o vers=4.1,hard,timeo=100,retrans=3,proto=tcp -- {source} {}", mount_point.display())],
            "typed options only; the mount point is named from the pool id"
        );
        assert!(mounted(&mount_point));

        // Volumes are files on the mount.
        let spec = VolumeSpec { size_bytes: Some(1 << 30), format: Some(VolumeFormat::Qcow2), provisioning: Some(Provisioning::Thin) };
        let v = m.create_volume(pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {}).await.unwrap();
        assert!(server_dir.path().join(format!("lq-{}.qcow2", v.id)).exists(), "the file is on the export");
        assert_eq!(PathBuf::from(&v.location), mount_point.join(format!("lq-{}.qcow2", v.id)));

        // A restart finds it mounted and does not mount again.
        drop(m);
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        assert_eq!(m.get_volume(pool, v.id).await.unwrap().id, v.id);
        assert_eq!(shims.calls().iter().filter(|c| c.starts_with("mount")).count(), 1);

        // Destroy unmounts; the volume stays on the export. A busy mount is detached.
        shims.make_umount_busy();
        m.destroy_pool(pool).await.unwrap();
        let calls = shims.calls();
        let (plain, forced) = (format!("umount --no-canonicalize -- {}", mount_point.display()), format!("umount --no-canonicalize -f -l -- {}", mount_point.display()));
        assert_eq!(&calls[1..], [plain, forced]);
        assert!(!mounted(&mount_point) && !mount_point.exists());
        assert!(server_dir.path().join(format!("lq-{}.qcow2", v.id)).exists(), "volumes are never deleted with a pool");

        // A dead server is refused by the probe, before any mount.
        drop(nfs);
        let err = m.init_pool(PoolId::new_random(), kernel_config(Path::new("/srv/gone"))).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains("port 2049"), "{err}");
        assert_eq!(shims.calls().len(), 3, "nothing mounted: {:?}", shims.calls());
    });
}

/// Whatever the test's outcome, the hung mount is detached and its daemon
/// killed, so no thread stays blocked on it (and the test ends).
struct ReleaseHungMount {
    daemon: i32,
    mount_point: PathBuf,
}

impl Drop for ReleaseHungMount {
    fn drop(&mut self) {
        if mounted(&self.mount_point) {
            let _ = std::process::Command::new("/usr/bin/umount").args(["-f", "-l"]).arg(&self.mount_point).status();
        }
        // SAFETY: signals to the daemon this test started.
        unsafe { libc::kill(self.daemon, libc::SIGKILL) };
    }
}

#[test]
fn a_hung_mount_blocks_only_its_own_pool_and_destroy_detaches_it() {
    limiquantix_testkit::private_network().unwrap();
    limiquantix_testkit::private_mounts().unwrap();
    let nfs = Ganesha::start_with_portmapper().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let shims = Shims::install_with(server_dir.path(), MOUNT_FUSE);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("pools")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let m = StorageManager::open(common::engine_config(root.path())).await.unwrap();
        let nfs_pool = PoolId::new_random();
        m.init_pool(nfs_pool, kernel_config_timeo(&nfs.export(), 10)).await.unwrap();
        let local_pool = PoolId::new_random();
        m.init_pool(local_pool, PoolConfig::Local(LocalPoolConfig { path: root.path().join("pools/ssd") })).await.unwrap();
        let spec = || VolumeSpec { size_bytes: Some(1 << 30), format: Some(VolumeFormat::Qcow2), provisioning: Some(Provisioning::Thin) };
        let on_nfs = m.create_volume(nfs_pool, VolumeId::new_random(), spec(), VolumeSource::Empty, &|_| {}).await.unwrap();
        let local_create = async || {
            let started = Instant::now();
            m.create_volume(local_pool, VolumeId::new_random(), spec(), VolumeSource::Empty, &|_| {}).await.unwrap();
            started.elapsed()
        };
        let healthy = local_create().await;

        // The server stops answering: the pool's calls fail within its timeout (1 s)...
        let daemon = shims.daemon();
        let _release = ReleaseHungMount { daemon, mount_point: root.path().join(format!("state/nfs/{nfs_pool}")) };
        // SAFETY: a signal to the daemon this test started.
        unsafe { libc::kill(daemon, libc::SIGSTOP) };
        let stopped = || std::fs::read_to_string(format!("/proc/{daemon}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stopped() {
            assert!(Instant::now() < deadline, "the FUSE daemon {daemon} did not stop: {:?}", std::fs::read_to_string(format!("/proc/{daemon}/stat")));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mount_line = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap().lines().filter(|l| l.contains(&nfs_pool.to_string())).collect::<Vec<_>>().join("\n");
        assert!(mount_line.contains("fuse"), "the pool is on the FUSE mount: {mount_line}");
        let started = Instant::now();
        let err = m.get_volume(nfs_pool, on_nfs.id).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains("did not answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "answered in {:?}", started.elapsed());
        let report = m.pool_report(nfs_pool).await.unwrap();
        assert!(report.capacity.is_none(), "{report:?}");
        // ...and once its few workers all wait, at once, without more threads.
        for _ in 0..4 {
            let _ = m.get_volume(nfs_pool, on_nfs.id).await;
        }
        let started = Instant::now();
        let err = m.get_volume(nfs_pool, on_nfs.id).await.unwrap_err();
        assert!(err.to_string().contains("every worker"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1), "refused in {:?}", started.elapsed());

        // The node's other pools do not wait on it.
        let during = local_create().await;
        eprintln!("local create: {healthy:?} healthy, {during:?} with the NFS mount hung");

        // Destroy detaches the hung mount (forced, lazy): the waiters are released.
        m.destroy_pool(nfs_pool).await.unwrap();
        let mount_point = root.path().join(format!("state/nfs/{nfs_pool}"));
        assert!(!mounted(&mount_point), "the hung mount is gone");
        let calls = shims.calls();
        assert!(calls.iter().any(|c| c.starts_with("umount --no-canonicalize -f -l")), "{calls:?}");
        // SAFETY: as above; the daemon is ours.
        unsafe { libc::kill(daemon, libc::SIGKILL) };
        assert!(server_dir.path().join(format!("lq-{}.qcow2", on_nfs.id)).exists(), "the volume is still on the server");
        local_create().await;
    });
}

#[test]
fn a_mount_that_does_not_finish_is_killed_at_its_timeout() {
    use limiquantix_storage::tools::mount::Mounter;
    let server_dir = tempfile::tempdir().unwrap();
    let shims = Shims::install_with(server_dir.path(), "#!/bin/sh\necho \"mount $*\" >> \"$LQ_TEST_MOUNT_LOG\"\necho $$ > \"$LQ_TEST_MOUNT_LOG.daemon\"\nexec sleep 600\n");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = rt.block_on(Mounter { timeout: Duration::from_secs(1) }.mount_nfs("nas:/srv/vm", "vers=3,hard,proto=tcp", target.path())).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "returned after {:?}", started.elapsed());
    assert!(err.to_string().contains("killed"), "{err}");
    // The hung mount(8) is gone, not left behind.
    let pid = shims.daemon();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z"), "mount {pid} still runs");
    assert_eq!(shims.calls().len(), 1);
}
