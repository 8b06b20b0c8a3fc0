//! Typed wrappers over external tools. Each tool gets one module that builds its
//! argv and parses its structured output; backends call these, never a process.

pub mod confine;
pub mod exec;
pub mod iscsiadm;
pub mod lvm;
pub mod mount;
pub mod qemu_img;
pub mod qemu_nbd;

pub use exec::{ResourceLimits, ToolCommand, ToolOutput};
pub use qemu_img::QemuImg;
