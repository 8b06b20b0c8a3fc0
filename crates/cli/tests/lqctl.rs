//! lqctl as a user runs it: a real process against an in-process node daemon.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::{CommandFactory, Parser};
use limiquantix_cli::Cli;
use limiquantix_node::{NodeConfig, RunningNode};

/// Starts a node on a runtime of its own; it serves until both are dropped.
fn start_node(root: &Path) -> (RunningNode, tokio::runtime::Runtime) {
    let mut cfg = NodeConfig::default().without_tls().with_data_dir(root);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.create_dirs().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = rt.block_on(RunningNode::start(&cfg)).unwrap();
    (node, rt)
}

fn lqctl(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lqctl")).args(["node", "--addr", addr]).args(args).output().unwrap()
}

fn json(addr: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = lqctl(addr, &all);
    assert!(out.status.success(), "lqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn a_user_session_with_lqctl() {
    let root = tempfile::tempdir().unwrap();
    let (node, _rt) = start_node(root.path());
    let addr = node.url();
    let pool_dir = root.path().join("pools/store");

    let pool = json(&addr, &["pool", "init", "--local-path", pool_dir.to_str().unwrap()]);
    let pool_id = pool["pool_id"].as_str().unwrap().to_owned();
    assert_eq!(pool["phase"], "ready");
    assert_eq!(pool["kind"], "local");

    let vol = json(&addr, &["volume", "create", "--pool", &pool_id, "--size", "10G"]);
    assert_eq!(vol["size_bytes"], 10u64 << 30);
    assert_eq!(vol["format"], "qcow2");
    let vol_id = vol["volume_id"].as_str().unwrap().to_owned();

    let grown = json(&addr, &["volume", "resize", "--pool", &pool_id, &vol_id, "--size", "12G"]);
    assert_eq!(grown["size_bytes"], 12u64 << 30);
    json(&addr, &["snapshot", "create", "--pool", &pool_id, &vol_id, "before-patch"]);
    let snaps = json(&addr, &["snapshot", "list", "--pool", &pool_id, &vol_id]);
    assert_eq!(snaps[0]["name"], "before-patch");

    let clone = json(&addr, &["volume", "clone", "--pool", &pool_id, &vol_id]);
    assert_eq!(clone["backing_volume_id"], vol_id.as_str());
    let full = json(&addr, &["volume", "clone", "--pool", &pool_id, &vol_id, "--full", "--format", "raw"]);
    assert_eq!(full["backing_volume_id"], serde_json::Value::Null);
    assert_eq!(full["format"], "raw");

    let image = root.path().join("images/disk.raw");
    std::fs::write(&image, vec![7u8; 1 << 20]).unwrap();
    let imported = json(&addr, &["volume", "import", "--pool", &pool_id, "--file", image.to_str().unwrap(), "--image-format", "raw"]);
    assert_eq!(imported["size_bytes"], 1u64 << 20);

    let list = json(&addr, &["volume", "list", "--pool", &pool_id, "--all", "--page-size", "2"]);
    assert_eq!(list.as_array().unwrap().len(), 4);

    // A base of linked clones is given to VMs read-only.
    let attach = json(&addr, &["volume", "attach-info", "--pool", &pool_id, &vol_id, "--used", "sda", "--read-only"]);
    assert_eq!(attach["target_dev"], "sdb");
    let xml = attach["disk_xml"].as_str().unwrap();
    assert!(xml.contains(&format!("<serial>{vol_id}</serial>")) && xml.contains("<readonly/>"), "{xml}");
    let rw = lqctl(&addr, &["volume", "attach-info", "--pool", &pool_id, &vol_id]);
    assert!(String::from_utf8_lossy(&rw.stderr).contains("attach it read-only"), "{}", String::from_utf8_lossy(&rw.stderr));

    // People get tables; errors exit non-zero with the code and the message.
    let table = lqctl(&addr, &["volume", "list", "--pool", &pool_id]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("VOLUME") && text.contains("12.0 GiB"), "{text}");
    let refused = lqctl(&addr, &["volume", "delete", "--pool", &pool_id, &vol_id]);
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert!(err.contains("FailedPrecondition") && err.contains(clone["volume_id"].as_str().unwrap()), "{err}");
    let bad = lqctl(&addr, &["volume", "create", "--pool", &pool_id, "--size", "10X"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown size unit"));
    let shrink = lqctl(&addr, &["volume", "resize", "--pool", &pool_id, &vol_id, "--size", "1G"]);
    assert!(String::from_utf8_lossy(&shrink.stderr).contains("InvalidArgument"));
    let vague = lqctl(&addr, &["pool", "init"]);
    assert!(String::from_utf8_lossy(&vague.stderr).contains("InvalidArgument: say what the pool is"));

    // A reader that stops early (`lqctl ... | head -1`) ends lqctl quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lqctl"))
        .args(["node", "--addr", &addr, "volume", "list", "--pool", &pool_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before lqctl writes: its first write meets a closed pipe
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() != Some(101) && !err.contains("panicked"), "{}: {err}", out.status);
}

#[test]
fn an_unreachable_node_is_a_clear_error() {
    let out = lqctl("http://127.0.0.1:1", &["pool", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unavailable: cannot reach the node daemon at http://127.0.0.1:1"), "{err}");
}

fn find<'a>(cmd: &'a clap::Command, path: &[&str]) -> &'a clap::Command {
    path.iter().fold(cmd, |c, name| c.find_subcommand(name).unwrap_or_else(|| panic!("no {name} in {}", c.get_name())))
}

#[test]
fn every_command_and_argument_explains_itself() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path} <{}>", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            // "Paging of ..." is the doc of a flattened argument group, not the command's.
            if about.trim().is_empty() || about.starts_with("Paging") {
                missing.push(format!("{path}: {about:?}"));
            }
            walk(sub, &path, missing);
        }
    }
    let mut cli = Cli::command();
    cli.build();
    let mut missing = Vec::new();
    walk(&cli, "lqctl", &mut missing);
    assert!(missing.is_empty(), "without help: {missing:#?}");

    // The pool's provisioning limit defaults to no overcommit, and says so.
    let overcommit = find(&cli, &["pool", "create"]).get_arguments().find(|a| a.get_id() == "overcommit").unwrap();
    assert_eq!(overcommit.get_default_values(), ["1"]);
}

#[test]
fn control_plane_options_belong_to_control_plane_commands() {
    let mut cli = Cli::command();
    cli.build();
    let offers = |path: &[&str], long: &str| find(&cli, path).get_arguments().any(|a| a.get_long() == Some(long));
    let control: [&[&str]; 7] =
        [&["pool", "create"], &["volume", "list"], &["snapshot", "revert"], &["task", "watch"], &["node", "list"], &["node", "get"], &["node", "drain"]];
    for path in control {
        assert!(offers(path, "server") && offers(path, "no-wait") && offers(path, "output"), "{path:?}");
    }
    let direct: [&[&str]; 6] = [&[], &["node"], &["node", "info"], &["node", "pool", "init"], &["node", "volume", "create"], &["node", "snapshot", "list"]];
    for path in direct {
        assert!(!offers(path, "server") && !offers(path, "no-wait") && offers(path, "output"), "{path:?}");
    }
    let refused = Cli::try_parse_from(["lqctl", "node", "--addr", "http://127.0.0.1:7701", "info", "--server", "http://127.0.0.1:7700"]);
    assert_eq!(refused.unwrap_err().kind(), clap::error::ErrorKind::UnknownArgument);
}
