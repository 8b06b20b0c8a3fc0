//! A single-member etcd on 127.0.0.1 with free ports, in a temp dir (see
//! shared/recipes/etcd.md), stopped by pid on drop.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, free_port, wait_until};

pub struct Etcd {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
    client_port: u16,
    tls: Option<EtcdTls>,
}

/// etcd with TLS: its certificate (valid for 127.0.0.1) and key, and the CA
/// it checks client certificates against (--client-cert-auth).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Etcd {
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// etcd that speaks only TLS and wants a client certificate from `tls.ca`.
    pub fn start_with_tls(tls: &EtcdTls) -> io::Result<Self> {
        Self::start_with(Some(tls.clone()))
    }

    fn start_with(tls: Option<EtcdTls>) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lq-etcd-").tempdir()?;
        // Real numbers, not port 0: etcd advertises them.
        let (client_port, peer_port, metrics_port) = (free_port()?, free_port()?, free_port()?);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
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
            // Health on its own plain port, whatever the client port speaks.
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{metrics_port}"))
            .args(["--logger", "zap", "--log-outputs"])
            .arg(dir.path().join("etcd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = &tls {
            cmd.arg("--cert-file").arg(&t.cert).arg("--key-file").arg(&t.key);
            cmd.arg("--trusted-ca-file").arg(&t.ca).arg("--client-cert-auth");
        }
        let daemon = ChildGuard::spawn("etcd", &mut cmd)?;
        let mut me = Self { dir, daemon, client_port, tls };
        wait_until("etcd", Duration::from_secs(30), || healthy(metrics_port)).map_err(|e| {
            let log = std::fs::read_to_string(me.dir.path().join("etcd.log")).unwrap_or_default();
            io::Error::new(e.kind(), format!("{e}; etcd log: {}", log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")))
        })?;
        if !me.daemon.is_running() {
            return Err(io::Error::other("etcd exited right after starting"));
        }
        Ok(me)
    }

    /// The client endpoint, e.g. `http://127.0.0.1:23791` (https with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Turns etcd authentication on with a `root` user (password
    /// `root_password`); etcdctl shows `client` (certificate, key) over TLS.
    pub fn enable_auth(&self, root_password: &str, client: Option<(&Path, &Path)>) -> io::Result<()> {
        let user = format!("root:{root_password}");
        for args in [&["user", "add", &user, "--interactive=false"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
            let mut cmd = Command::new("etcdctl");
            cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(self.endpoint()).args(["--command-timeout", "10s"]);
            if let Some(t) = &self.tls {
                cmd.arg("--cacert").arg(&t.ca);
            }
            if let Some((cert, key)) = client {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let out = cmd.args(args).output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
            }
        }
        Ok(())
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
