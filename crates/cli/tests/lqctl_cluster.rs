//! lqctl against a control plane with a real node: what a user types.

use std::io::Read;
use std::process::{Command, Output, Stdio};

use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig};
use limiquantix_node::{NodeConfig, RunningNode};

/// `--server` is an option of the control-plane commands, so it comes after one.
fn lqctl(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lqctl")).args(args).args(["--server", server]).output().unwrap()
}

/// What `date -u` says of a Unix time, to check lqctl's own formatting.
fn utc(unix_seconds: &serde_json::Value) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{unix_seconds}"), "+%Y-%m-%d %H:%M:%S"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(server: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = lqctl(server, &all);
    assert!(out.status.success(), "lqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A control plane and one node, all in this process on loopback, the
/// node registered.
struct Cluster {
    cp: ControlPlane,
    node: RunningNode,
    node_id: String,
    server: String,
}

impl Cluster {
    fn start(rt: &tokio::runtime::Runtime, root: &std::path::Path, adjust: impl FnOnce(&mut ControlConfig)) -> Self {
        let (cp, node, node_id) = rt.block_on(async {
            let mut c = ControlConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                store: StoreConfig::Redb { path: root.join("control/state.redb") },
                heartbeat_interval_secs: 1,
                ..ControlConfig::default().without_security()
            };
            adjust(&mut c);
            let cp = ControlPlane::start(&c).await.unwrap();
            let mut n = NodeConfig::default().without_tls().with_data_dir(&root.join("node"));
            n.listen = "127.0.0.1:0".parse().unwrap();
            n.control_plane = Some(cp.url());
            n.create_dirs().unwrap();
            let node = RunningNode::start(&n).await.unwrap();
            let id = limiquantix_node::registration::node_id(&n.state_dir).unwrap();
            (cp, node, id)
        });
        let server = cp.url();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while json(&server, &["node", "list"]).as_array().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the node never registered");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self { cp, node, node_id, server }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(async {
            self.node.stop().await.unwrap();
            self.cp.stop_within(std::time::Duration::from_secs(5)).await.unwrap();
        });
    }
}

#[test]
fn a_user_session_against_the_control_plane() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cluster = Cluster::start(&rt, root.path(), |_| {});
    let (server, node_id) = (cluster.server.clone(), cluster.node_id.clone());
    let nodes = json(&server, &["node", "list"]);
    assert_eq!(nodes[0]["id"], node_id.as_str());
    assert_eq!(nodes[0]["state"], "online");

    let pool_path = root.path().join("node/pools/ssd1");
    let pool = json(&server, &["pool", "create", "ssd1", "--local-path", pool_path.to_str().unwrap(), "--node", &node_id]);
    assert_eq!((pool["name"].as_str(), pool["state"].as_str(), pool["kind"].as_str()), (Some("ssd1"), Some("ready"), Some("local")));

    let v = json(&server, &["volume", "create", "--pool", "ssd1", "--name", "db", "--size", "2G"]);
    assert_eq!((v["state"].as_str(), v["size_bytes"].as_u64()), (Some("available"), Some(2 << 30)));
    let grown = json(&server, &["volume", "resize", "db", "--size", "3G"]);
    assert_eq!(grown["size_bytes"].as_u64(), Some(3 << 30));
    let snaps = json(&server, &["snapshot", "create", "db", "nightly"]);
    assert_eq!(snaps[0]["name"], "nightly");
    // People read a snapshot's time; JSON keeps the number.
    let created = &snaps[0]["created_unix_seconds"];
    let text = stdout(&lqctl(&server, &["snapshot", "list", "db"]));
    assert!(text.contains(&utc(created)) && !text.contains(&created.to_string()), "{text}");
    assert!(text.contains("CONSISTENCY") && text.contains("detached"), "{text}");
    // Quiescing needs a running VM with a guest agent; --vm names one.
    let refused = lqctl(&server, &["snapshot", "create", "db", "app", "--quiesce"]);
    assert!(!refused.status.success() && stderr(&refused).contains("not attached to a running VM"), "{}", stderr(&refused));
    let refused = lqctl(&server, &["snapshot", "create", "--vm", "web01", "app", "--quiesce=best-effort"]);
    assert!(!refused.status.success() && stderr(&refused).contains("no volume is attached read-write to VM web01"), "{}", stderr(&refused));
    let refused = lqctl(&server, &["snapshot", "create", "--vm", "web01", "db", "app"]);
    assert!(!refused.status.success() && stderr(&refused).contains("with --vm give the snapshot's name only"), "{}", stderr(&refused));
    let refused = lqctl(&server, &["snapshot", "create", "db", "app", "--quiesce=always"]);
    assert!(!refused.status.success() && stderr(&refused).contains("best-effort"), "the modes are named: {}", stderr(&refused));
    let clone = json(&server, &["volume", "clone", "db", "--name", "db-test"]);
    assert_eq!(clone["backing_volume_id"], v["id"]);
    // A base of linked clones is never written again.
    let refused = lqctl(&server, &["volume", "resize", "db", "--size", "4G"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("FailedPrecondition") && err.contains("linked clones depend on it"), "{err}");
    let list = json(&server, &["volume", "list", "--pool", "ssd1"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // Sorted, one row a page: the pages follow the order.
    let names = |args: &[&str]| -> Vec<String> {
        let rows = json(&server, args);
        rows.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&["volume", "list", "--sort", "name", "--desc", "--all", "--page-size", "1"]), ["db-test", "db"]);
    assert_eq!(names(&["volume", "list", "--sort", "name", "--all", "--page-size", "1"]), ["db", "db-test"]);

    // --no-wait hands back the task; task watch follows it to its end.
    let accepted = json(&server, &["volume", "clone", "db", "--name", "db-copy", "--full", "--no-wait"]);
    let task_id = accepted["task_id"].as_str().unwrap().to_owned();
    let watched = json(&server, &["task", "watch", &task_id]);
    assert_eq!(watched["state"], "succeeded");
    assert_eq!(watched["kind"], "volume.create");
    // A template is shown as one and never written again.
    let template = json(&server, &["volume", "template", "db-copy"]);
    assert_eq!(template["template"], true);
    let refused = lqctl(&server, &["volume", "resize", "db-copy", "--size", "5G"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is a template"), "{}", String::from_utf8_lossy(&refused.stderr));
    let tasks = json(&server, &["task", "list"]);
    assert!(tasks.as_array().unwrap().len() >= 5);
    let text = stdout(&lqctl(&server, &["task", "list"]));
    assert!(text.contains("CREATED (UTC)") && text.contains(&utc(&tasks[0]["created_unix_seconds"])), "{text}");

    // A reader that stops early (`lqctl task list | head -1`) ends lqctl quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lqctl"))
        .args(["task", "list", "--all"])
        .env("LQ_SERVER", &server)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before lqctl writes: its first write meets a closed pipe
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.code() != Some(101) && !err.contains("panicked"), "{status}: {err}");

    // Pool metrics are a table for people.
    let text = stdout(&lqctl(&server, &["pool", "metrics", "ssd1"]));
    assert!(text.contains("PROVISIONING LIMIT") && text.contains("available: 3") && !text.contains('{'), "{text}");
    let metrics = json(&server, &["pool", "metrics", "ssd1"]);
    assert_eq!(metrics["volume_count"], 3);

    // A long error wraps inside the table instead of widening it.
    let image = format!("/{}.qcow2", "a".repeat(240));
    let failed = lqctl(&server, &["volume", "import", "--pool", "ssd1", "--name", "lost", "--file", &image, "--image-format", "qcow2"]);
    assert!(!failed.status.success() && stderr(&failed).contains("does not exist"), "{}", stderr(&failed));
    let tasks = json(&server, &["task", "list"]);
    let failed_task = tasks.as_array().unwrap().iter().find(|t| t["state"] == "failed").expect("the import's task failed");
    assert!(failed_task["error"].as_str().unwrap().len() > 250, "{failed_task}");
    for args in [&["task", "list"][..], &["task", "get", failed_task["id"].as_str().unwrap()]] {
        let text = stdout(&lqctl(&server, args));
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 160 && text.contains(failed_task["id"].as_str().unwrap()), "{args:?} is {widest} wide:\n{text}");
    }

    // Errors: the gRPC code and the message, non-zero exit.
    let dup = lqctl(&server, &["volume", "create", "--pool", "ssd1", "--name", "db", "--size", "1G"]);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("AlreadyExists") && err.contains("db"), "{err}");
    let busy = lqctl(&server, &["volume", "delete", "db"]);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("linked clones depend on it"));
    let table = lqctl(&server, &["volume", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("db-test") && text.contains("3.0 GiB") && text.contains("available (template)"), "{text}");
    // lqctl's own errors carry a code too.
    let missing = stderr(&lqctl(&server, &["volume", "get", "nosuch"]));
    assert!(missing.contains("NotFound: there is no volume named nosuch"), "{missing}");
    let other_path = root.path().join("node/pools/ssd2");
    json(&server, &["pool", "create", "ssd2", "--local-path", other_path.to_str().unwrap(), "--node", &node_id]);
    let twin = json(&server, &["volume", "create", "--pool", "ssd2", "--name", "db", "--size", "1G"]);
    let ambiguous = stderr(&lqctl(&server, &["volume", "get", "db"]));
    assert!(ambiguous.contains("FailedPrecondition: 2 volumes are named db"), "{ambiguous}");
    for args in [&["volume", "delete", twin["id"].as_str().unwrap()][..], &["pool", "delete", "ssd2"]] {
        let out = lqctl(&server, args);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // A move into another pool keeps the name and id; the linked clone arrives flattened.
    let third = root.path().join("node/pools/ssd3");
    let ssd3 = json(&server, &["pool", "create", "ssd3", "--local-path", third.to_str().unwrap(), "--node", &node_id]);
    let before = json(&server, &["volume", "get", "db-test"]);
    let out = lqctl(&server, &["-o", "json", "volume", "move", "db-test", "--pool", "ssd3"]);
    assert!(out.status.success() && stderr(&out).contains("arrived flattened"), "the result says it was flattened: {}", stderr(&out));
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&moved["id"], &moved["name"], &moved["pool_id"]), (&before["id"], &before["name"], &ssd3["id"]), "{moved}");
    assert!(moved["backing_volume_id"].is_null() && moved["state"] == "available", "{moved}");
    let refused = stderr(&lqctl(&server, &["volume", "move", "db-test", "--pool", "ssd3"]));
    assert!(refused.contains("InvalidArgument") && refused.contains("already"), "{refused}");

    for name in ["db-test", "db-copy", "db"] {
        let out = lqctl(&server, &["volume", "delete", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for pool in ["ssd1", "ssd3"] {
        let out = lqctl(&server, &["pool", "delete", pool]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let gone = stderr(&lqctl("http://127.0.0.1:1", &["pool", "list"]));
    assert!(gone.contains("Unavailable: cannot reach the control plane at http://127.0.0.1:1"), "{gone}");
    cluster.stop(&rt);
}

#[test]
fn an_nfs_datastore_from_lqctl() {
    limiquantix_testkit::private_network().unwrap();
    let nfs = limiquantix_testkit::Ganesha::start_with_portmapper().unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cluster = Cluster::start(&rt, root.path(), |_| {});
    let server = cluster.server.clone();
    let export = nfs.export().display().to_string();

    // Bad input is refused up front and makes nothing.
    let refused: [(Vec<&str>, &str); 3] = [
        (vec!["--nfs-server", "nas;reboot", "--nfs-export", &export], "not a host name"),
        (vec!["--nfs-server", "127.0.0.1", "--nfs-export", "/srv/../etc"], "without . or .. parts"),
        (vec!["--nfs-server", "127.0.0.1", "--nfs-export", &export, "--nfs-version", "4.1"], "NFSv3"),
    ];
    for (args, says) in refused {
        let out = lqctl(&server, &[&["pool", "create", "bad"][..], &args].concat());
        assert!(!out.status.success() && stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(json(&server, &["pool", "list"]).as_array().unwrap().is_empty(), "nothing was made");

    let pool = json(&server, &["pool", "create", "nas", "--nfs-server", "127.0.0.1", "--nfs-export", &export, "--nfs-version", "3"]);
    assert_eq!((pool["state"].as_str(), pool["kind"].as_str()), (Some("ready"), Some("nfs")), "{pool}");
    let table = stdout(&lqctl(&server, &["pool", "list"]));
    assert!(table.contains(&format!("127.0.0.1:{export}")) && table.contains("1/1 ready"), "the datastore's location: {table}");
    assert_eq!(pool["location"], format!("127.0.0.1:{export}"));
    let v = json(&server, &["volume", "create", "--pool", "nas", "--name", "web01-disk0", "--size", "2G"]);
    assert_eq!((v["state"].as_str(), v["size_bytes"].as_u64(), v["format"].as_str()), (Some("available"), Some(2 << 30), Some("qcow2")));
    let id = v["id"].as_str().unwrap();
    assert!(nfs.export_local().join(format!("lq-{id}.qcow2")).exists());
    json(&server, &["volume", "delete", "web01-disk0"]);
    assert!(!nfs.export_local().join(format!("lq-{id}.qcow2")).exists());

    cluster.stop(&rt);
}

#[test]
fn an_iscsi_datastore_from_lqctl() {
    use limiquantix_testkit::tgt::{CHAP_USER, TARGET};
    let tgt = limiquantix_testkit::Tgt::start(&[64, 32]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cluster = Cluster::start(&rt, root.path(), |c| c.pool_refresh_secs = 1);
    let server = cluster.server.clone();
    // The CHAP secret from a file, never the command line.
    let secret = root.path().join("chap.secret");
    std::fs::write(&secret, format!("{}\n", tgt.chap_secret())).unwrap();
    // Two portals, the first dead: the second is used.
    let dead = format!("127.0.0.1:{}", limiquantix_testkit::free_port().unwrap());
    let create = [
        "pool", "create", "san", "--iscsi-portal", &dead, "--iscsi-portal", &tgt.portal(), "--iscsi-target", TARGET, "--chap-user", CHAP_USER,
        "--chap-password-file", secret.to_str().unwrap(),
    ];
    let pool = json(&server, &create);
    assert_eq!((pool["state"].as_str(), pool["kind"].as_str()), (Some("ready"), Some("iscsi")), "{pool}");
    assert_eq!(pool["location"].as_str(), Some(format!("{dead},{} {TARGET}", tgt.portal()).as_str()), "{pool}");
    assert_eq!(pool["capabilities"]["array_managed"], true);

    // The target's LUNs show up as volumes by themselves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let v = json(&server, &["volume", "list", "--pool", "san"]);
        if v.as_array().unwrap().len() == 2 {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the LUNs never showed: {v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut sizes: Vec<u64> = listed.as_array().unwrap().iter().map(|v| v["size_bytes"].as_u64().unwrap()).collect();
    sizes.sort();
    assert_eq!(sizes, [32 << 20, 64 << 20]);
    assert!(listed[0]["name"].as_str().unwrap().starts_with("lun-"), "{listed}");
    let out = lqctl(&server, &["volume", "create", "--pool", "san", "--name", "x", "--size", "1G"]);
    assert!(!out.status.success() && stderr(&out).contains("FailedPrecondition") && stderr(&out).contains("storage array"), "{}", stderr(&out));

    cluster.stop(&rt);
}
