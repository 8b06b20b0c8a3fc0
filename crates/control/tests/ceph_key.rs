//! Threat test: the Ceph key reaches the node and librados, never a log
//! line (even at debug level) nor the arguments or environment of any
//! process the daemons run (qemu-img reads it from a 0600 keyring).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::process::{spawn_logged, spawn_node, write_config, write_node_config};
use common::{Clients, MIB};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::{Ceph, free_port};

/// pid → parent pid, from /proc/<pid>/stat.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn descends_from(mut pid: u32, roots: &[u32]) -> bool {
    for _ in 0..16 {
        if roots.contains(&pid) {
            return true;
        }
        match parent_of(pid) {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Every process under `roots` whose arguments or environment hold `key`.
fn scan(roots: &[u32], key: &[u8], seen: &mut BTreeSet<String>, hits: &mut Vec<String>) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if !descends_from(pid, roots) {
            continue;
        }
        for what in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) else { continue };
            let args = String::from_utf8_lossy(&bytes).replace('\0', " ");
            seen.insert(args.split_whitespace().next().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned());
            if bytes.windows(key.len()).any(|w| w == key) {
                hits.push(format!("pid {pid} {what}: {args}"));
            }
        }
    }
}

#[test]
fn the_ceph_key_is_in_no_log_line_and_no_process_argument() {
    let ceph = Ceph::start().unwrap();
    let key = ceph.admin_key().to_owned();
    let root = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test process starts.
    unsafe { std::env::set_var("RUST_LOG", "debug") };
    let cp_port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{cp_port}");
    let cp = spawn_logged(&write_config(root.path(), cp_port), &root.path().join("control.log"));
    let node_dir = root.path().join("node");
    let node_config = write_node_config(&node_dir, free_port().unwrap(), &url, 0);
    let node_id = limiquantix_node::registration::node_id(&node_dir.join("state")).unwrap();
    let node = spawn_node(&node_config, &root.path().join("node.log"));
    let daemons = [cp.child.pid().unwrap(), node.pid().unwrap()];

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, key) = (stop.clone(), key.clone());
        std::thread::spawn(move || {
            let (mut seen, mut hits) = (BTreeSet::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                scan(&daemons, key.as_bytes(), &mut seen, &mut hits);
                std::thread::sleep(Duration::from_millis(2));
            }
            (seen, hits)
        })
    };

    let image = node_dir.join("images/disk.qcow2");
    let made = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&image).arg("32M").status().unwrap();
    assert!(made.success());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Clients::connect(&url).await;
        c.wait_node_online(&node_id).await;
        let config = pb::PoolConfig {
            backend: Some(pb::pool_config::Backend::Ceph(pb::CephPoolConfig {
                monitors: vec![ceph.monitor()],
                ceph_pool: limiquantix_testkit::ceph::TEST_POOL.into(),
                client_id: "admin".into(),
                key: key.clone(),
                ..Default::default()
            })),
        };
        let op = c.pools.create_pool(pb::CreatePoolRequest { name: "rbd".into(), config: Some(config), ..Default::default() }).await;
        let pool = c.wait_ok(&op.unwrap().into_inner().task_id).await.resource_id;
        let shown = c.pools.get_pool(pb::GetPoolRequest { pool: pool.clone() }).await.unwrap().into_inner();
        assert!(!format!("{shown:?}").contains(&key), "the API returned the key");

        let base = c.create_volume("rbd", "base", 64 * MIB).await;
        let op = c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: base.id.clone(), name: "s1".into(), ..Default::default() }).await;
        c.wait_ok(&op.unwrap().into_inner().task_id).await;
        let mut made = vec![base.id.clone()];
        for (name, mode) in [("full", pb::CloneMode::Full), ("linked", pb::CloneMode::Linked)] {
            let req = pb::CloneVolumeRequest { source_volume_id: base.id.clone(), name: name.into(), mode: mode as i32, ..Default::default() };
            let op = c.volumes.clone_volume(req).await.unwrap().into_inner();
            let t = c.wait_ok(&op.task_id).await;
            made.push(t.resource_id);
        }
        let import = pb::ImportVolumeRequest {
            pool: "rbd".into(),
            name: "imported".into(),
            node_id: node_id.clone(),
            path: image.display().to_string(),
            format: pb::ImageFormat::Qcow2 as i32,
            ..Default::default()
        };
        let op = c.volumes.import_volume(import).await.unwrap().into_inner();
        let t = c.wait_ok(&op.task_id).await;
        made.push(t.resource_id);
        let resize = pb::ResizeVolumeRequest { volume_id: made[1].clone(), new_size_bytes: 128 * MIB };
        let op = c.volumes.resize_volume(resize).await.unwrap().into_inner();
        c.wait_ok(&op.task_id).await;
        for id in made.iter().rev() {
            let op = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: id.clone() }).await.unwrap();
            c.wait_ok(&op.into_inner().task_id).await;
        }
        let op = c.pools.delete_pool(pb::DeletePoolRequest { pool }).await.unwrap();
        c.wait_ok(&op.into_inner().task_id).await;
    });
    stop.store(true, Ordering::Relaxed);
    let (seen, hits) = watcher.join().unwrap();
    assert!(hits.is_empty(), "the key showed in a process's arguments or environment: {hits:#?}");
    assert!(seen.contains("qemu-img"), "the watch saw the copies' qemu-img children: {seen:?}");

    for log in ["control.log", "node.log"] {
        let text = std::fs::read_to_string(root.path().join(log)).unwrap();
        assert!(text.lines().count() > 20, "{log} was written at debug level");
        let leaked: Vec<&str> = text.lines().filter(|l| l.contains(&key)).collect();
        assert!(leaked.is_empty(), "{log} shows the key: {leaked:#?}");
    }
    assert_no_key_outside_keyrings(&node_dir, &key);
}

/// After the pool's delete, no file of the node holds the key any more
/// (its keyring went with the pool).
fn assert_no_key_outside_keyrings(dir: &Path, key: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.metadata().unwrap().is_dir() {
            assert_no_key_outside_keyrings(&path, key);
        } else if std::fs::read(&path).unwrap().windows(key.len()).any(|w| w == key.as_bytes()) {
            panic!("{} still holds the key after the pool was deleted", path.display());
        }
    }
}
