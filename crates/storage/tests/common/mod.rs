//! Shared fixture for engine tests: a StorageManager over temp dirs with one
//! local pool, and helpers that read and write guest data with qemu-io.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use limiquantix_storage::model::{
    LocalPoolConfig, PoolConfig, Progress, Provisioning, VolumeFormat, VolumeInfo, VolumeSource, VolumeSpec,
};
use limiquantix_storage::{EngineConfig, PoolId, StorageManager, ToolTimeouts, VolumeId};

pub struct Fixture {
    pub root: tempfile::TempDir,
    pub manager: StorageManager,
    pub pool: PoolId,
}

pub fn engine_config(root: &Path) -> EngineConfig {
    EngineConfig {
        state_dir: root.join("state"),
        local_pool_roots: vec![root.join("pools")],
        import_dirs: vec![root.join("images")],
        timeouts: ToolTimeouts::default(),
        ceph_timeouts: Default::default(),
        iscsi: Default::default(),
        copy_bytes_per_sec: None,
    }
}

impl Fixture {
    pub async fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for d in ["pools", "images"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let manager = StorageManager::open(engine_config(root.path())).await.unwrap();
        let pool = PoolId::new_random();
        let config = PoolConfig::Local(LocalPoolConfig { path: root.path().join("pools/p1") });
        manager.init_pool(pool, config).await.unwrap();
        Self { root, manager, pool }
    }

    pub fn pool_dir(&self) -> PathBuf {
        self.root.path().join("pools/p1")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.path().join("images")
    }

    pub async fn create(&self, size: u64, format: VolumeFormat) -> VolumeInfo {
        self.create_spec(VolumeSpec { size_bytes: Some(size), format: Some(format), provisioning: Some(Provisioning::Thin) })
            .await
    }

    pub async fn create_spec(&self, spec: VolumeSpec) -> VolumeInfo {
        self.manager
            .create_volume(self.pool, VolumeId::new_random(), spec, VolumeSource::Empty, &|_| {})
            .await
            .unwrap()
    }

    pub fn path_of(&self, v: &VolumeInfo) -> PathBuf {
        PathBuf::from(&v.location)
    }

    /// Every file in the pool directory with its length: "nothing changed" checks.
    pub fn listing(&self) -> BTreeMap<String, u64> {
        listing(&self.pool_dir())
    }
}

pub fn listing(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect()
}

/// A progress sink that records what it is given.
#[derive(Default, Clone)]
pub struct Recorder(pub Arc<Mutex<Vec<Progress>>>);

impl Recorder {
    pub fn sink(&self) -> impl Fn(Progress) + Send + Sync + use<> {
        let seen = self.0.clone();
        move |p| seen.lock().unwrap().push(p)
    }
    pub fn events(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
}

fn qemu_io(path: &Path, format: &str, command: &str) -> std::process::Output {
    Command::new("qemu-io").args(["-f", format, "-c", command]).arg(path).output().unwrap()
}

pub fn write_pattern(path: &Path, format: &str, byte: u8, offset: u64, len: u64) {
    let out = qemu_io(path, format, &format!("write -P {byte:#x} {offset} {len}"));
    assert!(out.status.success(), "qemu-io write: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn has_pattern(path: &Path, format: &str, byte: u8, offset: u64, len: u64) -> bool {
    qemu_io(path, format, &format!("read -P {byte:#x} {offset} {len}")).status.success()
}

/// `qemu-img info --output=json` of a file, as JSON.
pub fn image_info(path: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img").args(["info", "--output=json", "-U"]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn qemu_img(args: &[&str]) {
    let out = Command::new("timeout").arg("300").arg("qemu-img").args(args).output().unwrap();
    assert!(out.status.success(), "qemu-img {args:?} (124: timed out): {}", String::from_utf8_lossy(&out.stderr));
}
