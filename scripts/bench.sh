#!/usr/bin/env bash
# Side-by-side benchmarks; each prints a table (stderr) and one JSON line.
#   scripts/bench.sh            both
#   scripts/bench.sh node       the node engine vs qemu-img, virsh, cp
#   scripts/bench.sh control    the control plane at 100,000 volumes, redb and etcd
#   scripts/bench.sh ceph       the RBD backend vs the rbd CLI on a test cluster
#   scripts/bench.sh nfs        userspace NFS pools vs qemu-img on the same export
#   scripts/bench.sh iscsi      listing a target's LUNs vs iscsi-ls, LVM creates vs lvcreate
#   scripts/bench.sh ui         the web console with 1,000 volumes, in Chromium
# Needs root (the node benchmark starts a private libvirtd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --release --bins
which=${1:-all}
[ $# -gt 0 ] && shift
ui_bench() {
  scripts/build-ui.sh
  # The release control plane embeds the UI just built.
  cargo build --release --bins
  (cd ui && LQ_BIN_DIR=../target/release npx playwright test -c playwright.bench.config.ts)
}
case "$which" in
node | control | ceph | nfs | iscsi) exec target/release/lq-bench "$which" "$@" ;;
ui) ui_bench ;;
all) for b in node control ceph nfs iscsi; do target/release/lq-bench "$b"; done; ui_bench ;;
*) echo "usage: $0 [node|control|ceph|nfs|iscsi|ui|all] [options]" >&2; exit 2 ;;
esac
