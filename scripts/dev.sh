#!/usr/bin/env bash
# Runs LimiQuantix on this machine, all in one process on 127.0.0.1: the
# control plane (embedded redb store), a node daemon, and a local pool
# "default", everything kept in ./lq-data. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh run
# The web UI first: the control plane embeds it.
scripts/build-ui.sh
cargo build --bins

cat <<EOT
Starting limiquantix-controlplane --dev (control plane on 127.0.0.1:7700, node on 127.0.0.1:7701).
The web console is at https://127.0.0.1:7700/ (sign in with the token in
lq-data/lqctl.toml; the certificate is the cluster CA's, lq-data/control/pki/ca.crt).
When it says it is running, try in another terminal (from this directory:
lqctl finds its admin credentials in lq-data/lqctl.toml):
  export PATH=$PWD/target/debug:\$PATH
  lqctl pool list
  lqctl node list
  lqctl volume create --pool default --name disk1 --size 10G
  lqctl volume clone disk1 --name disk1-linked              # copy-on-write clone
  lqctl volume clone disk1 --name disk1-copy --full         # full copy, with a progress bar
  lqctl volume resize disk1 --size 20G
  lqctl snapshot create disk1 before-upgrade
  lqctl volume list
  lqctl task list
  lqctl -o json volume get disk1
  lqctl token create viewer1 --role viewer       # a read-only API token
  curl -s --cacert lq-data/control/pki/ca.crt https://127.0.0.1:7700/metrics | grep limiquantix_pool
  cp disk.qcow2 lq-data/node/images/ && lqctl volume import --pool default --name imported \\
      --file $PWD/lq-data/node/images/disk.qcow2 --image-format qcow2
EOT
exec target/debug/limiquantix-controlplane --dev --data-dir lq-data
