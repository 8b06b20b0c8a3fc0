//! NFS pools. So far: the config's checks and kernel mount options, and the
//! userspace client every NFS operation will go through (libnfs: no kernel
//! mount, so a dead server never leaves a process in D state); the pool
//! backend builds on them.

pub mod client;
pub mod config;
