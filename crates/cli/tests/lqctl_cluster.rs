//! lqctl against a control plane with a real node: what a user types.

use std::process::{Command, Output};

use limiquantix_control::{ControlConfig, ControlPlane, StoreConfig};
use limiquantix_node::{NodeConfig, RunningNode};

fn lqctl(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lqctl")).args(["--server", server]).args(args).output().unwrap()
}

fn json(server: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = lqctl(server, &all);
    assert!(out.status.success(), "lqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn a_user_session_against_the_control_plane() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (cp, node, node_id) = rt.block_on(async {
        let mut c = ControlConfig::default();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.store = StoreConfig::Redb { path: root.path().join("control/state.redb") };
        c.heartbeat_interval_secs = 1;
        let cp = ControlPlane::start(&c).await.unwrap();
        let mut n = NodeConfig::default().with_data_dir(&root.path().join("node"));
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
    let clone = json(&server, &["volume", "clone", "db", "--name", "db-test"]);
    assert_eq!(clone["backing_volume_id"], v["id"]);
    // A base of linked clones is never written again.
    let refused = lqctl(&server, &["volume", "resize", "db", "--size", "4G"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("FailedPrecondition") && err.contains("linked clones depend on it"), "{err}");
    let list = json(&server, &["volume", "list", "--pool", "ssd1"]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    // --no-wait hands back the task; task watch follows it to its end.
    let accepted = json(&server, &["--no-wait", "volume", "clone", "db", "--name", "db-copy", "--full"]);
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

    for name in ["db-test", "db-copy", "db"] {
        let out = lqctl(&server, &["volume", "delete", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = lqctl(&server, &["pool", "delete", "ssd1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gone = lqctl("http://127.0.0.1:1", &["pool", "list"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach the control plane"));
    rt.block_on(async {
        node.stop().await.unwrap();
        cp.stop_within(std::time::Duration::from_secs(5)).await.unwrap();
    });
}
