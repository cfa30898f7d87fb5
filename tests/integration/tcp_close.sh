#!/bin/bash
# --tcp-close and --skip-in-flight: a process with a connection to a server outside the tree and a
# listener with a connection it has not accepted yet is refused by default (the message names both
# options); dumped with --tcp-close --skip-in-flight, it comes back with the connection closed (no
# tcp-stream image), the unaccepted connection dropped and the listener serving; a
# --tcp-established dump restored with --tcp-close gives the same.
source "$(dirname "$0")/lib.sh"

python3 "$(dirname "$0")/tcp_echo_server.py" "$WORK/echo.port" &
ECHO=$!
at_exit 'kill $ECHO 2>/dev/null'
wait_for_file "$WORK/echo.port"
PORT=$(cat "$WORK/echo.port")

# start_target: the python target plus a connection to its listener that it never accepts.
start_target() {
  READY=$WORK/target.ready RESULT=$WORK/target.result
  rm -f "$READY" "$RESULT"
  setsid python3 "$(dirname "$0")/tcp_close_target.py" "$READY" "$RESULT" "$PORT" </dev/null >>"$WORK/target.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  exec {INFLIGHT}<>"/dev/tcp/127.0.0.1/$(cat "$READY")"
}

start_target
mkdir -p "$WORK/refused"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump.log 2>"$WORK/err"; then fail "dumped connections without an option"; fi
grep -q "established TCP connection 127.0.0.1:[0-9]* -> 127.0.0.1:$PORT" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -q "1 connection(s) not accepted yet (--skip-in-flight drops them)" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -q "hint: use --tcp-established to dump established TCP connections, or --tcp-close to restore them closed" "$WORK/err" ||
  fail "no hint: $(cat "$WORK/err")"
kill -0 "$TARGET_PID" || fail "the refused dump killed the target"
echo "ok: refused by default, naming --tcp-established, --tcp-close and --skip-in-flight"

checkpoint "$WORK/closed" --tcp-close --skip-in-flight
decode_all "$WORK/closed"
states=$(crit decode -i "$WORK/closed/files.img" | python3 -c "
import json, sys
print(' '.join(sorted('%d:%d' % (f['isk']['state'], f['isk']['dst_port']) for f in json.load(sys.stdin)['entries'] if 'isk' in f)))")
[[ $states == "10:0 7:$PORT" ]] || fail "inet sockets in the image: '$states', expected a listener (10) and a closed socket (7) to $PORT"
ls "$WORK/closed"/tcp-stream-*.img >/dev/null 2>&1 && fail "a tcp-stream image was written for a closed connection"
exec {INFLIGHT}>&-
reap_target
restore_detached "$WORK/closed"
finish_and_check
echo "ok: --tcp-close --skip-in-flight: the connection comes back closed, the listener serves"

start_target
exec {INFLIGHT}>&-
for _ in $(seq 50); do ss -Htn state syn-recv state established "( sport = :$(cat "$READY") )" | grep -q . || break; sleep 0.05; done
checkpoint "$WORK/repaired" --tcp-established --skip-in-flight
ls "$WORK/repaired"/tcp-stream-*.img >/dev/null || fail "no tcp-stream image with --tcp-established"
reap_target
restore_detached "$WORK/repaired" --tcp-close
finish_and_check
if iptables-save | grep -q -- "-[sd]port $PORT "; then fail "lock rules for the connection are left: $(iptables-save | grep -- "port $PORT ")"; fi
echo "ok: a --tcp-established dump restored with --tcp-close comes back closed, its lock rules gone"
