#!/usr/bin/env bash
# Side-by-side benchmarks; each prints a table (stderr) and one JSON line.
#   scripts/bench.sh            both
#   scripts/bench.sh node       the node engine vs qemu-img, virsh, cp
#   scripts/bench.sh control    the control plane at 100,000 volumes, redb and etcd
#   scripts/bench.sh ceph       the RBD backend vs the rbd CLI on a test cluster
#   scripts/bench.sh nfs        userspace NFS pools vs qemu-img on the same export
#   scripts/bench.sh iscsi      listing a target's LUNs vs iscsi-ls
# Needs root (the node benchmark starts a private libvirtd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --release --bins
which=${1:-all}
[ $# -gt 0 ] && shift
case "$which" in
node | control | ceph | nfs | iscsi) exec target/release/lq-bench "$which" "$@" ;;
all) for b in node control ceph nfs iscsi; do target/release/lq-bench "$b"; done ;;
*) echo "usage: $0 [node|control|ceph|nfs|iscsi|all] [options]" >&2; exit 2 ;;
esac
