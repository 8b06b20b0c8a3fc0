//! libnfs, typed: one mounted export per client, every call bounded by the
//! client's timeout (libnfs checks it in its own poll loop). Calls block
//! their thread: callers run them off the async runtime. A client is used
//! by one thread at a time (libnfs contexts are not thread-safe).

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use limiquantix_nfs_sys as sys;

use crate::error::{Result, StorageError};

/// A server and an export on it, checked: they become an NFS URL, so
/// nothing that could add URL parameters or climb out of the export passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsExport {
    pub server: String,
    pub export: String,
    /// Ports of the NFS and MOUNT services, skipping the portmapper.
    pub nfs_port: Option<u16>,
    pub mount_port: Option<u16>,
}

impl NfsExport {
    pub fn new(server: &str, export: &str) -> Result<Self> {
        check_server(server)?;
        check_export(export)?;
        Ok(Self { server: server.to_owned(), export: export.trim_end_matches('/').to_owned(), nfs_port: None, mount_port: None })
    }

    pub fn with_ports(mut self, nfs_port: u16, mount_port: u16) -> Self {
        (self.nfs_port, self.mount_port) = (Some(nfs_port), Some(mount_port));
        self
    }

    /// The URL of `file` in the export as QEMU takes it: QEMU's driver
    /// finds the services through the server's portmapper and accepts no
    /// port parameters.
    pub fn qemu_url(&self, file: &str) -> String {
        format!("nfs://{}{}/{file}", crate::net::bracketed(&self.server), self.export)
    }

    fn url(&self) -> String {
        let host = crate::net::bracketed(&self.server);
        let mut params = Vec::new();
        if let Some(p) = self.nfs_port {
            params.push(format!("nfsport={p}"));
        }
        if let Some(p) = self.mount_port {
            params.push(format!("mountport={p}"));
        }
        let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
        format!("nfs://{host}{}{query}", self.export)
    }
}

impl std::fmt::Display for NfsExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.server, self.export)
    }
}

fn check_server(server: &str) -> Result<()> {
    if crate::net::is_host(server) {
        Ok(())
    } else {
        Err(StorageError::invalid(format!("NFS server {server:?} is not a host name or an IP address")))
    }
}

fn check_export(export: &str) -> Result<()> {
    let ok = export.starts_with('/')
        && export.len() <= 1024
        && export.split('/').all(|part| part != ".." && part != ".")
        && export.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(format!(
            "NFS export {export:?} must be an absolute path of letters, digits and / . _ - + @, without . or .. parts"
        )))
    }
}

/// Capacity of the exported file system (FSSTAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    pub total_bytes: u64,
    /// Free for root (what the server's file system has left).
    pub free_bytes: u64,
    /// Free for unprivileged users.
    pub available_bytes: u64,
}

/// A file's facts (GETATTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    /// Bytes the server has allocated for it.
    pub used: u64,
    pub mode: u32,
}

pub struct NfsClient {
    ctx: NonNull<sys::nfs_context>,
    export: NfsExport,
    timeout: Duration,
}

// SAFETY: a libnfs context may move between threads; it is used by one at a
// time (methods take &mut self, and NfsClient is not Sync).
unsafe impl Send for NfsClient {}

impl std::fmt::Debug for NfsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NfsClient({})", self.export)
    }
}

impl NfsClient {
    /// Mounts `export` (MOUNT, then NFS); fails within about `timeout`.
    pub fn mount(export: &NfsExport, timeout: Duration) -> Result<Self> {
        // SAFETY: no arguments; a null return means out of memory.
        let ctx = NonNull::new(unsafe { sys::nfs_init_context() })
            .ok_or_else(|| StorageError::Internal("libnfs could not make a context".into()))?;
        let client = Self { ctx, export: export.clone(), timeout };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: a live context.
        unsafe { sys::nfs_set_timeout(client.ctx.as_ptr(), ms) };
        let url = CString::new(export.url()).map_err(|_| StorageError::invalid("NFS URL with a NUL byte"))?;
        // SAFETY: a live context and a NUL-terminated URL; parsing also sets
        // the URL's options (ports) on the context.
        let parsed = unsafe { sys::nfs_parse_url_dir(client.ctx.as_ptr(), url.as_ptr()) };
        let Some(parsed) = NonNull::new(parsed) else {
            return Err(StorageError::invalid(format!("NFS URL for {export}: {}", client.last_error())));
        };
        // SAFETY: the URL struct libnfs just returned, freed right after.
        let rc = unsafe {
            let u = parsed.as_ref();
            let rc = sys::nfs_mount(client.ctx.as_ptr(), u.server, u.path);
            sys::nfs_destroy_url(parsed.as_ptr());
            rc
        };
        client.check("mount", rc)?;
        Ok(client)
    }

    /// Capacity of the export's file system: one FSSTAT, whatever it holds.
    pub fn fs_stat(&mut self) -> Result<FsStat> {
        let mut s = sys::nfs_statvfs_64::default();
        let root = c"/";
        // SAFETY: a mounted context, a NUL-terminated path, an out-struct.
        let rc = unsafe { sys::nfs_statvfs64(self.ctx.as_ptr(), root.as_ptr(), &mut s) };
        self.check("fsstat", rc)?;
        Ok(FsStat {
            total_bytes: s.f_frsize.saturating_mul(s.f_blocks),
            free_bytes: s.f_frsize.saturating_mul(s.f_bfree),
            available_bytes: s.f_frsize.saturating_mul(s.f_bavail),
        })
    }

    /// The file at `path` (relative to the export, e.g. "/lq-x.qcow2"), or
    /// None if there is none.
    pub fn stat(&mut self, path: &str) -> Result<Option<FileStat>> {
        let p = self.path(path)?;
        let mut s = sys::nfs_stat_64::default();
        // SAFETY: a mounted context, a NUL-terminated path, an out-struct.
        let rc = unsafe { sys::nfs_stat64(self.ctx.as_ptr(), p.as_ptr(), &mut s) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        self.check("getattr", rc)?;
        Ok(Some(FileStat { size: s.nfs_size, used: s.nfs_used, mode: s.nfs_mode as u32 }))
    }

    /// Creates `path` empty with `mode`; AlreadyExists if it is there.
    pub fn create_new(&mut self, path: &str, mode: u32) -> Result<()> {
        let p = self.path(path)?;
        let mut fh: *mut sys::nfsfh = std::ptr::null_mut();
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        // SAFETY: a mounted context, a NUL-terminated path, an out-pointer.
        let rc = unsafe { sys::nfs_create(self.ctx.as_ptr(), p.as_ptr(), flags, mode as i32, &mut fh) };
        if rc == -libc::EEXIST {
            return Err(StorageError::AlreadyExists(format!("{path} exists on {}", self.export)));
        }
        self.check("create", rc)?;
        // SAFETY: the handle nfs_create just returned.
        let rc = unsafe { sys::nfs_close(self.ctx.as_ptr(), fh) };
        self.check("close", rc)
    }

    /// Removes `path`; false if there was nothing to remove.
    pub fn unlink(&mut self, path: &str) -> Result<bool> {
        let p = self.path(path)?;
        // SAFETY: a mounted context and a NUL-terminated path.
        let rc = unsafe { sys::nfs_unlink(self.ctx.as_ptr(), p.as_ptr()) };
        if rc == -libc::ENOENT {
            return Ok(false);
        }
        self.check("remove", rc).map(|()| true)
    }

    /// Entries of the directory `path` with their sizes (READDIRPLUS: one
    /// round trip per page of entries, no file opened).
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let p = self.path(path)?;
        let mut dir: *mut sys::nfsdir = std::ptr::null_mut();
        // SAFETY: a mounted context, a NUL-terminated path, an out-pointer.
        let rc = unsafe { sys::nfs_opendir(self.ctx.as_ptr(), p.as_ptr(), &mut dir) };
        self.check("readdir", rc)?;
        let mut entries = Vec::new();
        loop {
            // SAFETY: the directory handle opendir returned; entries stay
            // valid until closedir, and are copied here.
            let entry = unsafe { sys::nfs_readdir(self.ctx.as_ptr(), dir) };
            let Some(entry) = (unsafe { entry.as_ref() }) else { break };
            let name = unsafe { CStr::from_ptr(entry.name) }.to_string_lossy().into_owned();
            entries.push(DirEntry { name, size: entry.size, used: entry.used, mtime_unix_seconds: entry.mtime.tv_sec });
        }
        // SAFETY: closing the handle opened above, once.
        unsafe { sys::nfs_closedir(self.ctx.as_ptr(), dir) };
        Ok(entries)
    }

    /// Renames `from` to `to` in one server call, replacing `to` (NFS
    /// metadata operations are stable on the server when they return).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.path(from)?, self.path(to)?);
        // SAFETY: a mounted context and NUL-terminated paths.
        let rc = unsafe { sys::nfs_rename(self.ctx.as_ptr(), f.as_ptr(), t.as_ptr()) };
        self.check("rename", rc)
    }

    /// Opens `path` for reading; None if it does not exist.
    pub fn open_read(&mut self, path: &str) -> Result<Option<NfsReader<'_>>> {
        let p = self.path(path)?;
        let mut fh: *mut sys::nfsfh = std::ptr::null_mut();
        // SAFETY: a mounted context, a NUL-terminated path, an out-pointer.
        let rc = unsafe { sys::nfs_open(self.ctx.as_ptr(), p.as_ptr(), libc::O_RDONLY, &mut fh) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        self.check("open", rc)?;
        Ok(Some(NfsReader { client: self, fh, pos: 0 }))
    }

    fn path(&self, path: &str) -> Result<CString> {
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(StorageError::invalid(format!("{path:?} is not a path inside the export")));
        }
        CString::new(path).map_err(|_| StorageError::invalid("a path with a NUL byte"))
    }

    fn last_error(&self) -> String {
        // SAFETY: a live context; the string is owned by it and copied here.
        let msg = unsafe { sys::nfs_get_error(self.ctx.as_ptr()) };
        if msg.is_null() { String::new() } else { unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned() }
    }

    /// A libnfs return code as an error naming the export and the call.
    fn check(&self, call: &str, rc: i32) -> Result<()> {
        if rc >= 0 {
            return Ok(());
        }
        let detail = self.last_error();
        let what = format!("NFS {call} on {}", self.export);
        Err(match -rc {
            libc::ENOENT => StorageError::NotFound(format!("{what}: {detail}")),
            libc::EACCES | libc::EPERM => StorageError::PermissionDenied(format!("{what}: {detail}")),
            libc::ENOSPC | libc::EDQUOT => StorageError::ResourceExhausted(format!("{what}: {detail}")),
            // libnfs reports its own timeout as EINTR ("Command timed out").
            libc::EINTR | libc::ETIMEDOUT | libc::EIO | libc::ECONNREFUSED | libc::ECONNRESET | libc::EHOSTUNREACH | libc::ENETUNREACH => {
                StorageError::Unavailable(format!(
                    "{what} failed: the server did not answer in time ({} s) or cannot be reached: {detail}",
                    self.timeout.as_secs_f64()
                ))
            }
            _ => StorageError::Internal(format!("{what} failed (errno {}): {detail}", -rc)),
        })
    }
}

/// A directory entry with the facts READDIRPLUS brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub size: u64,
    pub used: u64,
    pub mtime_unix_seconds: i64,
}

/// A file open for reading, positioned: `Read` + `Seek` over READs.
pub struct NfsReader<'a> {
    client: &'a mut NfsClient,
    fh: *mut sys::nfsfh,
    pos: u64,
}

impl std::io::Read for NfsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len().min(1 << 20) as u64;
        // SAFETY: an open handle of this client and a buffer of `len` bytes.
        let rc = unsafe { sys::nfs_pread(self.client.ctx.as_ptr(), self.fh, self.pos, len, buf.as_mut_ptr().cast()) };
        if rc < 0 {
            let err = self.client.check("read", rc).expect_err("a negative return is an error");
            return Err(std::io::Error::other(err.to_string()));
        }
        self.pos += rc as u64;
        Ok(rc as usize)
    }
}

impl std::io::Seek for NfsReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            std::io::SeekFrom::Start(p) => p,
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(|| std::io::Error::other("seek before the start"))?,
            std::io::SeekFrom::End(_) => return Err(std::io::Error::other("seeking from the end is not needed for headers")),
        };
        Ok(self.pos)
    }
}

impl Drop for NfsReader<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle opened by open_read, closed once.
        unsafe { sys::nfs_close(self.client.ctx.as_ptr(), self.fh) };
    }
}

impl Drop for NfsClient {
    fn drop(&mut self) {
        // Destroying the context closes its sockets; no UMNT call, which a
        // dead server would make wait the whole timeout (servers forget
        // mounts on their own: the MOUNT list is advisory).
        // SAFETY: the context is ours and used nowhere else.
        unsafe { sys::nfs_destroy_context(self.ctx.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_exports_that_could_change_the_url_are_refused() {
        for ok in ["10.0.0.5", "fd00::1", "nas01.example.com", "nas-2"] {
            assert!(NfsExport::new(ok, "/srv/vm").is_ok(), "{ok}");
        }
        for bad in ["", "nas?x=1", "a/b", "-nas", "nas..example", "user@nas", "nas:2049"] {
            assert!(NfsExport::new(bad, "/srv/vm").is_err(), "{bad}");
        }
        for bad in ["srv/vm", "/srv/../etc", "/srv/vm?nfsport=1", "/srv/vm&x", "/srv/./vm", "/srv/v m", "/srv/vm#x"] {
            assert!(NfsExport::new("nas", bad).is_err(), "{bad}");
        }
        let e = NfsExport::new("fd00::1", "/srv/vm/").unwrap().with_ports(2049, 20048);
        assert_eq!(e.url(), "nfs://[fd00::1]/srv/vm?nfsport=2049&mountport=20048");
    }
}
