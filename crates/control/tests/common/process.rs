//! The control plane as a child process, for tests that abort it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use limiquantix_testkit::ChildGuard;

pub struct ControlProcess {
    pub child: ChildGuard,
}

/// A control-plane config on 127.0.0.1:`port` with the redb store in `root`.
pub fn write_config(root: &Path, port: u16) -> PathBuf {
    let store = format!("[store]\nkind = \"redb\"\npath = \"{}\"\n", root.join("control/state.redb").display());
    write_config_with_store(root, "control.toml", port, &store)
}

/// The same with the etcd store at `endpoint` (several replicas share it).
pub fn write_etcd_config(root: &Path, name: &str, port: u16, endpoint: &str) -> PathBuf {
    // Every replica opens the secrets its peers sealed: one key file for all.
    let store = format!(
        "secrets_key = \"{}\"\n[store]\nkind = \"etcd\"\nendpoints = [\"{endpoint}\"]\nroot = \"/lq-test/\"\ntimeout_secs = 2\n",
        root.join("secrets.key").display()
    );
    write_config_with_store(root, name, port, &store)
}

fn write_config_with_store(root: &Path, name: &str, port: u16, store: &str) -> PathBuf {
    let path = root.join(name);
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nheartbeat_interval_secs = 1\noffline_after_secs = 10\nsaga_retry_secs = 30\n{store}\n\
         [tls]\nenabled = false\n[auth]\nenabled = false\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn spawn(config: &Path, fault: Option<&str>) -> ControlProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_limiquantix-controlplane"));
    cmd.arg("--config").arg(config).stdout(Stdio::null()).stderr(Stdio::null());
    match fault {
        Some(f) => cmd.env("LQ_SAGA_FAULT", f),
        None => cmd.env_remove("LQ_SAGA_FAULT"),
    };
    ControlProcess { child: ChildGuard::spawn("limiquantix-controlplane", &mut cmd).unwrap() }
}


/// The control plane with its log in `log` (kept for a failing test to show).
pub fn spawn_logged(config: &Path, log: &Path) -> ControlProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_limiquantix-controlplane"));
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.arg("--config").arg(config).env_remove("LQ_SAGA_FAULT").stdout(Stdio::null()).stderr(out);
    ControlProcess { child: ChildGuard::spawn("limiquantix-controlplane", &mut cmd).unwrap() }
}

/// A node daemon process registered with `control_plane`, its data under
/// `dir` (state/, pools/, images/), copies limited to `copy_mib_per_sec`.
pub fn write_node_config(dir: &Path, port: u16, control_plane: &str, copy_mib_per_sec: u64) -> PathBuf {
    for sub in ["state", "pools", "images"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\nlocal_pool_roots = [\"{d}/pools\"]\n\
             import_dirs = [\"{d}/images\"]\ncontrol_plane = \"{control_plane}\"\nshutdown_grace_secs = 2\n\
             [ceph]\nmount_timeout_secs = 5\n[limits]\ncopy_mib_per_sec = {copy_mib_per_sec}\n[tls]\nenabled = false\n"
        ),
    )
    .unwrap();
    path
}

pub fn spawn_node(config: &Path, log: &Path) -> ChildGuard {
    let bin = limiquantix_testkit::workspace_binary("limiquantix-node").unwrap();
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).stdout(Stdio::null()).stderr(out);
    ChildGuard::spawn("limiquantix-node", &mut cmd).unwrap()
}
