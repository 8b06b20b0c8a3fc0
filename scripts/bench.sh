#!/usr/bin/env bash
# Benchmarks the node engine side by side with qemu-img, virsh and cp in one
# run; prints a table and one JSON line. Needs root (private libvirtd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo build --release --bins
exec target/release/lq-bench "$@"
