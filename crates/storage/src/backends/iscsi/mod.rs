//! iSCSI pools. So far: the config's checked parts and the userspace
//! initiator every direct-mode operation goes through (libiscsi: discovery,
//! login with CHAP, LUNs with sizes and world-wide names); the pool backend
//! builds on them.

pub mod client;
pub mod config;
