//! lq-bench: side-by-side benchmarks, each printing a table and one JSON line.
//!
//! - `lq-bench node`: the node engine against qemu-img, virsh and cp;
//! - `lq-bench control`: the control plane with 100,000 volumes over 1,000
//!   nodes, on redb and on etcd;
//! - `lq-bench ceph`: the RBD backend against the `rbd` CLI on a test cluster;
//! - `lq-bench nfs`: userspace NFS pools against qemu-img on the same export;
//! - `lq-bench iscsi`: listing a target's LUNs against `iscsi-ls`.

mod ceph_bench;
mod control_bench;
mod iscsi_bench;
mod live_move;
mod measure;
mod nfs_bench;
mod node;
mod node_bench;
mod quiesce;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    Node(node_bench::Args),
    Control(control_bench::Args),
    Ceph(ceph_bench::Args),
    Nfs(nfs_bench::Args),
    Iscsi(iscsi_bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Node(args) => node_bench::run(args),
        Bench::Control(args) => control_bench::run(args),
        Bench::Ceph(args) => ceph_bench::run(args),
        Bench::Nfs(args) => nfs_bench::run(args),
        Bench::Iscsi(args) => iscsi_bench::run(args),
    }
}
