#!/usr/bin/env bash
# A developer's workstation as a workload for bench/workloads/record-ext4.sh: clone this
# repository, install its packages, build it, pause 20 s, again, for SECONDS (default 1200).
# It works in its current directory (record-ext4.sh runs it in the file system's mount):
#   bench/workloads/record-ext4.sh /tmp/devload.trace 20 -- "$PWD/bench/workloads/devload.sh" 1200
# The file system frees each loop's files (rm -rf) and reuses their blocks in the next: a
# rewrite pattern that block history alone does not show (no trim arrives without discard).
set -u
repo="$(cd "$(dirname "$0")/../.." && pwd)"
end=$((SECONDS + ${1:-1200}))
left() { echo $((end - SECONDS)); }
while [ "$(left)" -gt 0 ]; do
  rm -rf w
  git clone -q "$repo" w
  [ "$(left)" -gt 0 ] && (cd w && timeout "$(left)" npm ci --prefer-offline --no-audit --no-fund >/dev/null 2>&1)
  [ "$(left)" -gt 0 ] && (cd w && timeout "$(left)" npx tsc -b >/dev/null 2>&1)
  [ "$(left)" -gt 20 ] && sleep 20
done
exit 0
