//! File-system confinement of a child that reads untrusted input (an image
//! to import): with Landlock, the child can open its input, its output and
//! the system files a program needs to run, and nothing else. A crafted
//! image that references another file (a backing file, an external data
//! file, VMDK extents) then cannot make the child read it, whatever was
//! checked before. Applied between fork and exec with raw system calls only
//! (async-signal-safe); the rules are opened there, in the child.

use std::ffi::CString;
use std::os::fd::RawFd;

// From <linux/landlock.h> (ABI 1, Linux 5.13).
const ACCESS_FS_EXECUTE: u64 = 1 << 0;
const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
const ACCESS_FS_READ_FILE: u64 = 1 << 2;
const ACCESS_FS_READ_DIR: u64 = 1 << 3;
/// Every right of ABI 1: all are denied unless a rule grants them.
const ACCESS_FS_ALL_V1: u64 = (1 << 13) - 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What the system must let any dynamically linked program read to start
/// and resolve names (the monitors of a Ceph target).
const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/hosts", "/etc/resolv.conf",
    "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/dev/null", "/dev/urandom",
];

/// The confinement of one child: read-only files and descriptors, and
/// read-write descriptors (its output).
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    read_paths: Vec<CString>,
    read_fds: Vec<RawFd>,
    write_fds: Vec<RawFd>,
}

impl Confinement {
    pub fn new() -> Self {
        let read_paths = SYSTEM_READ.iter().map(|p| CString::new(*p).expect("no NUL in a constant")).collect();
        Self { read_paths, read_fds: Vec::new(), write_fds: Vec::new() }
    }

    /// The child may read this file (given by path; skipped if it does not exist).
    pub fn read_path(mut self, path: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(p) = CString::new(path.as_os_str().as_bytes()) {
            self.read_paths.push(p);
        }
        self
    }

    /// The child may read the file behind this descriptor (the inode, not a path).
    pub fn read_fd(mut self, fd: RawFd) -> Self {
        self.read_fds.push(fd);
        self
    }

    /// The child may read and write the file behind this descriptor.
    pub fn write_fd(mut self, fd: RawFd) -> Self {
        self.write_fds.push(fd);
        self
    }

    /// In the child, before exec. Fails (and the child with it) if the
    /// kernel has no Landlock: untrusted input is never read unconfined.
    pub fn apply_in_child(&self) -> std::io::Result<()> {
        let attr = RulesetAttr { handled_access_fs: ACCESS_FS_ALL_V1 };
        // SAFETY: raw system calls with valid pointers to live, initialised memory.
        unsafe {
            let ruleset = libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            ) as RawFd;
            if ruleset < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let add = |fd: RawFd, access: u64| -> std::io::Result<()> {
                let rule = PathBeneathAttr { allowed_access: access, parent_fd: fd };
                if libc::syscall(libc::SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule as *const PathBeneathAttr, 0u32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            for path in &self.read_paths {
                let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                if fd < 0 {
                    continue; // not on this system
                }
                let meta_is_dir = {
                    let mut st: libc::stat = std::mem::zeroed();
                    libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
                };
                // Directory rights only fit directories; EXECUTE for the programs and libraries.
                let access = if meta_is_dir {
                    ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR | ACCESS_FS_EXECUTE
                } else {
                    ACCESS_FS_READ_FILE | ACCESS_FS_EXECUTE
                };
                let added = add(fd, access);
                libc::close(fd);
                added?;
            }
            for &fd in &self.read_fds {
                add(fd, ACCESS_FS_READ_FILE)?;
            }
            for &fd in &self.write_fds {
                add(fd, ACCESS_FS_READ_FILE | ACCESS_FS_WRITE_FILE)?;
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let restricted = libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32);
            libc::close(ruleset);
            if restricted < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
