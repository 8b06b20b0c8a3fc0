//! kill -9 in the middle of a move between nodes (both daemons and the
//! control plane real processes): the source node killed while it exports
//! (its export dies with it; the retried copy gets a new one from the
//! restarted node), then the pulling node killed (its partial copy is never
//! a volume; the retried copy pulls again). Each move ends with the volume
//! whole on its new node, the source deleted, and no export, key or copy
//! process left.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Clients, file_names, tools_running_on};
use common::process::{spawn_logged, spawn_node, write_config, write_node_config};
use limiquantix_api::v1 as pb;
use limiquantix_testkit::{ChildGuard, free_port};

const MIB: u64 = 1 << 20;
const COPY_MIB_PER_SEC: u64 = 24;

struct Node {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    id: String,
    process: ChildGuard,
}

impl Node {
    fn start(root: &Path, name: &str, url: &str) -> Self {
        let dir = root.join(name);
        let config = write_node_config(&dir, free_port().unwrap(), url, COPY_MIB_PER_SEC);
        let id = limiquantix_node::registration::node_id(&dir.join("state")).unwrap();
        let log = root.join(format!("{name}.log"));
        let process = spawn_node(&config, &log);
        Self { dir, config, log, id, process }
    }
    fn restart(&mut self) {
        self.process = spawn_node(&self.config, &self.log);
    }
    fn pool(&self) -> PathBuf {
        self.dir.join("pools/p")
    }
}



async fn wait_copying(c: &mut Clients, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = c.tasks.get_task(pb::GetTaskRequest { task_id: task_id.into() }).await.unwrap().into_inner();
        let done = t.progress.as_ref().map_or(0.0, |p| p.done_bytes as f64 / p.total_bytes.max(1) as f64);
        if done > 0.2 {
            return;
        }
        assert!(t.state == pb::TaskState::Running as i32 && Instant::now() < deadline, "the copy never got going: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_move_between_nodes_survives_either_node_killed_mid_copy() {
    let root = tempfile::tempdir().unwrap();
    let cp_port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{cp_port}");
    let cp_config = write_config(root.path(), cp_port);
    let text = std::fs::read_to_string(&cp_config).unwrap().replace("saga_retry_secs = 30", "saga_retry_secs = 60");
    std::fs::write(&cp_config, text).unwrap();
    let _cp = spawn_logged(&cp_config, &root.path().join("control.log"));
    let mut a = Node::start(root.path(), "a", &url);
    let b = Node::start(root.path(), "b", &url);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Clients::connect(&url).await;
        for n in [&a, &b] {
            c.wait_node_online(&n.id).await;
        }
        c.local_pool("pa", &a.id, &a.pool()).await;
        c.local_pool("pb", &b.id, &b.pool()).await;
        let v = c.create_volume("pa", "data", 512 * MIB).await;
        let mut write = Command::new("qemu-io");
        write.args(["-f", "qcow2"]);
        for i in 0..48u64 {
            write.arg("-c").arg(format!("write -P {:#x} {} 4M", i + 1, i * 10 * MIB));
        }
        assert!(write.arg(a.pool().join(format!("lq-{}.qcow2", v.id))).status().unwrap().success());
        let reference = root.path().join("reference.raw");
        let out = Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw"]).arg(a.pool().join(format!("lq-{}.qcow2", v.id))).arg(&reference).output().unwrap();
        assert!(out.status.success());

        // Round 1: a → b, the exporting node a killed. Round 2: b → a, the
        // pulling node a killed.
        for (round, (to, from_node, to_node)) in [("pb", "a", "b"), ("pa", "b", "a")].into_iter().enumerate() {
            let op = c.volumes.move_volume(pb::MoveVolumeRequest { volume_id: v.id.clone(), pool: to.into(), ..Default::default() }).await;
            let task_id = op.unwrap().into_inner().task_id;
            wait_copying(&mut c, &task_id).await;
            a.process.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            a.restart();
            let task = c.wait(&task_id).await;
            assert_eq!(task.state, pb::TaskState::Succeeded as i32, "round {round}: {task:?}");
            let moved = c.volume(&v.id).await.unwrap();
            let (target, source) = if to_node == "b" { (&b, &a) } else { (&a, &b) };
            assert_eq!((moved.node_id.as_str(), moved.state), (target.id.as_str(), pb::VolumeState::Available as i32), "round {round}");
            let file = target.pool().join(format!("lq-{}.qcow2", v.id));
            let same = Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "qcow2"]).arg(&reference).arg(&file).output().unwrap();
            assert!(same.status.success(), "round {round}: the copy equals the source: {}", String::from_utf8_lossy(&same.stdout));
            assert!(file_names(&source.pool()).is_empty(), "round {round}: the source on {from_node} is deleted: {:?}", file_names(&source.pool()));
            assert_eq!(file_names(&target.pool()), vec![format!("lq-{}.qcow2", v.id)], "round {round}: one whole copy");
            for n in [&a, &b] {
                assert!(file_names(&n.dir.join("state/exports")).is_empty() && file_names(&n.dir.join("state/pulls")).is_empty(), "round {round}: no key left");
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !tools_running_on(root.path(), &["qemu-nbd", "qemu-img"]).is_empty() {
                assert!(Instant::now() < deadline, "round {round}: left running: {:?}", tools_running_on(root.path(), &["qemu-nbd", "qemu-img"]));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    drop(b);
}
