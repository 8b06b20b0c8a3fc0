//! Raw libnfs 4.0 as bindgen generated it. Every `nfs_*` call without
//! `_async` is synchronous and blocks its thread (with the context's
//! timeout); the safe wrapper lives in the storage engine (backends/nfs).
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/nfs.rs"));
