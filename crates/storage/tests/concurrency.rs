//! One operation per volume, and cancelled operations leave nothing behind.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::{Fixture, write_pattern};
use limiquantix_storage::model::{CloneMode, Progress, VolumeFormat, VolumeSource, VolumeSpec};
use limiquantix_storage::{StorageError, VolumeId};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A progress sink that holds the operation at its first report until released.
struct Gate {
    started: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> (Arc<Self>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        (Arc::new(Self { started: Mutex::new(Some(started_tx)), release: Mutex::new(release_rx) }), started_rx, release_tx)
    }

    /// Progress is reported from the operation's async task: the wait hands
    /// this worker's queued tasks to another thread (`block_in_place`), or a
    /// task woken here would wait for the release too.
    fn report(&self, _: Progress) {
        if let Some(tx) = self.started.lock().unwrap().take() {
            tx.send(()).unwrap();
            tokio::task::block_in_place(|| {
                let _ = self.release.lock().unwrap().recv();
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_operation_on_a_busy_volume_is_refused_naming_the_first() {
    let f = Arc::new(Fixture::new().await);
    let base = f.create(256 * MIB, VolumeFormat::Qcow2).await;
    write_pattern(&f.path_of(&base), "qcow2", 0x10, 0, 8 * MIB);
    let copy_id = VolumeId::new_random();

    let (gate, started, release) = Gate::new();
    let task = {
        let (f, gate) = (f.clone(), gate.clone());
        tokio::spawn(async move {
            let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Full) };
            let sink = move |p| gate.report(p);
            f.manager.create_volume(f.pool, copy_id, VolumeSpec::default(), source, &sink).await
        })
    };
    tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();

    // The copy runs: the new volume is held exclusively...
    for err in [
        f.manager.delete_volume(f.pool, copy_id).await.unwrap_err(),
        f.manager.resize_volume(f.pool, copy_id, 512 * MIB, None).await.unwrap_err(),
        f.manager.create_snapshot(f.pool, copy_id, "s").await.unwrap_err(),
    ] {
        assert!(matches!(err, StorageError::Busy(_)), "{err}");
        assert!(err.to_string().contains("a create is running"), "{err}");
    }
    // ...and its source is shared: no delete, resize or revert, but other clones may start.
    let err = f.manager.delete_volume(f.pool, base.id).await.unwrap_err();
    assert!(err.to_string().contains("clone"), "{err}");
    assert!(matches!(f.manager.resize_volume(f.pool, base.id, 512 * MIB, None).await, Err(StorageError::Busy(_))));
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Linked) };
    f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await.unwrap();

    release.send(()).unwrap();
    let copy = task.await.unwrap().unwrap();
    assert_eq!(copy.size_bytes, 256 * MIB);
    // Once done, the volumes are free again.
    f.manager.resize_volume(f.pool, copy_id, 512 * MIB, None).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_copy_leaves_no_file_behind() {
    let f = Fixture::new().await;
    let base = f.create(GIB, VolumeFormat::Raw).await;
    write_pattern(&f.path_of(&base), "raw", 0x10, 0, 256 * MIB);
    let before = f.listing();

    let copy_id = VolumeId::new_random();
    let partial = f.pool_dir().join(format!(".lq-{copy_id}.raw.partial"));
    let copying = Arc::new(tokio::sync::Notify::new());
    let partial_seen = Arc::new(AtomicBool::new(false));
    let sink = {
        let (copying, partial_seen, partial) = (copying.clone(), partial_seen.clone(), partial.clone());
        move |p: Progress| {
            if p.done_bytes > 0 && p.done_bytes < p.total_bytes {
                partial_seen.store(partial.exists(), Ordering::SeqCst);
                copying.notify_one();
            }
        }
    };
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Full) };
    let copy = f.manager.create_volume(f.pool, copy_id, VolumeSpec::default(), source, &sink);
    tokio::select! {
        r = copy => panic!("the copy finished before it could be cancelled: {r:?}"),
        _ = copying.notified() => {} // dropping `copy` here cancels it mid-copy
    }
    assert!(partial_seen.load(Ordering::SeqCst), "the copy was under way ({} existed)", partial.display());
    assert_eq!(f.listing(), before, "no partial or final file of the cancelled copy");
    // The id is free for a new attempt.
    let source = VolumeSource::Clone { source: base.id, mode: Some(CloneMode::Full) };
    f.manager.create_volume(f.pool, copy_id, VolumeSpec::default(), source, &|_| {}).await.unwrap();
}
