//! LimiQuantix node storage engine: the [`StorageManager`], the [`Backend`]
//! trait and its backends, typed wrappers of external tools, and the libvirt
//! disk XML the node hands out. No networking lives here.

pub mod backend;
pub mod backends;
pub mod error;
pub mod fsutil;
pub mod ids;
pub mod image;
pub mod locks;
pub mod manager;
pub mod model;
pub mod nbd;
pub mod net;
pub mod pool_store;
mod progress;
pub mod qcow2;
pub mod revert;
pub mod sparse_copy;
pub mod throttle;
pub mod tools;
pub mod xml;

pub use backend::{Backend, LibvirtSecret, SecretUsage};
pub use backends::ceph::CephTimeouts;
pub use error::{ErrorClass, Result, StorageError, ToolError};
pub use ids::{Name, PoolId, VolumeId};
pub use manager::{EngineConfig, ExportInfo, LiveMirror, LiveResize, LiveSnapshot, LiveSnapshotOutcome, PoolPhase, PoolReport, StorageManager};
pub use tools::qemu_img::ToolTimeouts;
