//! Raw librados and librbd (Ceph 16, librbd 1.16) as bindgen generated them.
//! Safe wrappers live in the storage engine (backends/ceph).
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/ceph.rs"));
