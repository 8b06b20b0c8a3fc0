//! NFS pools. So far the userspace client every NFS operation will go
//! through (libnfs: no kernel mount, so a dead server never leaves a
//! process in D state); the pool backend builds on it.

pub mod client;
