//! A single-member etcd on 127.0.0.1 with free ports, in a temp dir (see
//! shared/recipes/etcd.md), stopped by pid on drop.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, wait_until};

pub struct Etcd {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
    client_port: u16,
}

impl Etcd {
    pub fn start() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-etcd-").tempdir()?;
        // Real numbers, not port 0: etcd advertises them.
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("lq0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .arg("--initial-cluster")
            .arg(format!("lq0={peer}"))
            .args(["--initial-cluster-state", "new", "--initial-cluster-token"])
            .arg(format!("lq-{client_port}"))
            // A single member waits one election timeout for a leader: keep it short on loopback.
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(dir.path().join("etcd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let daemon = ChildGuard::spawn("etcd", &mut cmd)?;
        let mut me = Self { dir, daemon, client_port };
        let port = me.client_port;
        wait_until("etcd", Duration::from_secs(30), || healthy(port)).map_err(|e| {
            let log = std::fs::read_to_string(me.dir.path().join("etcd.log")).unwrap_or_default();
            io::Error::new(e.kind(), format!("{e}; etcd log: {}", log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")))
        })?;
        if !me.daemon.is_running() {
            return Err(io::Error::other("etcd exited right after starting"));
        }
        Ok(me)
    }

    /// The client endpoint, e.g. `http://127.0.0.1:23791`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Freezes etcd (SIGSTOP) to test what clients do when the store hangs.
    pub fn pause(&self) {
        self.daemon.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.daemon.signal(libc::SIGCONT);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.resume();
        self.daemon.stop(Duration::from_secs(5));
    }
}

/// etcd's HTTP health endpoint answers {"health":"true"} once it has a leader.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
