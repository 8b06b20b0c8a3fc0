//! One test suite, run against both stores: the embedded redb file and a real
//! etcd started by testkit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use limiquantix_control::store::{EtcdOptions, EtcdStore, Precondition, RedbStore, Store, StoreError, Write};
use limiquantix_testkit::Etcd;

/// Keeps whatever backs a store (temp dir, etcd process) alive with it.
struct Backed {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<Etcd>,
}

async fn redb() -> Backed {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    Backed { store: Arc::new(store), _dir: Some(dir), _etcd: None }
}

fn etcd_options(etcd: &Etcd) -> EtcdOptions {
    EtcdOptions::plain(vec![etcd.endpoint()], "/lq-test/".into(), Duration::from_secs(2))
}

async fn etcd() -> Backed {
    let etcd = tokio::task::block_in_place(Etcd::start).unwrap();
    let store = EtcdStore::connect(&etcd_options(&etcd)).await.unwrap();
    Backed { store: Arc::new(store), _dir: None, _etcd: Some(etcd) }
}

fn put(k: &str, v: &str) -> Write {
    Write::Put(k.into(), v.as_bytes().to_vec())
}

async fn create_then_read(s: Arc<dyn Store>) {
    let rev = s.commit(vec![Precondition::Absent("a/1".into())], vec![put("a/1", "one")]).await.unwrap();
    let e = s.get("a/1").await.unwrap().unwrap();
    assert_eq!((e.key.as_str(), e.value.as_slice(), e.revision), ("a/1", b"one".as_slice(), rev));
    assert_eq!(s.get("a/2").await.unwrap(), None);
    let rev2 = s.commit(vec![], vec![put("a/2", "two")]).await.unwrap();
    assert!(rev2 > rev, "revisions increase");
}

async fn absent_precondition_refuses_a_second_create(s: Arc<dyn Store>) {
    s.commit(vec![Precondition::Absent("k".into())], vec![put("k", "first")]).await.unwrap();
    let err = s.commit(vec![Precondition::Absent("k".into())], vec![put("k", "second")]).await.unwrap_err();
    assert_eq!(err, StoreError::Conflict);
    assert_eq!(s.get("k").await.unwrap().unwrap().value, b"first");
}

async fn compare_and_swap_needs_the_current_revision(s: Arc<dyn Store>) {
    let r1 = s.commit(vec![], vec![put("k", "v1")]).await.unwrap();
    let r2 = s.commit(vec![Precondition::Revision("k".into(), r1)], vec![put("k", "v2")]).await.unwrap();
    let err = s.commit(vec![Precondition::Revision("k".into(), r1)], vec![put("k", "stale")]).await.unwrap_err();
    assert_eq!(err, StoreError::Conflict);
    assert_eq!(s.get("k").await.unwrap().unwrap().value, b"v2");
    let missing = s.commit(vec![Precondition::Revision("nope".into(), r2)], vec![put("nope", "x")]).await.unwrap_err();
    assert_eq!(missing, StoreError::Conflict, "a revision check on a missing key fails");
}

async fn of_concurrent_writers_exactly_one_wins(s: Arc<dyn Store>) {
    let rev = s.commit(vec![], vec![put("counter", "0")]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.commit(vec![Precondition::Revision("counter".into(), rev)], vec![put("counter", &i.to_string())]).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict),
        }
    }
    assert_eq!(wins, 1);
}

async fn a_failed_commit_writes_nothing(s: Arc<dyn Store>) {
    s.commit(vec![], vec![put("taken", "x")]).await.unwrap();
    let err = s
        .commit(
            vec![Precondition::Absent("new".into()), Precondition::Absent("taken".into())],
            vec![put("new", "n"), Write::Delete("taken".into())],
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Conflict);
    assert_eq!(s.get("new").await.unwrap(), None);
    assert!(s.get("taken").await.unwrap().is_some());
}

async fn lists_pages_in_key_order_within_the_prefix(s: Arc<dyn Store>) {
    let mut writes: Vec<Write> = (0..25).map(|i| put(&format!("vol/{i:03}"), &i.to_string())).collect();
    writes.push(put("vola", "outside"));
    writes.push(put("vo", "outside"));
    s.commit(vec![], writes).await.unwrap();
    let all = s.list("vol/", None, 0).await.unwrap();
    assert_eq!(all.len(), 25);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list("vol/", after.as_deref(), 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().key.clone());
        seen.extend(page.into_iter().map(|e| e.key));
    }
    assert_eq!(seen, all.iter().map(|e| e.key.clone()).collect::<Vec<_>>());
    assert_eq!(s.count("vol/").await.unwrap(), 25);
    assert_eq!(s.count("nothing/").await.unwrap(), 0);
}

async fn deletes_remove_keys(s: Arc<dyn Store>) {
    let rev = s.commit(vec![], vec![put("d/1", "x"), put("d/2", "y")]).await.unwrap();
    s.commit(vec![Precondition::Revision("d/1".into(), rev)], vec![Write::Delete("d/1".into())]).await.unwrap();
    assert_eq!(s.get("d/1").await.unwrap(), None);
    assert_eq!(s.list("d/", None, 0).await.unwrap().len(), 1);
}

async fn a_watch_sees_changes_under_its_prefix_only(s: Arc<dyn Store>) {
    use std::time::Duration;
    let mut watch = s.watch("w/a").await.unwrap();
    s.commit(vec![], vec![put("w/b", "other")]).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.changed()).await.is_err(), "another prefix is not a change");
    s.commit(vec![], vec![put("w/a", "1")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.expect("a put is seen").unwrap();
    s.commit(vec![], vec![Write::Delete("w/a".into())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.expect("a delete is seen").unwrap();
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let backed = super::$backend().await;
                        super::$name(backed.store.clone()).await;
                    }
                };
            }
            case!(create_then_read);
            case!(absent_precondition_refuses_a_second_create);
            case!(compare_and_swap_needs_the_current_revision);
            case!(of_concurrent_writers_exactly_one_wins);
            case!(a_failed_commit_writes_nothing);
            case!(lists_pages_in_key_order_within_the_prefix);
            case!(deletes_remove_keys);
            case!(a_watch_sees_changes_under_its_prefix_only);
        }
    };
}

suite!(redb);
suite!(etcd);

#[tokio::test]
async fn the_redb_file_keeps_state_across_reopen_and_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.commit(vec![], vec![put("persist", "me")]).await.unwrap();
        assert!(matches!(RedbStore::open(&path), Err(StoreError::Unavailable(_))), "a second opener is refused");
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.get("persist").await.unwrap().unwrap().value, b"me");
}

#[tokio::test]
async fn the_redb_file_and_its_directory_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control/state.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.commit(vec![], vec![put("pool-secret", "AQBkey==")]).await.unwrap();
    }
    assert_eq!(mode(&path), 0o600, "the store holds pool secrets");
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    // A file left wider by an older version is narrowed when opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(s.get("pool-secret").await.unwrap().unwrap().value, b"AQBkey==", "and keeps its data");
}

#[test]
fn a_hung_etcd_gives_unavailable_within_the_timeout() {
    let etcd = Etcd::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = EtcdStore::connect(&etcd_options(&etcd)).await.unwrap();
        s.commit(vec![], vec![put("k", "v")]).await.unwrap();
        etcd.pause();
        let start = Instant::now();
        let err = s.get("k").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "bounded by the timeout: {:?}", start.elapsed());
        etcd.resume();
        assert_eq!(s.get("k").await.unwrap().unwrap().value, b"v", "recovers when etcd answers again");
    });
}
