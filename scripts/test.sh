#!/usr/bin/env bash
# Installs what the tests need, then builds and runs every test of the workspace.
# Tests start their own servers (a private libvirtd with QEMU, ...) in temp dirs
# and need root for the private libvirtd's mount namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi

# The web UI first: the control plane embeds what it built.
scripts/build-ui.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doc tests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi

# The web UI in Chromium against a real --dev control plane, with the
# binaries built from this tree.
cargo build --bins
(cd ui && LQ_BIN_DIR=../target/debug npx playwright test)
