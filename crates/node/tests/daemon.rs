//! The limiquantix-node binary: reads its TOML config, serves, and stops
//! cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use limiquantix_api::v1 as pb;
use limiquantix_api::v1::node_storage_client::NodeStorageClient;

#[test]
fn the_daemon_serves_its_config_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let port = limiquantix_testkit::free_port().unwrap();
    let config = root.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 2\nstate_dir = \"{0}/state\"\nlocal_pool_roots = [\"{0}/pools\"]\n\
             import_dirs = [\"{0}/images\"]\n[timeouts]\nmetadata_secs = 30\n[tls]\nenabled = false\n",
            root.path().display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("pools")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_limiquantix-node"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut client = loop {
            match NodeStorageClient::connect(format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the daemon never answered: {e}"),
            }
        };
        let path = root.path().join("pools/p").display().to_string();
        let config = pb::PoolConfig { backend: Some(pb::pool_config::Backend::Local(pb::LocalPoolConfig { path })) };
        let pool = uuid::Uuid::new_v4().to_string();
        client.init_storage_pool(pb::InitStoragePoolRequest { pool_id: pool, config: Some(config) }).await.unwrap();
    });
    assert!(root.path().join("state/pools").read_dir().unwrap().count() == 1, "the pool record is in the configured state dir");

    // The client's runtime is still alive but never polled again: its idle
    // connection must not keep the daemon from stopping.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("limiquantix-node stopped"), "{log}");
}

#[test]
fn a_bad_config_is_refused_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("node.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nstate_dirr = \"/x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_limiquantix-node")).arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid node config") && err.contains("state_dirr"), "{err}");
}
