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

/// The network namespace of the calling thread, kept open so other threads
/// can reach into it ([`Forward`]).
pub fn current_network() -> io::Result<std::fs::File> {
    std::fs::File::open("/proc/thread-self/ns/net")
}

/// A TCP forwarder from a port on loopback in the namespace of the thread
/// that made it to a port on loopback in another namespace: two test
/// "hosts" (network namespaces) talk over loopback only, and one can lose a
/// server the other still reaches. Runs until the test process ends.
pub struct Forward {
    pub port: u16,
}

impl Forward {
    pub fn start(to: &std::fs::File, to_port: u16) -> io::Result<Self> {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        use std::sync::mpsc;
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let target = to.try_clone()?;
        // One thread lives in the target namespace and opens connections there.
        let (ask, asked) = mpsc::channel::<mpsc::Sender<io::Result<TcpStream>>>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread with a namespace file we hold open.
            let entered = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
            let _ = ready_tx.send(if entered == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
            for reply in asked {
                let _ = reply.send(TcpStream::connect(("127.0.0.1", to_port)));
            }
        });
        ready_rx.recv().map_err(io::Error::other)??;
        std::thread::spawn(move || {
            for incoming in listener.incoming().flatten() {
                let (tx, rx) = mpsc::channel();
                if ask.send(tx).is_err() {
                    return;
                }
                let Ok(Ok(outgoing)) = rx.recv() else { continue };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(a), Ok(b)) = (incoming.try_clone(), outgoing.try_clone()) {
                    pipe(incoming, b);
                    pipe(outgoing, a);
                }
            }
        });
        Ok(Self { port })
    }
}
