#!/usr/bin/env bash
# Runs LimiQuantix on this machine: a node daemon on 127.0.0.1 with a local
# pool in ./lq-data, and prints lqctl commands to try. Ctrl-C stops it.
# (The control plane joins in a later step; until then lqctl talks to the node.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh run
cargo build --bins

ADDR=${LQ_NODE_LISTEN:-127.0.0.1:7701}
DATA=$PWD/lq-data
POOL_ID=0d0d0d0d-0000-4000-8000-000000000001   # fixed, so re-runs reuse the pool

target/debug/limiquantix-node --listen "$ADDR" --data-dir "$DATA" &
NODE_PID=$!
trap 'kill -TERM $NODE_PID 2>/dev/null; wait $NODE_PID 2>/dev/null' EXIT INT TERM

LQ="target/debug/lqctl node --addr http://$ADDR"
for _ in $(seq 1 100); do
  $LQ info >/dev/null 2>&1 && break
  kill -0 $NODE_PID 2>/dev/null || { echo "the node daemon exited; see its log above" >&2; exit 1; }
  sleep 0.1
done
$LQ pool init --id "$POOL_ID" --local-path "$DATA/pools/default" >/dev/null

cat <<EOT

LimiQuantix node daemon is running on $ADDR (pid $NODE_PID), data in $DATA.
Pool "default": $POOL_ID  ($DATA/pools/default)

Try, in another terminal:
  export LQ_NODE_ADDR=http://$ADDR
  alias lq='$PWD/target/debug/lqctl node'
  lq info
  lq pool list
  lq volume create --pool $POOL_ID --size 10G
  lq volume list --pool $POOL_ID
  lq volume clone --pool $POOL_ID <volume-id>              # linked clone
  lq volume clone --pool $POOL_ID <volume-id> --full       # full copy, with a progress bar
  lq volume resize --pool $POOL_ID <volume-id> --size 20G
  lq snapshot create --pool $POOL_ID <volume-id> before-upgrade
  cp disk.qcow2 $DATA/images/ && lq volume import --pool $POOL_ID --file $DATA/images/disk.qcow2 --image-format qcow2
  lq volume attach-info --pool $POOL_ID <volume-id>        # libvirt <disk> XML
  lq --output json volume list --pool $POOL_ID

Ctrl-C to stop.
EOT
wait $NODE_PID
