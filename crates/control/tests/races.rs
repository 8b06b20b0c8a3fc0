//! Operations racing on related volumes never leave anything stuck: every
//! run ends with each volume at rest, every task ended, the records and the
//! node's files in agreement, and no hold left on a source.

mod common;

use std::time::Duration;

use common::{Cluster, GIB};
use limiquantix_api::v1 as pb;
use tonic::Code;

/// A random gap of 0 to 20 ms.
fn gap() -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 21) as u64)
}

async fn assert_at_rest(k: &mut Cluster) {
    let running = k.c.tasks.list_tasks(pb::ListTasksRequest { running_only: true, ..Default::default() }).await.unwrap();
    assert!(running.into_inner().tasks.is_empty(), "tasks still running");
    let volumes = k.c.volumes.list_volumes(pb::ListVolumesRequest { page_size: 1000, ..Default::default() }).await.unwrap();
    let volumes = volumes.into_inner().volumes;
    for v in &volumes {
        assert_eq!(v.state, pb::VolumeState::Available as i32, "not at rest: {v:?}");
        assert!(v.task_id.is_empty() && v.held_by_task_ids.is_empty(), "still busy or held: {v:?}");
    }
    let mut expected: Vec<String> = volumes.iter().map(|v| format!("lq-{}.qcow2", v.id)).collect();
    expected.sort();
    assert_eq!(k.files(), expected, "the node's files and the records disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_a_clone_of_the_same_volume_never_sticks() {
    let mut k = Cluster::start().await;
    let (mut deletes_refused, mut clones_refused) = (0, 0);
    for run in 0..50 {
        let base = k.c.create_volume("p1", &format!("base{run}"), GIB).await;
        let mode = if run % 2 == 0 { pb::CloneMode::Linked } else { pb::CloneMode::Full };
        let clone = pb::CloneVolumeRequest {
            source_volume_id: base.id.clone(),
            name: format!("clone{run}"),
            mode: mode as i32,
            ..Default::default()
        };
        let mut c = k.c.clone();
        let cloning = tokio::spawn(async move { c.volumes.clone_volume(clone).await });
        tokio::time::sleep(gap()).await;
        let delete = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: base.id.clone() }).await;
        let clone = cloning.await.unwrap();

        let mut clone_id = None;
        match clone {
            Ok(op) => {
                let op = op.into_inner();
                let task = k.c.wait(&op.task_id).await;
                assert_eq!(task.state, pb::TaskState::Succeeded as i32, "run {run}: an accepted clone of a held source completes: {task:?}");
                clone_id = Some(op.volume.unwrap().id);
            }
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "run {run}: {e:?}");
                clones_refused += 1;
            }
        }
        match delete {
            Ok(op) => {
                let task = k.c.wait(&op.into_inner().task_id).await;
                assert_eq!(task.state, pb::TaskState::Succeeded as i32, "run {run}: {task:?}");
            }
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "run {run}: {e:?}");
                assert!(e.message().contains("clone"), "run {run}: the refusal names the clone: {e:?}");
                deletes_refused += 1;
            }
        }
        assert_at_rest(&mut k).await;
        // Clean up for the next run: the clone first (it may be linked to its base).
        for id in clone_id.iter().chain(std::iter::once(&base.id)) {
            if k.c.volume(id).await.is_ok() {
                let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: id.clone() }).await.unwrap();
                k.c.wait_ok(&op.into_inner().task_id).await;
            }
        }
    }
    eprintln!("50 races: {deletes_refused} deletes refused, {clones_refused} clones refused");
    assert_at_rest(&mut k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_the_node_refuses_unwinds_at_once_and_keeps_the_snapshots() {
    let mut k = Cluster::start().await;
    let base = k.c.create_volume("p1", "base", GIB).await;
    let snap = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: base.id.clone(), name: "keep".into(), ..Default::default() }).await;
    k.c.wait_ok(&snap.unwrap().into_inner().task_id).await;
    // A linked clone made on the node behind the control plane's back: the
    // control plane sees no dependent, the node does.
    let mut node = limiquantix_api::v1::node_storage_client::NodeStorageClient::connect(format!("http://{}", k.node_addr()))
        .await
        .unwrap();
    let child = uuid::Uuid::new_v4().to_string();
    let req = pb::NodeCloneVolumeRequest {
        pool_id: k.pool.id.clone(),
        source_volume_id: base.id.clone(),
        volume_id: child.clone(),
        mode: pb::CloneMode::Linked as i32,
        spec: None,
    };
    let mut events = node.clone_volume(req).await.unwrap().into_inner();
    while events.message().await.unwrap().is_some() {}

    let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: base.id.clone() }).await.unwrap().into_inner();
    let started = std::time::Instant::now();
    let task = k.c.wait(&op.task_id).await;
    assert_eq!(task.state, pb::TaskState::Failed as i32, "{task:?}");
    assert_eq!(task.error_code, Code::FailedPrecondition as i32, "{task:?}");
    assert!(task.error.contains(&child), "the node's refusal names the clone: {task:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused for good, not retried: {:?}", started.elapsed());
    let base_now = k.c.volume(&base.id).await.unwrap();
    assert_eq!(base_now.state, pb::VolumeState::Available as i32, "back as it was: {base_now:?}");
    assert!(base_now.task_id.is_empty());
    let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: base.id.clone() }).await.unwrap();
    assert_eq!(snaps.into_inner().snapshots.len(), 1, "the snapshot record stays");
    let on_node = node
        .list_volume_snapshots(pb::ListVolumeSnapshotsRequest { pool_id: k.pool.id.clone(), volume_id: base.id.clone() })
        .await
        .unwrap();
    assert_eq!(on_node.into_inner().snapshots.len(), 1, "and so does the snapshot itself");
}
