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

use limiquantix_storage::model::{
    NfsMode, NfsMountOptions, NfsPoolConfig, NfsVersion, PoolConfig, Provisioning, VolumeFormat, VolumeSource, VolumeSpec,
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
if [ "$1" != "-f" ] && [ -e "$LQ_TEST_MOUNT_LOG.busy" ]; then echo "umount: target is busy." >&2; exit 32; fi
exec /usr/bin/umount "$@"
"#;

struct Shims {
    dir: tempfile::TempDir,
}

impl Shims {
    /// Puts the stand-in mount(8) and the recording umount(8) first on
    /// PATH; `server_dir` is what "the export" mounts.
    fn install(server_dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, script) in [("mount", MOUNT), ("umount", UMOUNT)] {
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
        }
        Self { dir }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn make_umount_busy(&self) {
        std::fs::write(self.dir.path().join("log.busy"), b"").unwrap();
    }
}

fn kernel_config(export: &Path) -> PoolConfig {
    PoolConfig::Nfs(NfsPoolConfig {
        server: "127.0.0.1".into(),
        export_path: export.display().to_string(),
        version: NfsVersion::V4_1,
        mode: NfsMode::Kernel,
        options: NfsMountOptions { timeo_deciseconds: 100, retrans: 3, ..Default::default() },
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
            [format!("mount -t nfs -o vers=4.1,hard,timeo=100,retrans=3,proto=tcp -- {source} {}", mount_point.display())],
            "typed options only; the mount point is named from the pool id"
        );
        assert!(mounted(&mount_point));

        // Volumes are files on the mount.
        let spec = VolumeSpec { size_bytes: Some(1 << 30), format: Some(VolumeFormat::Qcow2), provisioning: Provisioning::Thin };
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
        assert_eq!(&calls[1..], [format!("umount -- {}", mount_point.display()), format!("umount -f -l -- {}", mount_point.display())]);
        assert!(!mounted(&mount_point) && !mount_point.exists());
        assert!(server_dir.path().join(format!("lq-{}.qcow2", v.id)).exists(), "volumes are never deleted with a pool");

        // A dead server is refused by the probe, before any mount.
        drop(nfs);
        let err = m.init_pool(PoolId::new_random(), kernel_config(Path::new("/srv/gone"))).await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)) && err.to_string().contains("port 2049"), "{err}");
        assert_eq!(shims.calls().len(), 3, "nothing mounted: {:?}", shims.calls());
    });
}
