#!/usr/bin/env bash
# Installs the Debian 12 packages LimiQuantix needs.
#   scripts/install-deps.sh run    what the daemons need at run time (qemu-img)
#   scripts/install-deps.sh test   everything the test suite needs (default)
# Nothing is installed when everything is already there.
set -euo pipefail

profile=${1:-test}
case "$profile" in
run | test) ;;
*) echo "usage: $0 [run|test]" >&2; exit 2 ;;
esac

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# QEMU: every qemu package at ONE version. A newer qemu-utils (e.g. from
# backports) is replaced by the version that matches qemu-block-extra, the
# package that gives qemu-img its rbd, nfs and iscsi drivers.
qemu_version() {
  apt-cache policy qemu-block-extra 2>/dev/null | awk '/Candidate:/ {print $2}'
}
installed_version() {
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '/install ok installed/ {print $4}'
}

# To build: libvirt-dev (the node's hot-plug), protoc with its well-known
# types (etcd-client generates its gRPC code at build time), librados and
# librbd headers with libclang (bindgen generates the Ceph bindings).
plain_packages=(pkg-config libvirt-dev protobuf-compiler libprotobuf-dev librados-dev librbd-dev libclang-dev)
if [ "$profile" = test ]; then
  # libvirt-daemon-system creates the libvirt-qemu user tests run QEMU as;
  # libvirt-clients gives virsh and virt-xml-validate; etcd backs the
  # control plane's multi-replica store.
  plain_packages+=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients etcd-server etcd-client)
  # A throwaway Ceph cluster (mon, mgr, memstore osd) for the RBD backend.
  plain_packages+=(ceph-mon ceph-mgr ceph-osd ceph-common)
fi

missing=()
for p in "${plain_packages[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done

updated=
want=$(qemu_version || true)
if [ -z "$want" ]; then
  sudo_if_needed apt-get update -qq
  updated=1
  want=$(qemu_version)
fi
qemu_packages=(qemu-utils qemu-block-extra)
[ "$profile" = test ] && qemu_packages+=(qemu-system-x86)
for p in "${qemu_packages[@]}"; do
  [ "$(installed_version "$p")" = "$want" ] || missing+=("$p=$want")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all $profile packages present (qemu $want)"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
[ -n "$updated" ] || sudo_if_needed apt-get update -qq || true
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  --allow-downgrades "${missing[@]}"
qemu-img --version | head -n 1
