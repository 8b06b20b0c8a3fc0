//! The control plane's API against a real node daemon (and real qemu-img):
//! volumes end to end, bad input, conflicts, races, space accounting.

mod common;

use common::{Cluster, GIB, create_req};
use limiquantix_api::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volumes_end_to_end_with_records_matching_the_disk() {
    let mut k = Cluster::start().await;
    let pool = k.pool.clone();
    assert_eq!(pool.state, pb::PoolState::Ready as i32);
    assert!(pool.capacity.unwrap().total_bytes > 0, "capacity comes from the backend");

    let base = k.c.create_volume("p1", "base", GIB).await;
    assert_eq!((base.state, base.size_bytes, base.node_id.as_str()), (pb::VolumeState::Available as i32, GIB, k.node_id.as_str()));
    assert!(base.task_id.is_empty());

    let clone_req = |name: &str, mode: pb::CloneMode| pb::CloneVolumeRequest {
        source_volume_id: base.id.clone(),
        name: name.into(),
        mode: mode as i32,
        ..Default::default()
    };
    let op = k.c.volumes.clone_volume(clone_req("linked", pb::CloneMode::Linked)).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let linked = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    assert_eq!(linked.backing_volume_id, base.id);
    let op = k.c.volumes.clone_volume(clone_req("full", pb::CloneMode::Full)).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let full = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    assert!(full.backing_volume_id.is_empty());

    // Snapshots.
    let op = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: full.id.clone(), name: "s1".into(), ..Default::default() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: full.id.clone() }).await.unwrap().into_inner().snapshots;
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0].created_unix_seconds > 0);
    assert_eq!(k.c.volume(&full.id).await.unwrap().snapshot_count, 1);
    let op = k.c.volumes.revert_snapshot(pb::RevertSnapshotRequest { volume_id: full.id.clone(), name: "s1".into() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let from_snap = pb::CreateVolumeRequest {
        source: Some(pb::VolumeSource {
            source: Some(pb::volume_source::Source::Snapshot(pb::SnapshotSource { volume_id: full.id.clone(), snapshot_name: "s1".into() })),
        }),
        ..create_req("p1", "restored", 0)
    };
    let op = k.c.volumes.create_volume(from_snap).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;

    // Resize, and space accounting.
    let op = k.c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: full.id.clone(), new_size_bytes: 2 * GIB }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    assert_eq!(k.c.volume(&full.id).await.unwrap().size_bytes, 2 * GIB);
    let p = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p.provisioned_bytes, GIB + GIB + 2 * GIB + GIB, "base + linked + full(grown) + restored");

    // Listing with filters and pages.
    let list = |req: pb::ListVolumesRequest| {
        let mut v = k.c.volumes.clone();
        async move { v.list_volumes(req).await.unwrap().into_inner() }
    };
    let all = list(pb::ListVolumesRequest { pool: "p1".into(), ..Default::default() }).await;
    assert_eq!(all.volumes.len(), 4);
    let named = list(pb::ListVolumesRequest { name_prefix: "f".into(), ..Default::default() }).await;
    assert_eq!(named.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["full"]);
    let page1 = list(pb::ListVolumesRequest { page_size: 3, ..Default::default() }).await;
    assert_eq!(page1.volumes.len(), 3);
    let page2 = list(pb::ListVolumesRequest { page_size: 3, page_token: page1.next_page_token.clone(), ..Default::default() }).await;
    assert_eq!(page2.volumes.len(), 1);
    assert!(page2.next_page_token.is_empty());

    // Sorted listings, a page at a time: every volume once, in order, ties by id.
    let sorted = |order: pb::VolumeOrder, descending: bool| {
        let list = &list;
        async move {
            let (mut rows, mut token) = (Vec::new(), String::new());
            loop {
                let req = pb::ListVolumesRequest { page_size: 3, page_token: token, order_by: order as i32, descending, ..Default::default() };
                let page = list(req).await;
                rows.extend(page.volumes);
                if page.next_page_token.is_empty() {
                    break rows;
                }
                token = page.next_page_token;
            }
        }
    };
    let mut names: Vec<String> = all.volumes.iter().map(|v| v.name.clone()).collect();
    names.sort();
    let by_name = sorted(pb::VolumeOrder::Name, false).await;
    assert_eq!(by_name.iter().map(|v| v.name.clone()).collect::<Vec<_>>(), names);
    let by_size = sorted(pb::VolumeOrder::Size, true).await;
    let mut want: Vec<(u64, String)> = all.volumes.iter().map(|v| (v.size_bytes, v.id.clone())).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(by_size.iter().map(|v| (v.size_bytes, v.id.clone())).collect::<Vec<_>>(), want);
    assert_eq!(by_size[0].name, "full", "the grown volume is the largest");
    // A token is only good for the order that gave it.
    let first = list(pb::ListVolumesRequest { page_size: 1, order_by: pb::VolumeOrder::Name as i32, ..Default::default() }).await;
    let other = pb::ListVolumesRequest { page_token: first.next_page_token, order_by: pb::VolumeOrder::Size as i32, ..Default::default() };
    let err = k.c.volumes.clone().list_volumes(other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // The files on the node are exactly the volumes in the store.
    let mut ids: Vec<String> = all.volumes.iter().map(|v| format!("lq-{}.", v.id)).collect();
    ids.sort();
    let files = k.files();
    assert_eq!(files.len(), 4, "{files:?}");
    for id in &ids {
        assert!(files.iter().any(|f| f.starts_with(id)), "{id} missing in {files:?}");
    }

    // Delete: the base is refused while its linked clone exists.
    let err = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: base.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&linked.id), "{err:?}");
    for v in all.volumes.iter().filter(|v| v.id != base.id).chain(std::iter::once(&base)) {
        let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: v.id.clone() }).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
    }
    assert!(k.files().is_empty(), "{:?}", k.files());
    let p = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p.provisioned_bytes, 0);
    assert_eq!(k.c.volume(&base.id).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let mut k = Cluster::start().await;
    let v = k.c.create_volume("p1", "good", GIB).await;
    let files = k.files();
    let long = "x".repeat(64);
    let bad_names = ["", "a/b", "..", "a b", "<x>", "a&b", "it's", "\"q\"", "-rf", long.as_str(), "Upper"];
    for name in bad_names {
        let err = k.c.volumes.create_volume(create_req("p1", name, GIB)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "volume name {name:?}");
        let err = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: v.id.clone(), name: name.into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "snapshot name {name:?}");
        let req = pb::CreatePoolRequest {
            name: name.into(),
            config: Some(pb::PoolConfig { backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: "/x".into() })) }),
            node_ids: vec![k.node_id.clone()],
            ..Default::default()
        };
        assert_eq!(k.c.pools.create_pool(req).await.unwrap_err().code(), Code::InvalidArgument, "pool name {name:?}");
    }
    // A pool of a kind the nodes report as unshared (local) lives on exactly one node.
    let local = || pb::PoolConfig { backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path: "/x".into() })) };
    for node_ids in [vec![], vec![k.node_id.clone(), k.node_id.clone()]] {
        let req = pb::CreatePoolRequest { name: "nowhere".into(), config: Some(local()), node_ids, ..Default::default() };
        let err = k.c.pools.create_pool(req).await.unwrap_err();
        assert!(err.code() == Code::InvalidArgument && err.message().contains("exactly one node"), "{err:?}");
    }
    // Names shaped like ids would shadow ids where both are accepted; snapshot
    // names every backend refuses are refused before any task starts.
    let uuid_name = uuid::Uuid::new_v4().to_string();
    let err = k.c.volumes.create_volume(create_req("p1", &uuid_name, GIB)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("looks like an id"), "{err:?}");
    for name in ["1", "2024", "lq-clone-x"] {
        let err = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: v.id.clone(), name: name.into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "snapshot name {name:?}");
    }
    for size in [0u64, 1000, (1 << 63) + 512, u64::MAX] {
        let err = k.c.volumes.create_volume(create_req("p1", "sized", size)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "size {size}");
    }
    let err = k.c.volumes.resize_volume(pb::ResizeVolumeRequest { volume_id: v.id.clone(), new_size_bytes: GIB / 2 }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("shrink"));
    assert_eq!(k.c.volumes.create_volume(create_req("nope", "x", GIB)).await.unwrap_err().code(), Code::NotFound);
    let ghost = uuid::Uuid::new_v4().to_string();
    assert_eq!(k.c.volume(&ghost).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(k.c.volume("../../etc").await.unwrap_err().code(), Code::InvalidArgument);
    let err = k.c.volumes.create_volume(create_req("p1", "good", GIB)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "a duplicate name in a pool");
    let image = pb::CreateVolumeRequest {
        source: Some(pb::VolumeSource {
            source: Some(pb::volume_source::Source::Image(pb::ImageSource { path: "/etc/passwd".into(), format: 2 })),
        }),
        ..create_req("p1", "img", 0)
    };
    assert_eq!(k.c.volumes.create_volume(image).await.unwrap_err().code(), Code::InvalidArgument);
    let err = k.c.volumes.detach_volume(pb::DetachVolumeRequest { volume_id: v.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "detaching a volume that is not attached");

    // An import the node refuses (outside its import directories) fails its task and leaves nothing.
    let req = pb::ImportVolumeRequest {
        pool: "p1".into(),
        name: "shadow".into(),
        path: "/etc/shadow".into(),
        format: pb::ImageFormat::Raw as i32,
        ..Default::default()
    };
    let op = k.c.volumes.import_volume(req).await.unwrap().into_inner();
    let task = k.c.wait(&op.task_id).await;
    assert_eq!(task.state, pb::TaskState::Failed as i32);
    assert_eq!(task.error_code, Code::InvalidArgument as i32, "{task:?}");
    assert!(task.error.contains("import director"), "{task:?}");
    assert_eq!(k.c.volume(&op.volume.unwrap().id).await.unwrap_err().code(), Code::NotFound, "the reservation was undone");

    assert_eq!(k.files(), files, "nothing changed on disk");
    let all = k.c.volumes.list_volumes(pb::ListVolumesRequest::default()).await.unwrap().into_inner().volumes;
    assert_eq!(all.len(), 1);
    let p = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p.provisioned_bytes, GIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_with_volumes_cannot_be_deleted() {
    let mut k = Cluster::start().await;
    let a = k.c.create_volume("p1", "a", GIB).await;
    k.c.create_volume("p1", "b", GIB).await;
    let err = k.c.pools.delete_pool(pb::DeletePoolRequest { pool: "p1".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("2 volume"), "{err:?}");
    for v in k.c.volumes.list_volumes(pb::ListVolumesRequest::default()).await.unwrap().into_inner().volumes {
        let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: v.id }).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
    }
    let op = k.c.pools.delete_pool(pb::DeletePoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    assert_eq!(k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap_err().code(), Code::NotFound);
    let _ = a;
    // The node forgot it too.
    let mut node = limiquantix_api::v1::node_storage_client::NodeStorageClient::connect(format!("http://{}", k.node_addr())).await.unwrap();
    let pools = node.list_storage_pools(pb::ListStoragePoolsRequest {}).await.unwrap().into_inner().pools;
    assert!(pools.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_beyond_the_overcommit_limit_is_refused_with_the_numbers() {
    let mut k = Cluster::start().await;
    let total = k.pool.capacity.unwrap().total_bytes;
    let too_big = (total / 512 + 1) * 512;
    let err = k.c.volumes.create_volume(create_req("p1", "huge", too_big)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains(&too_big.to_string()) && err.message().contains("overcommit"), "{err:?}");
    let req = pb::UpdatePoolRequest { pool: "p1".into(), overcommit_ratio: Some(3.0), ..Default::default() };
    let p = k.c.pools.update_pool(req).await.unwrap().into_inner();
    assert_eq!(p.overcommit_ratio, 3.0);
    let op = k.c.volumes.create_volume(create_req("p1", "huge", too_big)).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let req = pb::UpdatePoolRequest { pool: "p1".into(), overcommit_ratio: Some(1.0), ..Default::default() };
    assert_eq!(k.c.pools.update_pool(req).await.unwrap_err().code(), Code::FailedPrecondition, "would leave it over the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_reserves_its_virtual_size_before_it_copies() {
    let mut k = Cluster::start().await;
    let images = k.root.path().join("node/images");
    let import = |name: &str, file: &std::path::Path| pb::ImportVolumeRequest {
        pool: "p1".into(),
        name: name.into(),
        path: file.display().to_string(),
        format: pb::ImageFormat::Qcow2 as i32,
        ..Default::default()
    };
    // A qcow2 claiming 1 PiB, imported without a size, into a pool at overcommit 1.
    let huge = images.join("huge.qcow2");
    let made = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&huge).arg("1P").status().unwrap();
    assert!(made.success());
    let op = k.c.volumes.import_volume(import("huge", &huge)).await.unwrap().into_inner();
    let task = k.c.wait(&op.task_id).await;
    assert_eq!((task.state, task.error_code), (pb::TaskState::Failed as i32, Code::ResourceExhausted as i32), "{task:?}");
    assert!(task.error.contains(&(1u64 << 50).to_string()), "the refusal names the image's size: {task:?}");
    assert!(k.files().is_empty(), "nothing was copied: {:?}", k.files());
    let pool = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(pool.provisioned_bytes, 0, "nothing stays reserved");
    k.c.create_volume("p1", "after", GIB).await;

    // A real import reserves its virtual size from the start, not its --size (none given).
    let disk = images.join("disk.qcow2");
    let made = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("3G").status().unwrap();
    assert!(made.success());
    let op = k.c.volumes.import_volume(import("disk", &disk)).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let v = k.c.volume(&op.volume.unwrap().id).await.unwrap();
    assert_eq!(v.size_bytes, 3 * GIB);
    let pool = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(pool.provisioned_bytes, GIB + 3 * GIB);
    // Asking for less than the image is refused before anything is copied.
    let small = pb::ImportVolumeRequest { spec: Some(pb::VolumeSpec { size_bytes: GIB, ..Default::default() }), ..import("small", &disk) };
    let op = k.c.volumes.import_volume(small).await.unwrap().into_inner();
    let task = k.c.wait(&op.task_id).await;
    assert_eq!(task.error_code, Code::InvalidArgument as i32, "{task:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_page_newest_first_and_finished_ones_expire() {
    let mut k = Cluster::start_with(|c| c.task_retention_secs = 3, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let op = k.c.volumes.create_volume(create_req("p1", &format!("t{i}"), GIB)).await.unwrap().into_inner();
        k.c.wait_ok(&op.task_id).await;
        ids.push(op.task_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListTasksRequest { page_size: 2, page_token: token, ..Default::default() };
        let page = k.c.tasks.list_tasks(req).await.unwrap().into_inner();
        assert!(page.tasks.len() <= 2);
        seen.extend(page.tasks);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(seen.windows(2).all(|w| w[0].created_unix_seconds >= w[1].created_unix_seconds), "newest first");
    for id in &ids {
        assert_eq!(seen.iter().filter(|t| &t.id == id).count(), 1, "every task once: {id}");
    }
    let bad = pb::ListTasksRequest { page_token: "nonsense".into(), ..Default::default() };
    assert_eq!(k.c.tasks.list_tasks(bad).await.unwrap_err().code(), Code::InvalidArgument);

    // Past the retention, finished tasks go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = k.c.tasks.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks;
        if left.iter().all(|t| !ids.contains(&t.id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "finished tasks were kept past their retention: {left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let gone = k.c.tasks.get_task(pb::GetTaskRequest { task_id: ids[0].clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_operations_on_one_volume_exactly_one_wins() {
    let mut k = Cluster::start().await;
    for round in 0..5 {
        let v = k.c.create_volume("p1", &format!("race{round}"), GIB).await;
        let (mut a, mut b, mut c) = (k.c.volumes.clone(), k.c.volumes.clone(), k.c.volumes.clone());
        let (id1, id2, id3) = (v.id.clone(), v.id.clone(), v.id.clone());
        let (r1, r2, r3) = tokio::join!(
            async move { a.resize_volume(pb::ResizeVolumeRequest { volume_id: id1, new_size_bytes: 2 * GIB }).await.map(|r| r.into_inner().task_id) },
            async move { b.delete_volume(pb::DeleteVolumeRequest { volume_id: id2 }).await.map(|r| r.into_inner().task_id) },
            async move { c.create_snapshot(pb::CreateSnapshotRequest { volume_id: id3, name: "s".into(), ..Default::default() }).await.map(|r| r.into_inner().task_id) },
        );
        let results = [r1, r2, r3];
        let wins: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(wins.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                assert!(e.message().contains("busy"), "{e:?}");
            }
        }
        k.c.wait_ok(wins[0]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_all_land_and_are_all_accounted() {
    let mut k = Cluster::start().await;
    let mut handles = Vec::new();
    for i in 0..16 {
        let mut v = k.c.volumes.clone();
        handles.push(tokio::spawn(async move { v.create_volume(create_req("p1", &format!("v{i}"), GIB)).await.map(|r| r.into_inner()) }));
    }
    for h in handles {
        let op = h.await.unwrap().expect("every create is accepted: conflicts on the pool record are retried");
        k.c.wait_ok(&op.task_id).await;
    }
    let p = k.c.pools.get_pool(pb::GetPoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    assert_eq!(p.provisioned_bytes, 16 * GIB);
    assert_eq!(k.files().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_node_fails_operations_fast_naming_it() {
    let mut k = Cluster::start().await;
    let v = k.c.create_volume("p1", "a", GIB).await;
    k.node.take().unwrap().stop().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = k.c.nodes.get_node(pb::GetNodeRequest { node_id: k.node_id.clone() }).await.unwrap().into_inner();
        if n.state == pb::NodeState::Offline as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the node never went offline");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let start = std::time::Instant::now();
    let err = k.c.volumes.create_volume(create_req("p1", "b", GIB)).await.unwrap_err();
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "fails fast");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains(&k.node_id), "{err:?}");
    let err = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: v.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(k.c.volume(&v.id).await.unwrap().state, pb::VolumeState::Available as i32, "nothing changed");

    let url = k.cp.as_ref().unwrap().url();
    let body = common::http_get(&format!("{url}/metrics")).await.unwrap();
    assert!(body.contains(&format!("limiquantix_node_up{{node=\"{}\"", k.node_id)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_pools_rpcs_and_sagas() {
    let mut k = Cluster::start().await;
    k.c.create_volume("p1", "a", GIB).await;
    let url = k.cp.as_ref().unwrap().url();
    let body = common::http_get(&format!("{url}/metrics")).await.unwrap();
    for want in [
        "limiquantix_pool_total_bytes{pool=",
        "limiquantix_pool_provisioned_bytes{pool=",
        "limiquantix_rpc_requests_total{method=\"limiquantix.storage.v1.VolumeService/CreateVolume\"} ",
        "limiquantix_rpc_latency_seconds_bucket{",
        "limiquantix_sagas_total{kind=\"volume.create\",outcome=\"succeeded\"} 1",
        "limiquantix_node_up{",
    ] {
        assert!(body.contains(want), "missing {want} in:\n{body}");
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_and_reflection_are_served_next_to_the_api() {
    let k = Cluster::start().await;
    let url = k.cp.as_ref().unwrap().url();
    let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["limiquantix.storage.v1.VolumeService", "limiquantix.storage.v1.TaskService"] {
        let resp = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(resp.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut responses = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.message().await.unwrap().unwrap().message_response else {
        panic!("no service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in ["StoragePoolService", "VolumeService", "NodeService", "TaskService"] {
        assert!(names.contains(&format!("limiquantix.storage.v1.{want}").as_str()), "{names:?}");
    }
    let page = common::http_get(&format!("{url}/status")).await.unwrap();
    assert!(page.contains("200 OK") && page.contains("leading"), "{page}");
    // Every other path is the web console (embedded when ui/ was built), or a
    // page saying how to build it; an unknown gRPC method is still UNIMPLEMENTED.
    let console = common::http_get(&format!("{url}/volumes")).await.unwrap();
    assert!(console.contains("<title>LimiQuantix storage</title>"), "{console}");
}

#[tokio::test]
async fn a_volume_that_cannot_have_snapshots_is_refused_before_any_task() {
    let mut k = Cluster::start().await;
    let mut req = create_req("p1", "flat", GIB);
    req.spec.as_mut().unwrap().format = pb::VolumeFormat::Raw as i32;
    let op = k.c.volumes.create_volume(req).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let raw = op.volume.unwrap();
    let tasks_before = k.c.tasks.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks.len();

    let err = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: raw.id.clone(), name: "s1".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("flat") && err.message().contains("qcow2"), "names the volume and what to do: {err:?}");
    let tasks_after = k.c.tasks.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks.len();
    assert_eq!(tasks_after, tasks_before, "no task was started");
    let snaps = k.c.volumes.list_snapshots(pb::ListSnapshotsRequest { volume_id: raw.id.clone() }).await.unwrap().into_inner();
    assert!(snaps.snapshots.is_empty());

    // A qcow2 volume of the same pool has them.
    let v = k.c.create_volume("p1", "layered", GIB).await;
    let op = k.c.volumes.create_snapshot(pb::CreateSnapshotRequest { volume_id: v.id.clone(), name: "s1".into(), ..Default::default() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
}

#[tokio::test]
async fn daemons_refuse_a_plaintext_listen_beyond_loopback() {
    let root = tempfile::tempdir().unwrap();
    let mut config = common::control_config(root.path());
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = limiquantix_control::ControlPlane::start(&config).await.err().expect("refused").to_string();
    assert!(err.contains("without TLS") && err.contains("insecure = true"), "{err}");

    let mut node = limiquantix_node::NodeConfig::default().without_tls().with_data_dir(&root.path().join("node"));
    node.listen = "0.0.0.0:0".parse().unwrap();
    let err = limiquantix_node::RunningNode::start(&node).await.err().expect("refused").to_string();
    assert!(err.contains("without TLS") && err.contains("insecure = true"), "{err}");
}

/// Watching a volume task to its end gives the volume as it then is (what
/// `lqctl volume create` prints without asking again); a delete gives none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watched_volume_task_ends_with_the_volume() {
    let mut cl = Cluster::start().await;
    let c = &mut cl.c;
    let op = c.volumes.create_volume(create_req("p1", "watched", GIB)).await.unwrap().into_inner();
    let mut stream = c.tasks.watch_task(pb::WatchTaskRequest { task_id: op.task_id.clone() }).await.unwrap().into_inner();
    let mut last = None;
    while let Some(t) = stream.message().await.unwrap() {
        let running = t.state == pb::TaskState::Running as i32;
        assert!(!running || t.volume.is_none(), "a running task carries no volume: {t:?}");
        last = Some(t);
        if !running {
            break;
        }
    }
    let last = last.expect("the watch said something");
    assert_eq!(last.state, pb::TaskState::Succeeded as i32, "{last:?}");
    let shown = last.volume.expect("the volume comes with the end of its task");
    let stored = c.volumes.get_volume(pb::GetVolumeRequest { volume_id: op.volume.unwrap().id }).await.unwrap().into_inner();
    assert_eq!(shown, stored);
    assert_eq!(shown.state, pb::VolumeState::Available as i32);
    let got = c.tasks.get_task(pb::GetTaskRequest { task_id: op.task_id }).await.unwrap().into_inner();
    assert!(got.volume.is_none(), "tasks as stored and listed carry no volume copy");

    let del = c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: shown.id.clone() }).await.unwrap().into_inner();
    let mut stream = c.tasks.watch_task(pb::WatchTaskRequest { task_id: del.task_id }).await.unwrap().into_inner();
    while let Some(t) = stream.message().await.unwrap() {
        assert!(t.volume.is_none(), "a delete has no volume to show: {t:?}");
        if t.state != pb::TaskState::Running as i32 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thin_volume_shows_what_its_guest_wrote() {
    let mut k = Cluster::start_with(
        |c| {
            c.pool_refresh_secs = 1;
            c.allocation_refresh_secs = 1;
        },
        |_| {},
    )
    .await;
    let v = k.c.create_volume("p1", "thin", GIB).await;
    assert!(v.allocated_bytes < 8 << 20, "a new thin volume takes almost nothing: {}", v.allocated_bytes);
    // What a guest writing 16 MiB does to the file.
    let file = k.pool_dir().join(format!("lq-{}.qcow2", v.id));
    let out = std::process::Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x5a 0 16M"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = k.c.volume(&v.id).await.unwrap();
        if now.allocated_bytes >= 16 << 20 {
            assert_eq!(now.size_bytes, GIB, "the size stays what was asked");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the allocation was never refreshed: {}", now.allocated_bytes);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pools_capacity_is_kept_over_time_and_forgotten_with_it() {
    let mut k = Cluster::start_with(
        |c| {
            c.pool_refresh_secs = 1;
            c.capacity_history_secs = 1;
        },
        |_| {},
    )
    .await;
    let history = |k: &mut Cluster| {
        let mut pools = k.c.pools.clone();
        async move { pools.get_pool_metrics(pb::GetPoolMetricsRequest { pool: "p1".into() }).await.unwrap().into_inner().history }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let h = history(&mut k).await;
        if let Some(s) = h.last() {
            break *s;
        }
        assert!(std::time::Instant::now() < deadline, "no sample was taken");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(first.total_bytes > 0 && first.used_bytes > 0 && first.used_bytes <= first.total_bytes, "{first:?}");
    assert_eq!(first.provisioned_bytes, 0);

    // A volume made now shows in a later sample; samples come in time order.
    k.c.create_volume("p1", "a", GIB).await;
    let samples = loop {
        let h = history(&mut k).await;
        if h.last().is_some_and(|s| s.provisioned_bytes == GIB) {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "the volume never showed in the history: {h:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(samples.windows(2).all(|w| w[0].unix_seconds < w[1].unix_seconds), "{samples:?}");

    // The history goes with the pool.
    let a = k.c.volumes.list_volumes(pb::ListVolumesRequest::default()).await.unwrap().into_inner().volumes.remove(0);
    let op = k.c.volumes.delete_volume(pb::DeleteVolumeRequest { volume_id: a.id }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    let pool_id = k.pool.id.clone();
    let op = k.c.pools.delete_pool(pb::DeletePoolRequest { pool: "p1".into() }).await.unwrap().into_inner();
    k.c.wait_ok(&op.task_id).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let repo = &k.cp.as_ref().unwrap().app.repo;
    assert!(repo.get_raw(&limiquantix_control::keys::pool_history(&pool_id)).await.unwrap().is_none(), "a deleted pool keeps no history");
}
