//! Real servers for tests, started in a temp dir on loopback and stopped by
//! pid when dropped. Nothing here touches the machine's own daemons.
//!
//! Start servers from the test's own thread (not from a runtime's blocking
//! pool): each child is tied to the thread that spawned it (PR_SET_PDEATHSIG),
//! so a test process that dies does not leave servers behind.

pub mod argv_watch;
pub mod ceph;
pub mod etcd;
pub mod fuse;
pub mod guest;
pub mod iscsi_login;
pub mod libvirt;
pub mod loopdev;
pub mod netns;
pub mod nfs;
pub mod process;
pub mod tgt;

pub use ceph::Ceph;
pub use etcd::Etcd;
pub use guest::{ExecOutput, Guest, GuestImage, GuestOptions};
pub use libvirt::Libvirtd;
pub use netns::{Forward, current_network, private_mounts, private_network};
pub use nfs::Ganesha;
pub use tgt::Tgt;
pub use process::{ChildGuard, free_port, run_command, wait_until, workspace_binary};
