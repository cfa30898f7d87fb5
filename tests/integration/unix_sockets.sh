#!/bin/bash
# Unix sockets: pairs of every type, a named listener with an accepted connection, an abstract
# datagram socket; queued data, names and options survive dump/restore. Sockets connected to
# processes outside the dump are refused before freezing.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/unix"
cycle tp_unix "$WORK/unix"
crit decode -i "$WORK/img1/sk-queues.img" --pretty >"$WORK/queues.json" || fail "crit sk-queues"
python3 - "$WORK/queues.json" <<'PY' || fail "sk-queues.img content"
import json, sys
packets = json.load(open(sys.argv[1]))["entries"]
lengths = sorted(p["length"] for p in packets)
# stream data may come in several chunks; the datagrams and records are one entry each
for n in (3, 3, 4, 4, 6, 6, 7, 7, 8, 9, 9, 9, 10):
    assert n in lengths, (n, lengths)
    lengths.remove(n)
assert sum(lengths) == 100000, lengths
PY
echo "ok: sk-queues.img keeps datagram boundaries"

# A socket connected to a process that is not dumped: refused before anything is frozen.
python3 -c '
import socket, os, sys, time
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    os.setsid()
    open(sys.argv[1], "w").write("ready")
    time.sleep(60)
    os._exit(0)
b.close()
open(sys.argv[2], "w").write(str(pid))
time.sleep(60)
' "$WORK/ext.ready" "$WORK/ext.pid" &
HELPER=$!
wait_for_file "$WORK/ext.ready"
wait_for_file "$WORK/ext.pid"
TARGET_PID=$(cat "$WORK/ext.pid")
mkdir -p "$WORK/ext"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/ext" -o dump.log -v4 2>"$WORK/ext.err"; then
  kill "$HELPER" 2>/dev/null || true
  fail "dump of a socket with an external peer succeeded"
fi
grep -qE "dump unix socket ([0-9]+): unix socket connected to socket inode [0-9]+ outside the dumped processes; hint: allow it with --ext-unix-sk or --external unix\[\1\]" \
  "$WORK/ext.err" || fail "unclear error: $(cat "$WORK/ext.err")"
kill -0 "$TARGET_PID" || fail "the refused target died"
kill "$HELPER" 2>/dev/null || true
echo "ok: external unix peer refused"
