#!/usr/bin/env bash
# Runs DelugeFS for real on this machine: installs what it needs (Debian), builds, creates a
# cluster on ROOT (default /var/lib/delugefs) and mounts it on MNT (default /mnt/delugefs).
# Stop it with Ctrl-C (it unmounts cleanly). Run it again later to restart the same node.
# `quickstart.sh demo [options]`: the same install and build, then `delugefs demo` (a throwaway
# three-node cluster on this machine, removed on Ctrl-C) instead of the real node.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-delugefs}
ROOT=${ROOT:-/var/lib/delugefs}
MNT=${MNT:-/mnt/delugefs}
if command -v apt-get >/dev/null && ! dpkg -s fuse3 git openssh-client g++ make python3 >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 git openssh-client g++ make python3 >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
# dist/cli/main.js runs itself: its #! line carries the flags a node runs with (src/cli/node-flags.ts).
if [ "${1:-}" = demo ]; then shift; exec dist/cli/main.js demo "$@"; fi
mkdir -p "$MNT"
create=()
[ -f "$ROOT/config/node.json" ] || create=(--create)
echo "DelugeFS: cluster $CLUSTER, root $ROOT, mounted on $MNT (Ctrl-C to stop)"
exec dist/cli/main.js "$CLUSTER" "$ROOT" "$MNT" "${create[@]}" "$@"
