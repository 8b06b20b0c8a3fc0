//! A directory that hangs on demand, as a dead NFS server makes its mount
//! hang (see shared/recipes/fuse-hang.md): a FUSE daemon mirrors a source
//! directory at a mount point; SIGSTOP of the daemon blocks every access to
//! the mount, SIGCONT releases it. The kernel here has FUSE but no NFS
//! client.

use std::path::Path;

/// The passthrough daemon (built with testkit): `PROGRAM SRC MOUNTPOINT
/// [-o allow_other,default_permissions]`, in the foreground, so the pid
/// spawned is the daemon.
pub fn passthrough_program() -> &'static Path {
    Path::new(env!("LQ_FUSE_PASSTHROUGH"))
}
