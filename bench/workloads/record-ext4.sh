#!/usr/bin/env bash
# Records a block-level trace of real software on a real file system, through the kernel:
# a headstart node exports a volume, libnbd's nbdfuse shows it as a file, a loop device puts
# ext4 on it, and the workload (by default bench/workloads/sqlite-shop.py) runs there. The
# node's `record` option writes every write, zeroing and trim its NBD export receives, so the
# trace holds what a VM's disk would see: ext4's journal and metadata, writeback, the
# program's own files. Judge the planner on it with
#   npm run bench:traces -- --trace OUT --interval 60,300,900
#
# usage: bench/workloads/record-ext4.sh OUT [MINUTES] [-- COMMAND ARGS...]
#   COMMAND runs with the file system's mount point as its working directory (default:
#   python3 bench/workloads/sqlite-shop.py shop --minutes MINUTES).
# Needs root, /dev/fuse, loop devices, nbdfuse (libnbd-bin) and mkfs.ext4 (e2fsprogs).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(realpath -m "${1:?usage: record-ext4.sh OUT [MINUTES] [-- COMMAND ARGS...]}")"
minutes="${2:-20}"
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
cmd=("$@")
[ ${#cmd[@]} -eq 0 ] && cmd=(python3 "$root/bench/workloads/sqlite-shop.py" shop --minutes "$minutes")
[ "$(id -u)" = 0 ] || { echo "record-ext4: needs root (mount, loop devices)" >&2; exit 2; }

work="$(mktemp -d /tmp/hs-record-ext4-XXXXXX)"
hs() { node "$root/apps/cli/bin/headstart.js" "$@"; }
cli="$root/apps/cli/bin/headstart.js"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve_pid=""; fuse_pid=""
cleanup() {
  set +e
  mountpoint -q "$work/fs" && umount "$work/fs"
  mountpoint -q "$work/fuse" && umount "$work/fuse"
  [ -n "$fuse_pid" ] && kill "$fuse_pid" 2>/dev/null
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/fuse" "$work/fs"
nbd=$(port)
hs init node rec -c "$work/node.yaml" --data "$work/data" --nbd "127.0.0.1:$nbd" --peers "127.0.0.1:$(port)" \
  --admin "127.0.0.1:$(port)" --dashboard 127.0.0.1:0 --metrics 127.0.0.1:0 >/dev/null
hs init volume fs --size 2GiB --role primary --every 1h -c "$work/node.yaml" >/dev/null
# The recording: `record` on the volume (docs/configuration.md).
python3 - "$work/node.yaml" "$out" <<'PY'
import sys
p, out = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace('policy: { name: predictive },', 'policy: { name: predictive },\n        record: "%s",' % out, 1)
open(p, 'w').write(s)
PY
grep -q "record:" "$work/node.yaml" || { echo "record-ext4: could not add record to the configuration" >&2; exit 1; }
# node itself, not a shell function: $! must be the node, so that its SIGTERM flushes the trace.
node "$cli" serve -c "$work/node.yaml" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do hs status -c "$work/node.yaml" >/dev/null 2>&1 && break; sleep 0.2; done
nbdfuse "$work/fuse/disk" "nbd://127.0.0.1:$nbd/fs" &
fuse_pid=$!
for _ in $(seq 100); do [ -e "$work/fuse/disk" ] && break; sleep 0.1; done
mkfs.ext4 -q -F "$work/fuse/disk"
mount -o loop "$work/fuse/disk" "$work/fs"
echo "record-ext4: recording into $out: ${cmd[*]}" >&2
(cd "$work/fs" && "${cmd[@]}")
sync
umount "$work/fs"
umount "$work/fuse"
fuse_pid=""
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
serve_pid=""
echo "record-ext4: $(wc -l <"$out") records in $out" >&2
