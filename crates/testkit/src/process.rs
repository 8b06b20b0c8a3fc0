//! Child processes owned by a test: stopped (SIGTERM, then SIGKILL) and reaped
//! by pid on drop.

use std::io;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spawned server. Dropping it stops it.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd`; the child also gets SIGTERM if the spawning thread dies.
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing is allocated in the hook.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        Ok(Self { name: name.to_owned(), child: Some(child) })
    }

    /// The pid, while the process is not reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, ...) to the process if it still runs.
    /// For SIGSTOP, returns once the process is stopped: kill(2) only queues
    /// the signal, and a request sent right after could still be answered.
    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child, which is not reaped yet.
            unsafe { libc::kill(child.id() as i32, sig) };
            if sig == libc::SIGSTOP {
                let stat = format!("/proc/{}/stat", child.id());
                let stopped = || {
                    std::fs::read_to_string(&stat)
                        .ok()
                        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                        .unwrap_or(true)
                };
                let _ = wait_until("the stopped process", Duration::from_secs(5), stopped);
            }
        }
    }

    /// Whether the process is still running (it is our child: try_wait is exact).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL now, as `kill -9` would; reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; always reaped.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(None) = child.try_wait() {
            // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("testkit: {} did not stop on SIGTERM within {grace:?}; killing it", self.name);
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A binary of this workspace, built next to the running test (target/<profile>/NAME).
/// Tests of one package use it to run another package's daemon as a process.
/// `cargo test -p ONE` does not rebuild the other package's binary: build the
/// workspace (scripts/test.sh does) or that package after changing it.
pub fn workspace_binary(name: &str) -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).ok_or_else(|| io::Error::other("no target dir"))?;
    let path = profile_dir.join(name);
    if !path.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not built; build the workspace first (cargo build --workspace)", path.display()),
        ));
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1.
/// A random UUID from the kernel.
pub fn new_uuid() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_owned())
}

pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a command to completion; its stdout, or its stderr in the error.
pub fn run_command(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what} not ready after {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a process we did not spawn (QEMU under libvirtd) by its pid file.
pub fn kill_pid_file(path: &std::path::Path) {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(pid) = text.trim().parse::<i32>()
            && pid > 1 {
                // SAFETY: plain kill(2); the pid comes from the daemon's own pid file.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
}
