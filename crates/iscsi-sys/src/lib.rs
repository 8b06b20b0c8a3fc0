//! Raw libiscsi 1.19 as bindgen generated it. The `_sync` calls block their
//! thread (bounded by the context's timeout, in seconds); the safe wrapper
//! lives in the storage engine (backends/iscsi).
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, unsafe_op_in_unsafe_fn, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/iscsi.rs"));
