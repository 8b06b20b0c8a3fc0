//! Namespaces of a test's own. A network namespace has loopback only and
//! its port 111 free for a portmapper. QEMU's NFS driver finds the NFS and MOUNT services only
//! through a portmapper on port 111 of the server, so a test that runs QEMU
//! (or qemu-img) against a test NFS server needs one of its own.

use std::io;

/// Moves the calling thread into a new network namespace with `lo` up.
/// Threads and children it starts afterwards (a tokio runtime built after
/// this call, servers, qemu-img) share it; threads that exist already do
/// not, so call it first thing in a plain `#[test]` and build the runtime
/// after it.
pub fn private_network() -> io::Result<()> {
    // SAFETY: plain system calls on values owned here.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::other(format!("unshare(CLONE_NEWNET): {} (tests run as root)", io::Error::last_os_error())));
        }
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(sock);
        if rc != 0 {
            return Err(io::Error::other(format!("cannot bring lo up in the new network namespace: {err}")));
        }
    }
    Ok(())
}

/// Moves the calling thread into a mount namespace of its own (mounts made
/// from it, and from threads and children it starts afterwards, are gone
/// with the test and never reach the host). Same rules as
/// [`private_network`].
pub fn private_mounts() -> io::Result<()> {
    // SAFETY: plain system calls with constant arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::other(format!("unshare(CLONE_NEWNS): {}", io::Error::last_os_error())));
        }
        let root = c"/";
        if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            return Err(io::Error::other(format!("making mounts private: {}", io::Error::last_os_error())));
        }
    }
    Ok(())
}
