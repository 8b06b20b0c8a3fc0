#!/usr/bin/env bash
# Installs the Debian 12 packages LimiQuantix needs, then checks that every
# program it runs is on PATH.
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

installed_version() {
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '/install ok installed/ {print $4}'
}
candidate_version() {
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'
}

# To build: libvirt-dev (the node's hot-plug), protoc with its well-known
# types (etcd-client generates its gRPC code at build time), librados and
# librbd headers with libclang (bindgen generates the Ceph bindings).
# libnfs and libiscsi headers (bindgen generates the userspace NFS and
# iSCSI clients' bindings).
# libfuse3 headers: testkit builds a FUSE daemon that stands in for a hung
# NFS mount (testkit is a workspace member, built with the rest).
plain_packages=(pkg-config libvirt-dev protobuf-compiler libprotobuf-dev librados-dev librbd-dev libnfs-dev libiscsi-dev libclang-dev libfuse3-dev)
# Programs that must be on PATH afterwards (sbin included). The web UI (ui/)
# is built with Node 20 and npm, which the machine image provides (Debian
# 12's own nodejs is 18, too old for Vite 8): checked, not installed.
programs=(qemu-img pkg-config protoc node npm)
if [ "$profile" = test ]; then
  # libvirt-daemon-system creates the libvirt-qemu user tests run QEMU as;
  # libvirt-clients gives virsh and virt-xml-validate, which runs xmllint
  # (libxml2-utils, only a recommendation of libvirt-clients); etcd backs the
  # control plane's multi-replica store.
  plain_packages+=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libxml2-utils etcd-server etcd-client)
  # A throwaway Ceph cluster (mon, mgr, memstore osd) for the RBD backend.
  plain_packages+=(ceph-mon ceph-mgr ceph-osd ceph-common)
  # A user-space NFS server (nfs-ganesha, VFS FSAL) with the private rpcbind
  # it registers with, and libnfs's command-line client.
  plain_packages+=(nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils)
  # A user-space iSCSI target (tgt) and libiscsi's command-line tools.
  plain_packages+=(tgt libiscsi-bin)
  # LVM and open-iscsi's iscsiadm (iSCSI pools in LVM mode): LVM on a loop
  # device with a private config, iscsiadm's node database in a private dir.
  plain_packages+=(lvm2 open-iscsi)
  # The web UI's tests drive Debian's Chromium through Playwright (these
  # machines cannot download Playwright's own browser builds).
  plain_packages+=(chromium)
  # The test guest (testkit's guest.rs) is built from the host's files: Debian's
  # kernel and modules, static busybox, qemu-ga (a qemu package, pinned below),
  # packed with cpio and gzip; modprobe orders the modules, xz unpacks the
  # kernel for PVH boot, mkfs.ext4 makes the data disk.
  plain_packages+=(linux-image-amd64 busybox-static cpio kmod e2fsprogs xz-utils)
  # unshare (private libvirtd's mount namespace) and timeout come with the base system.
  programs+=(qemu-io qemu-system-x86_64 libvirtd virsh virt-xml-validate xmllint etcd etcdctl
    ceph ceph-mon ceph-mgr ceph-osd ceph-authtool monmaptool rbd unshare timeout
    busybox qemu-ga cpio gzip modprobe mkfs.ext4 xz ldd ganesha.nfsd rpcbind nfs-ls tgtd tgtadm iscsi-ls lvcreate losetup iscsiadm chromium)
fi

# QEMU: every qemu package at ONE version. A newer qemu-utils (e.g. from
# backports) is replaced by the version that matches qemu-block-extra, the
# package that gives qemu-img its rbd, nfs and iscsi drivers.
qemu_packages=(qemu-utils qemu-block-extra)
[ "$profile" = test ] && qemu_packages+=(qemu-system-x86 qemu-guest-agent)

missing=()
for p in "${plain_packages[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
# Installed qemu packages that already agree with each other need no apt lists.
have=$(installed_version qemu-block-extra)
for p in "${qemu_packages[@]}"; do
  if [ -z "$have" ] || [ "$(installed_version "$p")" != "$have" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  # Versions are read only from fresh lists: stale ones name versions the
  # mirror no longer has.
  echo "install-deps: refreshing apt lists"
  sudo_if_needed apt-get update -qq
  want=$(candidate_version qemu-block-extra)
  if [ -z "$want" ] || [ "$want" = "(none)" ]; then
    echo "install-deps: no candidate version of qemu-block-extra in the apt sources" >&2
    exit 1
  fi
  to_install=()
  for p in "${missing[@]}"; do
    case " ${qemu_packages[*]} " in
    *" $p "*) to_install+=("$p=$want") ;;
    *) to_install+=("$p") ;;
    esac
  done
  # The other qemu packages must follow qemu-block-extra's version too.
  for p in "${qemu_packages[@]}"; do
    case " ${to_install[*]} " in
    *" $p="*) ;;
    *) [ "$(installed_version "$p")" = "$want" ] || to_install+=("$p=$want") ;;
    esac
  done
  echo "install-deps: installing ${to_install[*]}"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    --allow-downgrades "${to_install[@]}"
else
  echo "install-deps: all $profile packages present (qemu $have)"
fi

absent=()
for prog in "${programs[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null 2>&1 || absent+=("$prog")
done
if [ ${#absent[@]} -gt 0 ]; then
  echo "install-deps: still missing after install: ${absent[*]}" >&2
  exit 1
fi
qemu-img --version | head -n 1
