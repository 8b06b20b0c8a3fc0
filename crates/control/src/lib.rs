//! limiquantix-controlplane: the one owner of the cluster's storage truth.

pub mod store;
