//! Complete or absent (DESIGN.md rule 11) under kill -9: full clones, clones
//! from a snapshot, imports and moves (local -> Ceph), on a local pool and on
//! a Ceph pool, run while the node daemon or the control plane (both real
//! processes) is killed at several points of the copy. After a restart every
//! task ends either succeeded with a volume identical to its source
//! (`qemu-img compare`), or failed with nothing left behind (a move: the
//! volume whole where it was); no copy outlives the killed node, and nothing
//! stays half-made in a pool.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{ControlProcess, spawn_logged, spawn_node, write_config, write_node_config};
use common::Clients;
use limiquantix_api::v1 as pb;
use limiquantix_testkit::ceph::TEST_POOL;
use limiquantix_testkit::{Ceph, ChildGuard, free_port};

/// Slow enough to be caught mid-copy, fast enough for CI: 160 MiB of data
/// per copy takes about 3 s, a 512 MiB disk through qemu-img about 10 s.
const COPY_MIB_PER_SEC: u64 = 48;
const DATA_MIB: u64 = 40;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    Node,
    ControlPlane,
}

struct World {
    root: tempfile::TempDir,
    ceph: Ceph,
    cp_config: PathBuf,
    url: String,
    cp: ControlProcess,
    node_config: PathBuf,
    node: ChildGuard,
    node_id: String,
}

impl World {
    fn node_dir(&self) -> PathBuf {
        self.root.path().join("node")
    }
    fn pool_dir(&self) -> PathBuf {
        self.node_dir().join("pools/p1")
    }
    fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
    fn rbd_url(&self, image: &str) -> String {
        format!("rbd:{TEST_POOL}/{image}:conf={}:id=admin", self.ceph.conf().display())
    }
    fn restart(&mut self, victim: Victim) {
        match victim {
            Victim::Node => self.node = spawn_node(&self.node_config, &self.log("node.log")),
            Victim::ControlPlane => self.cp = spawn_logged(&self.cp_config, &self.log("control.log")),
        }
    }
    fn kill(&mut self, victim: Victim) {
        match victim {
            Victim::Node => self.node.kill(),
            Victim::ControlPlane => self.cp.child.kill(),
        }
    }
}

/// A copy under test: how it is started and what it must equal.
struct Copy {
    what: String,
    task_id: String,
    volume_id: String,
    pool: &'static str,
    /// A move: the volume stays in this pool if the move does not finish.
    moved_from: Option<&'static str>,
    /// `qemu-img compare` arguments of the reference: (format, filename).
    reference: (String, String),
}

fn qemu_io(format: &str, target: &str, cmd: &str) {
    let out = Command::new("qemu-io").args(["-f", format, "-c", cmd, target]).output().unwrap();
    assert!(out.status.success(), "qemu-io {cmd} {target}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Disks under test: small enough for the test cluster's memstore.
const DISK_MIB: u64 = 512;

/// Writes `DATA_MIB` MiB of `pattern` at four places of a `DISK_MIB` disk.
fn write_data(format: &str, target: &str, pattern: u8) {
    for offset in [0, 150, 300, DISK_MIB - DATA_MIB] {
        qemu_io(format, target, &format!("write -P {pattern} {offset}M {DATA_MIB}M"));
    }
}

fn same_data(a: &(String, String), b: &(String, String)) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", &a.0, "-F", &b.0, &a.1, &b.1])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

async fn pool_id(c: &mut Clients, name: &str) -> String {
    c.pools.get_pool(pb::GetPoolRequest { pool: name.into() }).await.unwrap().into_inner().id
}


async fn start_copies(w: &World, c: &mut Clients, round: usize, ids: &Sources) -> Vec<Copy> {
    let mut copies = Vec::new();
    let refs = &ids.refs;
    let plain = pb::CloneVolumeRequest {
        source_volume_id: ids.plain.clone(),
        name: format!("r{round}-plain-full"),
        mode: pb::CloneMode::Full as i32,
        ..Default::default()
    };
    let op = c.volumes.clone_volume(plain).await.unwrap().into_inner();
    copies.push(Copy {
        what: "local full clone of a volume without snapshots".into(),
        task_id: op.task_id,
        volume_id: op.volume.unwrap().id,
        pool: "p1",
        moved_from: None,
        reference: refs[6].clone(),
    });
    // A move local -> Ceph of a volume made for it (same data as plain).
    let op = c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: ids.to_move[round].clone(), pool: "rbd".into(), ..Default::default() }).await;
    copies.push(Copy {
        what: "move local -> Ceph".into(),
        task_id: op.unwrap().into_inner().task_id,
        volume_id: ids.to_move[round].clone(),
        pool: "rbd",
        moved_from: Some("p1"),
        reference: refs[6].clone(),
    });
    for (pool, src, image, pool_refs) in [("p1", &ids.local, &ids.local_image, &refs[0..3]), ("rbd", &ids.ceph, &ids.ceph_image, &refs[3..6])] {
        let full = pb::CloneVolumeRequest {
            source_volume_id: src.clone(),
            name: format!("r{round}-{pool}-full"),
            mode: pb::CloneMode::Full as i32,
            ..Default::default()
        };
        let op = c.volumes.clone_volume(full).await.unwrap().into_inner();
        copies.push(Copy {
            what: format!("{pool} full clone"),
            task_id: op.task_id,
            volume_id: op.volume.unwrap().id,
            pool,
            moved_from: None,
            reference: pool_refs[0].clone(),
        });
        let from_snap = pb::CreateVolumeRequest {
            pool: pool.into(),
            name: format!("r{round}-{pool}-snap"),
            source: Some(pb::VolumeSource {
                source: Some(pb::volume_source::Source::Snapshot(pb::SnapshotSource {
                    volume_id: src.clone(),
                    snapshot_name: "s1".into(),
                })),
            }),
            ..Default::default()
        };
        let op = c.volumes.create_volume(from_snap).await.unwrap().into_inner();
        copies.push(Copy {
            what: format!("{pool} clone from snapshot"),
            task_id: op.task_id,
            volume_id: op.volume.unwrap().id,
            pool,
            moved_from: None,
            reference: pool_refs[1].clone(),
        });
        let import = pb::ImportVolumeRequest {
            pool: pool.into(),
            name: format!("r{round}-{pool}-import"),
            path: image.display().to_string(),
            format: pb::ImageFormat::Qcow2 as i32,
            node_id: w.node_id.clone(),
            ..Default::default()
        };
        let op = c.volumes.import_volume(import).await.unwrap().into_inner();
        copies.push(Copy {
            what: format!("{pool} import"),
            task_id: op.task_id,
            volume_id: op.volume.unwrap().id,
            pool,
            moved_from: None,
            reference: pool_refs[2].clone(),
        });
    }
    copies
}

struct Sources {
    /// A local volume without snapshots: its full clone is a kernel sparse copy.
    plain: String,
    /// Per round, a local volume with plain's data, moved to Ceph.
    to_move: Vec<String>,
    local: String,
    ceph: String,
    /// One image file per pool: a concurrent import holds its file open.
    local_image: PathBuf,
    ceph_image: PathBuf,
    /// local full, local snapshot, local import, ceph full, ceph snapshot, ceph import, plain
    refs: Vec<(String, String)>,
}

/// The smallest fraction done among the copies (a finished one counts as 1):
/// once it passes a point, every copy still running is past it.
async fn progress(c: &mut Clients, copies: &[Copy]) -> f64 {
    let mut least: f64 = 1.0;
    for copy in copies {
        let t = c.tasks.get_task(pb::GetTaskRequest { task_id: copy.task_id.clone() }).await.unwrap().into_inner();
        let fraction = match t.progress.filter(|p| p.total_bytes > 0 && p.phase == "copying") {
            _ if t.state != pb::TaskState::Running as i32 => 1.0,
            Some(p) => p.done_bytes as f64 / p.total_bytes as f64,
            None => 0.0,
        };
        least = least.min(fraction);
    }
    least
}

/// What each pool holds on its storage: local files and RBD images (both
/// final and half-made names), to compare with the store's records.
fn stored_names(w: &World) -> (Vec<String>, Vec<String>) {
    let mut files: Vec<String> =
        std::fs::read_dir(w.pool_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let ls = w.ceph.rbd(&["ls", "--format", "json", TEST_POOL]).unwrap();
    let mut images: Vec<String> = serde_json::from_str(&ls).unwrap();
    images.sort();
    (files, images)
}

async fn expected_names(c: &mut Clients) -> (Vec<String>, Vec<String>) {
    let all = c.volumes.list_volumes(pb::ListVolumesRequest { page_size: 1000, ..Default::default() }).await.unwrap().into_inner();
    let mut files = Vec::new();
    let mut images = Vec::new();
    let local = c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner().id;
    for v in all.volumes {
        assert!(
            v.state == pb::VolumeState::Available as i32 && v.task_id.is_empty(),
            "volume left in a transitional state: {v:?}"
        );
        if v.pool_id == local {
            let ext = if v.format == pb::VolumeFormat::Raw as i32 { "raw" } else { "qcow2" };
            files.push(format!("lq-{}.{ext}", v.id));
        } else {
            images.push(format!("lq-{}", v.id));
        }
    }
    files.sort();
    images.sort();
    (files, images)
}

#[test]
fn copies_are_complete_or_absent_when_a_daemon_is_killed_mid_copy() {
    let ceph = Ceph::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cp_port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{cp_port}");
    let cp_config = write_config(root.path(), cp_port);
    let cp = spawn_logged(&cp_config, &root.path().join("control.log"));
    let node_dir = root.path().join("node");
    let node_config = write_node_config(&node_dir, free_port().unwrap(), &url, COPY_MIB_PER_SEC);
    let node_id = limiquantix_node::registration::node_id(&node_dir.join("state")).unwrap();
    let node = spawn_node(&node_config, &root.path().join("node.log"));
    let mut w = World { root, ceph, cp_config, url, cp, node_config, node, node_id };

    rt.block_on(async {
        let mut c = Clients::connect(&w.url).await;
        c.wait_node_online(&w.node_id).await;
        c.local_pool("p1", &w.node_id, &w.pool_dir()).await;
        c.ceph_pool("rbd", &w.ceph).await;

        // Sources: data, a snapshot s1, then other data (the snapshot differs from now).
        let plain = c.create_volume("p1", "plain", DISK_MIB << 20).await;
        let plain_path = w.pool_dir().join(format!("lq-{}.qcow2", plain.id)).display().to_string();
        write_data("qcow2", &plain_path, 0x66);
        let local = c.create_volume("p1", "src", DISK_MIB << 20).await;
        let local_path = w.pool_dir().join(format!("lq-{}.qcow2", local.id));
        let lp = local_path.display().to_string();
        write_data("qcow2", &lp, 0x11);
        let ceph_src = c.create_volume("rbd", "rsrc", DISK_MIB << 20).await;
        let rsrc = w.rbd_url(&format!("lq-{}", ceph_src.id));
        write_data("raw", &rsrc, 0x22);
        for v in [&local.id, &ceph_src.id] {
            let op = c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: v.clone(), name: "s1".into(), ..Default::default() }).await;
            c.wait_ok(&op.unwrap().into_inner().task_id).await;
        }
        qemu_io("qcow2", &lp, "write -P 0x33 100M 8M");
        qemu_io("raw", &rsrc, "write -P 0x44 100M 8M");
        let local_snap = w.root.path().join("local-s1.raw");
        let out = Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name=s1", &lp, local_snap.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut images = Vec::new();
        for name in ["local.qcow2", "ceph.qcow2"] {
            let image = w.node_dir().join("images").join(name);
            let ip = image.display().to_string();
            assert!(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", &ip, &format!("{DISK_MIB}M")]).status().unwrap().success());
            write_data("qcow2", &ip, 0x55);
            images.push(image);
        }
        let refs = vec![
            ("qcow2".to_owned(), lp.clone()),
            ("raw".to_owned(), local_snap.display().to_string()),
            ("qcow2".to_owned(), images[0].display().to_string()),
            ("raw".to_owned(), rsrc.clone()),
            ("raw".to_owned(), w.rbd_url(&format!("lq-{}@s1", ceph_src.id))),
            ("qcow2".to_owned(), images[1].display().to_string()),
            ("qcow2".to_owned(), plain_path.clone()),
        ];
        let rounds = [(Victim::Node, 0.2), (Victim::Node, 0.65), (Victim::ControlPlane, 0.25), (Victim::ControlPlane, 0.7)];
        let mut to_move = Vec::new();
        for round in 0..rounds.len() {
            let req = pb::CloneVolumeRequest {
                source_volume_id: plain.id.clone(),
                name: format!("r{round}-moving"),
                mode: pb::CloneMode::Full as i32,
                ..Default::default()
            };
            let op = c.volumes.clone_volume(req).await.unwrap().into_inner();
            c.wait_ok(&op.task_id).await;
            to_move.push(op.volume.unwrap().id);
        }
        let sources = Sources {
            to_move,
            plain: plain.id.clone(),
            local: local.id.clone(), ceph: ceph_src.id.clone(), local_image: images[0].clone(), ceph_image: images[1].clone(),
            refs,
        };

        for (round, (victim, at)) in rounds.into_iter().enumerate() {
            let copies = start_copies(&w, &mut c, round, &sources).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while progress(&mut c, &copies).await < at {
                assert!(Instant::now() < deadline, "round {round}: the copies never reached {at}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for copy in &copies {
                let t = c.tasks.get_task(pb::GetTaskRequest { task_id: copy.task_id.clone() }).await.unwrap().into_inner();
                eprintln!("round {round} at kill: {} {:?} {}", copy.what, t.progress, t.step);
            }
            w.kill(victim);
            if victim == Victim::Node {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let orphans = common::tools_running_on(w.root.path(), &["qemu-img"]);
                assert!(orphans.is_empty(), "round {round}: copies outlived the killed node: {orphans:?}");
            }
            w.restart(victim);
            let mut c2 = Clients::connect(&w.url).await;
            c2.wait_node_online(&w.node_id).await;
            for copy in &copies {
                let task = c2.wait(&copy.task_id).await;
                eprintln!("round {round} ({victim:?} at {at}) {}: {:?} {}", copy.what, pb::TaskState::try_from(task.state), task.error);
                let record = c2.volume(&copy.volume_id).await;
                if let Some(from) = copy.moved_from {
                    // A move ends with the volume whole in one pool: the target if it succeeded, else where it was.
                    let v = record.unwrap_or_else(|e| panic!("round {round} {}: the volume is gone: {e}", copy.what));
                    let (to_id, from_id) = (pool_id(&mut c2, copy.pool).await, pool_id(&mut c2, from).await);
                    let at = if task.state == pb::TaskState::Succeeded as i32 {
                        assert_eq!(v.pool_id, to_id, "round {round} {}: succeeded, not switched: {v:?}", copy.what);
                        ("raw".to_owned(), w.rbd_url(&format!("lq-{}", v.id)))
                    } else {
                        assert_eq!(v.pool_id, from_id, "round {round} {}: unwound but not in its pool: {v:?} {task:?}", copy.what);
                        ("qcow2".to_owned(), w.pool_dir().join(format!("lq-{}.qcow2", v.id)).display().to_string())
                    };
                    if let Err(diff) = same_data(&copy.reference, &at) {
                        panic!("round {round} ({victim:?} at {at:?}) {}: differs from its source: {diff}", copy.what);
                    }
                    continue;
                }
                if task.state == pb::TaskState::Succeeded as i32 {
                    let v = record.unwrap_or_else(|e| panic!("round {round} {}: succeeded without a volume: {e}", copy.what));
                    let result = if copy.pool == "p1" {
                        let ext = if v.format == pb::VolumeFormat::Raw as i32 { "raw" } else { "qcow2" };
                        (ext.to_owned(), w.pool_dir().join(format!("lq-{}.{ext}", v.id)).display().to_string())
                    } else {
                        ("raw".to_owned(), w.rbd_url(&format!("lq-{}", v.id)))
                    };
                    if let Err(diff) = same_data(&copy.reference, &result) {
                        panic!("round {round} ({victim:?} at {at}) {}: succeeded but differs from its source: {diff}", copy.what);
                    }
                } else {
                    assert_eq!(task.state, pb::TaskState::Failed as i32, "round {round} {}: {task:?}", copy.what);
                    assert!(record.is_err(), "round {round} {}: failed but its record stays", copy.what);
                }
            }
            // Storage and records agree: no half-made file or image stays (the
            // purger removes what a killed writer still holds once its watch expires).
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let expected = expected_names(&mut c2).await;
                let stored = stored_names(&w);
                if stored == expected {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round} ({victim:?}): stored {stored:?}, records {expected:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let running = c2.tasks.list_tasks(pb::ListTasksRequest { running_only: true, ..Default::default() }).await.unwrap();
            assert!(running.into_inner().tasks.is_empty(), "round {round}: tasks still running");
            // The round's volumes go, so the next round has room.
            for copy in &copies {
                if c2.volume(&copy.volume_id).await.is_ok() {
                    let op = c2.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: copy.volume_id.clone() }).await;
                    c2.wait_ok(&op.unwrap().into_inner().task_id).await;
                }
            }
            c = c2;
        }
    });
}
