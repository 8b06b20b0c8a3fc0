//! The one way the engine runs an external program: argv only (never a shell),
//! a timeout on every call (the child is killed when it expires or when the
//! caller gives up), standard error in the error, and secrets redacted from
//! everything that is logged or returned. No child outlives the daemon: each
//! gets SIGKILL when the daemon dies, even by kill -9 (see [`spawn`]).

use std::ffi::{OsStr, OsString};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::error::ToolError;

/// Standard error kept for error messages; the rest is dropped.
const STDERR_KEEP_BYTES: usize = 16 * 1024;

/// Kernel limits for a child that reads untrusted input (image inspection):
/// a crafted image must not be able to exhaust the node's memory or CPU.
#[derive(Debug, Clone, Copy)]
pub struct ResourceLimits {
    pub address_space_bytes: u64,
    pub cpu_seconds: u64,
}

#[derive(Debug)]
pub struct ToolOutput {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub exit_code: i32,
}

#[derive(Debug)]
pub struct ToolCommand {
    program: String,
    args: Vec<OsString>,
    timeout: Duration,
    secrets: Vec<String>,
    limits: Option<ResourceLimits>,
    accepted_exit_codes: Vec<i32>,
    /// Descriptors the child gets (at the same numbers).
    inherit_fds: Vec<std::os::fd::RawFd>,
    confinement: Option<super::confine::Confinement>,
    envs: Vec<(OsString, OsString)>,
}

impl ToolCommand {
    pub fn new(program: impl Into<String>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout,
            secrets: Vec::new(),
            limits: None,
            accepted_exit_codes: vec![0],
            inherit_fds: Vec::new(),
            confinement: None,
            envs: Vec::new(),
        }
    }

    /// An environment variable for the child (on top of the node's).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// A value that must never appear in logs or errors (it is replaced by `***`).
    pub fn secret(mut self, value: &str) -> Self {
        if !value.is_empty() {
            self.secrets.push(value.to_owned());
        }
        self
    }

    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Gives the child this descriptor, at the same number (e.g. to open it as
    /// /proc/self/fd/N). The caller keeps it open until the tool ends.
    pub fn inherit_fd(mut self, fd: std::os::fd::RawFd) -> Self {
        self.inherit_fds.push(fd);
        self
    }

    /// Confines the child's file-system access (see [`super::confine`]).
    pub fn confine(mut self, confinement: super::confine::Confinement) -> Self {
        self.confinement = Some(confinement);
        self
    }

    /// Exit codes that still mean "the tool answered" (default: only 0).
    pub fn accept_exit_codes(mut self, codes: &[i32]) -> Self {
        self.accepted_exit_codes = codes.to_vec();
        self
    }

    fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// The command line as it may be shown to people.
    pub fn display(&self) -> String {
        let mut line = self.program.clone();
        for a in &self.args {
            line.push(' ');
            line.push_str(&a.to_string_lossy());
        }
        self.redact(&line)
    }

    pub async fn run(self) -> Result<ToolOutput, ToolError> {
        self.run_streaming(|_| {}).await
    }

    /// Runs the command; `on_output` gets standard output as it arrives, split
    /// at `\r` and `\n` (progress meters rewrite their line with `\r`).
    pub async fn run_streaming(self, mut on_output: impl FnMut(&str)) -> Result<ToolOutput, ToolError> {
        tracing::debug!(command = %self.display(), timeout = ?self.timeout, "running tool");
        let mut cmd = Command::new(&self.program);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.limits.is_some() {
            // glibc reserves 64 MiB of address space per thread for malloc
            // arenas: qemu-img's thread pool alone could pass the limit and
            // fail to start a thread (seen: vmdk import, SIGABRT). One arena
            // keeps a convert at ~150 MiB instead of 400-760 MiB.
            cmd.env("MALLOC_ARENA_MAX", "1");
        }
        let (limits, inherit, confinement) = (self.limits, self.inherit_fds.clone(), self.confinement.clone());
        let parent = std::process::id() as i32;
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (prctl, getppid, setrlimit, fcntl,
        // open, close, landlock); nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent(parent)?;
                if let Some(l) = limits {
                    apply_limits(l)?;
                }
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                match &confinement {
                    Some(c) => c.apply_in_child(),
                    None => Ok(()),
                }
            });
        }
        let mut child = spawn(cmd).await.map_err(|source| ToolError::Spawn { program: self.program.clone(), source })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");

        let work = async {
            let out = read_split(&mut stdout, &mut on_output);
            let err = read_capped(&mut stderr);
            let (out, err) = tokio::join!(out, err);
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(ToolError::Timeout { program: self.program.clone(), after: self.timeout });
            }
        };
        let io_err = |source| ToolError::Io { program: self.program.clone(), source };
        let stdout = out.map_err(io_err)?;
        let stderr = self.redact(String::from_utf8_lossy(&err.map_err(io_err)?).trim());
        let status = status.map_err(io_err)?;
        match status.code() {
            Some(code) if self.accepted_exit_codes.contains(&code) => Ok(ToolOutput { stdout, stderr, exit_code: code }),
            _ => Err(ToolError::Failed { program: self.program.clone(), status: status.to_string(), stderr }),
        }
    }
}

/// In the child: SIGKILL when the parent dies. The parent may already have
/// died between fork and here; then the child is an orphan and stops at once.
fn die_with_parent(parent: i32) -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling (child) process.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(std::io::Error::other("the daemon exited while starting the tool"));
        }
    }
    Ok(())
}

/// Spawns on one thread that lives as long as the process. PR_SET_PDEATHSIG
/// fires when the *thread* that forked the child exits, and the runtime's
/// threads come and go (an idle blocking-pool thread ends after seconds):
/// forking from a thread that never ends ties children to the process.
async fn spawn(mut cmd: Command) -> std::io::Result<tokio::process::Child> {
    type Request = (Command, tokio::runtime::Handle, tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Request>>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("lq-spawner".into())
            .spawn(move || {
                for (mut cmd, handle, reply) in rx {
                    // The child's pipes register with the caller's runtime.
                    let _runtime = handle.enter();
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the spawner thread starts");
        std::sync::Mutex::new(tx)
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = (cmd, tokio::runtime::Handle::current(), reply);
    if let Err(std::sync::mpsc::SendError((c, _, _))) = spawner.lock().expect("spawner lock").send(request) {
        cmd = c;
        return cmd.spawn();
    }
    answer.await.map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

fn apply_limits(limits: ResourceLimits) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |res, value: u64| {
        setrlimit(res, Rlimit { current: Some(value), maximum: Some(value) }).map_err(std::io::Error::from)
    };
    set(Resource::As, limits.address_space_bytes)?;
    set(Resource::Cpu, limits.cpu_seconds)
}

async fn read_split(reader: &mut (impl AsyncRead + Unpin), on_output: &mut impl FnMut(&str)) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if !pending.is_empty() {
                    on_output(&String::from_utf8_lossy(&pending));
                    pending.clear();
                }
            } else {
                pending.push(b);
            }
        }
    }
    if !pending.is_empty() {
        on_output(&String::from_utf8_lossy(&pending));
    }
    Ok(all)
}

async fn read_capped(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = STDERR_KEEP_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let out = ToolCommand::new("echo", Duration::from_secs(5)).arg("$(id) ; rm -rf /").run().await.unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "$(id) ; rm -rf /\n");
    }

    #[tokio::test]
    async fn a_hung_tool_is_killed_at_its_timeout() {
        let start = Instant::now();
        let err = ToolCommand::new("sleep", Duration::from_millis(200)).arg("30").run().await.unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn failure_carries_stderr_with_secrets_redacted() {
        let err = ToolCommand::new("ls", Duration::from_secs(5))
            .arg("/nonexistent-AQBsecret==")
            .secret("AQBsecret==")
            .run()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent-***"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
        assert!(!msg.contains("AQBsecret"), "{msg}");
        assert!(msg.contains("exit status: 2"), "{msg}");
    }

    #[tokio::test]
    async fn display_redacts_secrets() {
        let cmd = ToolCommand::new("tool", Duration::from_secs(1)).args(["--key", "s3cr3t"]).secret("s3cr3t");
        assert_eq!(cmd.display(), "tool --key ***");
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let err = ToolCommand::new("lq-no-such-tool", Duration::from_secs(1)).run().await.unwrap_err();
        assert!(matches!(err, ToolError::Spawn { .. }));
        assert!(err.to_string().contains("is it installed"));
    }

    #[tokio::test]
    async fn output_is_streamed_split_at_carriage_returns() {
        let mut seen = Vec::new();
        ToolCommand::new("printf", Duration::from_secs(5))
            .arg("a\rb\nc")
            .run_streaming(|s| seen.push(s.to_owned()))
            .await
            .unwrap();
        assert_eq!(seen, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn children_get_sigkill_when_the_daemon_dies() {
        // The parent-death signal is only visible from inside the child: ask it.
        let out = ToolCommand::new("python3", Duration::from_secs(5))
            .args(["-c", "import ctypes; s = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(s)); print(s.value)"])
            .run()
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), libc::SIGKILL.to_string());
    }

    #[tokio::test]
    async fn a_confined_child_reads_what_it_is_given_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (given, other) = (dir.path().join("given"), dir.path().join("other"));
        std::fs::write(&given, "given").unwrap();
        std::fs::write(&other, "other").unwrap();
        let file = std::fs::File::open(&given).unwrap();
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        let confined = |path: String| {
            ToolCommand::new("cat", Duration::from_secs(5))
                .arg(path)
                .inherit_fd(fd)
                .confine(super::super::confine::Confinement::new().read_fd(fd))
                .run()
        };
        let out = confined(format!("/proc/self/fd/{fd}")).await.unwrap();
        assert_eq!(out.stdout, b"given", "the descriptor it was given");
        let err = confined(other.display().to_string()).await.unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        let err = confined("/etc/passwd".into()).await.unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        // Renamed away and replaced, the path no longer reaches it; the descriptor still does.
        std::fs::rename(&given, dir.path().join("moved")).unwrap();
        std::fs::write(&given, "swapped").unwrap();
        assert_eq!(confined(format!("/proc/self/fd/{fd}")).await.unwrap().stdout, b"given");
        assert!(confined(given.display().to_string()).await.is_err());
    }

    #[tokio::test]
    async fn resource_limits_apply_to_the_child() {
        let out = ToolCommand::new("cat", Duration::from_secs(5))
            .arg("/proc/self/limits")
            .limits(ResourceLimits { address_space_bytes: 1 << 30, cpu_seconds: 7 })
            .run()
            .await
            .unwrap();
        let limits = String::from_utf8(out.stdout).unwrap();
        let row = |name: &str| {
            let line = limits.lines().find(|l| l.starts_with(name)).unwrap().to_owned();
            line.split_whitespace().rev().skip(1).take(2).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(row("Max address space"), "1073741824 1073741824");
        assert_eq!(row("Max cpu time"), "7 7");

        // One malloc arena: per-thread arenas would spend the address space.
        let env = ToolCommand::new("cat", Duration::from_secs(5))
            .arg("/proc/self/environ")
            .limits(ResourceLimits { address_space_bytes: 1 << 30, cpu_seconds: 7 })
            .run()
            .await
            .unwrap();
        assert!(env.stdout.split(|&b| b == 0).any(|v| v == b"MALLOC_ARENA_MAX=1"));
    }
}
