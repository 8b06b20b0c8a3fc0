//! A small safe layer over librados: a connected cluster handle configured
//! in memory (monitors, key and timeouts are set with rados_conf_set, never
//! put on a command line or in a log), I/O contexts, and monitor commands
//! with JSON output. Errors carry the call and its errno.

use std::ffi::{CString, c_char};
use std::sync::Arc;
use std::time::Duration;

use limiquantix_ceph_sys as sys;

/// A failed librados/librbd call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call} failed: {message} (errno {errno}){}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
pub struct CephError {
    pub call: &'static str,
    pub errno: i32,
    pub message: String,
    /// What Ceph said, when it said something (monitor command status).
    pub detail: String,
}

impl CephError {
    pub fn from_rc(call: &'static str, rc: i32) -> Self {
        let errno = rc.abs();
        Self { call, errno, message: std::io::Error::from_raw_os_error(errno).to_string(), detail: String::new() }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The engine's error for this errno; the message starts with `what`
    /// was being done.
    pub fn in_context(self, what: &str) -> crate::error::StorageError {
        use crate::error::StorageError as S;
        let e = &self;
        match self.errno {
            libc::ENOENT => S::NotFound(format!("{what}: {e}")),
            libc::EEXIST => S::AlreadyExists(format!("{what}: {e}")),
            libc::EACCES | libc::EPERM => S::PermissionDenied(format!("{what}: Ceph refused the credentials ({e})")),
            libc::ETIMEDOUT => S::Unavailable(format!("{what}: the Ceph cluster did not answer in time ({e})")),
            libc::ENOTCONN | libc::ESHUTDOWN | libc::ECONNREFUSED => S::Unavailable(format!("{what}: {e}")),
            libc::EBUSY | libc::ENOTEMPTY | libc::EROFS => S::FailedPrecondition(format!("{what}: {e}")),
            libc::ENOSPC | libc::EDQUOT => S::ResourceExhausted(format!("{what}: {e}")),
            libc::EINVAL | libc::ERANGE => S::InvalidArgument(format!("{what}: {e}")),
            libc::ECANCELED => S::Cancelled,
            _ => S::Internal(format!("{what}: {e}")),
        }
    }
}

impl From<CephError> for crate::error::StorageError {
    fn from(e: CephError) -> Self {
        e.in_context("Ceph")
    }
}

pub type CephResult<T> = Result<T, CephError>;

pub(crate) fn check(call: &'static str, rc: i32) -> CephResult<i32> {
    if rc < 0 { Err(CephError::from_rc(call, rc)) } else { Ok(rc) }
}

pub(crate) fn cstring(call: &'static str, s: &str) -> CephResult<CString> {
    CString::new(s).map_err(|_| CephError::from_rc(call, -libc::EINVAL).with_detail("a name contains a NUL byte"))
}

/// How to reach a cluster.
pub struct ConnectConfig<'a> {
    /// Monitors, "host:port" each.
    pub monitors: &'a [String],
    /// cephx user without "client.".
    pub client_id: &'a str,
    pub key: &'a str,
    pub mon_op_timeout: Duration,
    pub osd_op_timeout: Duration,
    pub mount_timeout: Duration,
}

/// librados cannot set a client up while another in the same process shuts
/// down (Ceph: "rados_connect and rados_shutdown don't and can't behave well
/// when racing"), and a node with two Ceph pools has two clients: creation,
/// connection and shutdown of every client in the process take turns. A
/// connect to a dead cluster holds the turn at most its mount timeout; I/O
/// never waits for it.
static LIFECYCLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lifecycle_turn() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding it leaves nothing half-done on our side.
    LIFECYCLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connected cluster handle. librados handles may be used from several
/// threads at once.
pub struct Cluster {
    handle: sys::rados_t,
}

// SAFETY: librados cluster handles are thread-safe (documented by Ceph: a
// rados_t may be shared between threads once connected).
unsafe impl Send for Cluster {}
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Connects; fails within `mount_timeout` if no monitor answers.
    pub fn connect(cfg: &ConnectConfig<'_>) -> CephResult<Arc<Self>> {
        let name = cstring("rados_create2", &format!("client.{}", cfg.client_id))?;
        let cluster_name = cstring("rados_create2", "ceph")?;
        let mut handle: sys::rados_t = std::ptr::null_mut();
        let created = {
            let _turn = lifecycle_turn();
            // SAFETY: out-pointer to a handle, NUL-terminated strings.
            unsafe { sys::rados_create2(&mut handle, cluster_name.as_ptr(), name.as_ptr(), 0) }
        };
        check("rados_create2", created)?;
        let cluster = Self { handle };
        let secs = |d: Duration| d.as_secs().max(1).to_string();
        let options = [
            ("mon_host", cfg.monitors.join(",")),
            ("key", cfg.key.to_owned()),
            ("rados_mon_op_timeout", secs(cfg.mon_op_timeout)),
            ("rados_osd_op_timeout", secs(cfg.osd_op_timeout)),
            ("client_mount_timeout", secs(cfg.mount_timeout)),
            // No config file is read; nothing is logged to our stderr.
            ("log_to_stderr", "false".into()),
            ("err_to_stderr", "false".into()),
        ];
        for (option, value) in options {
            let (o, v) = (cstring("rados_conf_set", option)?, cstring("rados_conf_set", &value)?);
            // SAFETY: a created, not yet connected handle; NUL-terminated strings.
            check("rados_conf_set", unsafe { sys::rados_conf_set(cluster.handle, o.as_ptr(), v.as_ptr()) })
                .map_err(|e| e.with_detail(format!("option {option}")))?;
        }
        // The turn ends before `cluster` can be dropped (its drop takes a turn).
        let connected = {
            let _turn = lifecycle_turn();
            // SAFETY: a configured handle.
            unsafe { sys::rados_connect(cluster.handle) }
        };
        check("rados_connect", connected)?;
        Ok(Arc::new(cluster))
    }

    /// A monitor command (JSON in, JSON out); the monitor's status text goes
    /// into the error when it fails.
    pub fn mon_command(&self, cmd: &serde_json::Value) -> CephResult<Vec<u8>> {
        let text = cstring("rados_mon_command", &cmd.to_string())?;
        let mut cmds = [text.as_ptr()];
        let (mut outbuf, mut outbuf_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        let (mut outs, mut outs_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: one command string; librados allocates outbuf/outs, which we
        // copy by their lengths (they are not NUL-terminated) and free.
        let rc = unsafe {
            sys::rados_mon_command(
                self.handle,
                cmds.as_mut_ptr(),
                1,
                std::ptr::null(),
                0,
                &mut outbuf,
                &mut outbuf_len,
                &mut outs,
                &mut outs_len,
            )
        };
        let take = |ptr: *mut c_char, len: usize| -> Vec<u8> {
            if ptr.is_null() {
                return Vec::new();
            }
            // SAFETY: librados gave us `len` bytes at `ptr`; freed right after.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }.to_vec();
            unsafe { sys::rados_buffer_free(ptr) };
            bytes
        };
        let out = take(outbuf, outbuf_len);
        let status = String::from_utf8_lossy(&take(outs, outs_len)).trim().to_owned();
        check("rados_mon_command", rc).map_err(|e| e.with_detail(status))?;
        Ok(out)
    }

    /// The pool's id, or None if there is no such pool.
    pub fn pool_lookup(&self, pool: &str) -> CephResult<Option<i64>> {
        let name = cstring("rados_pool_lookup", pool)?;
        // SAFETY: connected handle, NUL-terminated name.
        let id = unsafe { sys::rados_pool_lookup(self.handle, name.as_ptr()) };
        match id {
            id if id >= 0 => Ok(Some(id)),
            id if id == -(libc::ENOENT as i64) => Ok(None),
            id => Err(CephError::from_rc("rados_pool_lookup", id as i32)),
        }
    }

    /// An I/O context on `pool` (and `namespace`, if not empty).
    pub fn ioctx(self: &Arc<Self>, pool: &str, namespace: &str) -> CephResult<IoCtx> {
        let name = cstring("rados_ioctx_create", pool)?;
        let mut ctx: sys::rados_ioctx_t = std::ptr::null_mut();
        // SAFETY: connected handle, out-pointer.
        check("rados_ioctx_create", unsafe { sys::rados_ioctx_create(self.handle, name.as_ptr(), &mut ctx) })?;
        let io = IoCtx { ctx, _cluster: self.clone() };
        if !namespace.is_empty() {
            let ns = cstring("rados_ioctx_set_namespace", namespace)?;
            // SAFETY: a valid ioctx; librados copies the string.
            unsafe { sys::rados_ioctx_set_namespace(io.ctx, ns.as_ptr()) };
        }
        Ok(io)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _turn = lifecycle_turn();
        // SAFETY: every IoCtx holds an Arc to us, so none outlives this.
        unsafe { sys::rados_shutdown(self.handle) };
    }
}

/// An I/O context; keeps its cluster alive.
pub struct IoCtx {
    ctx: sys::rados_ioctx_t,
    _cluster: Arc<Cluster>,
}

// SAFETY: an ioctx may be used from several threads (librados is
// thread-safe); it is only destroyed on drop.
unsafe impl Send for IoCtx {}
unsafe impl Sync for IoCtx {}

impl IoCtx {
    pub(crate) fn raw(&self) -> sys::rados_ioctx_t {
        self.ctx
    }

    /// Takes the advisory exclusive lock `name` on object `oid` as `cookie`,
    /// for `duration` (it lapses then, so a dead holder blocks no one for
    /// longer). EBUSY while someone else holds it. Locking creates a missing
    /// object: lock only objects known to exist.
    /// `renew` extends a lock this cookie holds (or takes it if free).
    pub fn lock_exclusive(&self, oid: &str, name: &str, cookie: &str, duration: Duration, renew: bool) -> CephResult<()> {
        let call = "rados_lock_exclusive";
        let (o, n, c, d) = (cstring(call, oid)?, cstring(call, name)?, cstring(call, cookie)?, cstring(call, "limiquantix")?);
        let mut tv = sys::timeval { tv_sec: duration.as_secs() as _, tv_usec: 0 };
        let flags = if renew { sys::LIBRADOS_LOCK_FLAG_MAY_RENEW as u8 } else { 0 };
        // SAFETY: valid ioctx, strings and timeval, all alive through the call.
        check(call, unsafe { sys::rados_lock_exclusive(self.ctx, o.as_ptr(), n.as_ptr(), c.as_ptr(), d.as_ptr(), &mut tv, flags) }).map(drop)
    }

    pub fn unlock(&self, oid: &str, name: &str, cookie: &str) -> CephResult<()> {
        let call = "rados_unlock";
        let (o, n, c) = (cstring(call, oid)?, cstring(call, name)?, cstring(call, cookie)?);
        // SAFETY: valid ioctx and strings.
        check(call, unsafe { sys::rados_unlock(self.ctx, o.as_ptr(), n.as_ptr(), c.as_ptr()) }).map(drop)
    }
}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once.
        unsafe { sys::rados_ioctx_destroy(self.ctx) };
    }
}
