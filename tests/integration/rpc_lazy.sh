#!/bin/bash
# Post-copy migration over CRIU RPC (tests/rpc/crpc.py): FEATURE_CHECK reports lazy pages; a DUMP with
# lazy_pages and ps{address, port} notifies status-ready (and writes status_fd) once its images are
# written, serves the memory to `crshim lazy-pages --page-server` while a copy of the program already
# runs restored from the images, and answers success after the transfer; a lazy DUMP without a port,
# and one whose daemon goes away, fail and leave the program running.
source "$(dirname "$0")/lib.sh"
source "$SRC/tests/rpc/client.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"

PORT=$((29100 + $$ % 400))
RPC_PID='' DAEMON_PID='' SRC_PID='' UNSHARE=''
teardown() {
  [[ -n "$DAEMON_PID" ]] && kill -9 "$DAEMON_PID" 2>/dev/null
  # The engine behind a DUMP still serving resumes the program on SIGTERM; the source dies below anyway.
  if [[ -n "$RPC_PID" ]]; then
    local engine
    for engine in $(pgrep -P "$RPC_PID"); do kill -TERM "$engine" 2>/dev/null; done
    for _ in $(seq 100); do kill -0 "$RPC_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$RPC_PID" 2>/dev/null
  fi
  [[ -n "$SRC_PID" ]] && kill -9 "$SRC_PID" 2>/dev/null
  [[ -n "$UNSHARE" ]] && kill -9 "$UNSHARE" 2>/dev/null
  return 0
}
at_exit teardown

# lazy_dump_rpc IMG PID OUT [CRPC OPTIONS...]: a lazy DUMP of PID into IMG through crpc.py, serving on
# 127.0.0.1:PORT, in the background (RPC_PID); returns once status_fd says it serves. crpc.py runs as
# our direct child (not through the rpc function's subshell) so that the teardown finds the engine
# below it; status_fd is its fd 3, which the engine opens through /proc.
lazy_dump_rpc() {
  local img=$1 pid=$2 out=$3
  shift 3
  mkdir -p "$img"
  "$PY" "$SRC/tests/rpc/crpc.py" --crshim "$CRSHIM" --images "$img" --pid "$pid" --log-file dump.log "$@" \
    --opt lazy_pages=true --opt ps.address=127.0.0.1 --opt "ps.port=$PORT" --opt status_fd=3 DUMP \
    3>"$img/dump.status" >"$out" 2>"$out.err" &
  RPC_PID=$!
  status_byte "$img/dump.status" "the lazy DUMP" "$RPC_PID"
}

# check_thawed: the program, whose lazy DUMP failed, runs on and passes its own checks.
check_thawed() {
  grep -q "State:.*[SR]" "/proc/$TARGET_PID/status" || fail "the program was not thawed: $(grep State "/proc/$TARGET_PID/status")"
  finish_and_check
}

# 1. FEATURE_CHECK: lazy pages are there (userfaultfd with the events the daemon needs).
rpc --feature lazy_pages FEATURE_CHECK >"$WORK/feature.out"
expect type FEATURE_CHECK "$WORK/feature.out"
expect success 1 "$WORK/feature.out"
expect features.lazy_pages 1 "$WORK/feature.out"
expect exit 0 "$WORK/feature.out"
echo "ok: FEATURE_CHECK answers lazy_pages=1"

# 2. A lazy DUMP of a 32 MiB program, pid 1 of its own pid namespace so that its restored copy (in
#    another new one) keeps its pids while the source is still frozen.
READY=$WORK/tp_lazy.ready RESULT=$WORK/tp_lazy.result
setsid unshare --pid --fork setsid "$PROGRAMS/tp_lazy" "$READY" "$RESULT" 32 </dev/null >>"$WORK/tp_lazy.out" 2>&1 &
UNSHARE=$!
wait_for_file "$READY"
SRC_PID=$(pgrep -P "$UNSHARE")
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$SRC_PID/status" || fail "tp_lazy is not pid 1 of its namespace"

IMG=$WORK/img
lazy_dump_rpc "$IMG" "$SRC_PID" "$WORK/dump.out" --notify
serving=$(grep -o 'Serving [0-9]* lazy pages on port [0-9]*' "$IMG/dump.log") || fail "the dump log does not say it serves lazy pages"
lazy=$(awk '{print $2}' <<<"$serving")
((lazy >= 8192)) || fail "only $lazy pages left lazy for 32 MiB: $serving"
[[ "$serving" == *"port $PORT" ]] || fail "the dump serves on another port: $serving"
grep -q 'Notifying the RPC client: status-ready' "$IMG/dump.log" || fail "status-ready was not notified"
kill -0 "$SRC_PID" || fail "the source died before the destination asked"
echo "ok: status_fd byte and status-ready once the images are written; $serving"

# The destination: a copy of the images, the daemon fetching from the source (slowly, so the copy
# verifies its memory while most of it is still on the source), the restore.
cp -a "$IMG" "$WORK/img2"
rm -f "$WORK/img2/dump.log"
CRSHIM_LAZY_PUSH_PAUSE_MS=100 "$CRSHIM" lazy-pages -D "$WORK/img2" --page-server --address 127.0.0.1 --port "$PORT" \
  --status-fd 3 -o lazy-pages.log -v4 3>"$WORK/daemon.status" 2>"$WORK/daemon.err" &
DAEMON_PID=$!
status_byte "$WORK/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
restore_detached "$WORK/img2" --lazy-pages --pidfile "$WORK/restored.pid"
TARGET_PID=$(cat "$WORK/restored.pid")
((TARGET_PID != SRC_PID)) || fail "the restored copy has the source's host pid"
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$TARGET_PID/status" || fail "the restored copy is not pid 1 of a new namespace"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon exited before the copy touched its memory"
finish_and_check
echo "ok: the restored copy verified its 32 MiB"

# The transfer ends: daemon 0, then the DUMP's answer is success and the source is gone.
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 60
DAEMON_PID=
((RC == 0)) || fail "the lazy-pages daemon exited $RC: $(tail -3 "$WORK/daemon.err")"
stats=$(grep -o 'lazy-pages: .* fetched from the source' "$WORK/img2/lazy-pages.log") || fail "no stats line in the daemon's log"
fetched=$(sed -E 's/.* ([0-9]+) fetched from the source/\1/' <<<"$stats")
fault_pages=$(sed -E 's/.*faults served \(([0-9]+) pages\).*/\1/' <<<"$stats")
# The copy exits once it checked its memory: pages it never touched again may be dropped unfetched.
((fault_pages >= lazy / 4)) || fail "only $fault_pages of $lazy pages came through faults: the copy did not run before its memory was in place: $stats"
((fetched >= fault_pages)) || fail "the daemon fetched $fetched pages but served $fault_pages through faults: $stats"
echo "daemon: $stats"
wait_exit "$RPC_PID" "the lazy DUMP" 30
RPC_PID=
((RC == 0)) || fail "crpc.py exited $RC: $(cat "$WORK/dump.out.err")"
expect type DUMP "$WORK/dump.out"
expect success 1 "$WORK/dump.out"
expect notify "pre-dump,post-dump,status-ready" "$WORK/dump.out"
expect exit 0 "$WORK/dump.out"
grep -q "The lazy-pages daemon has every page" "$IMG/dump.log" || fail "the dump did not see the transfer end"
sent=$(sed -n 's/.*Lazy pages: [0-9]* requests, \([0-9]*\) pages sent.*/\1/p' "$IMG/dump.log")
[[ "$sent" == "$fetched" ]] || fail "the dump sent '$sent' pages, the daemon fetched $fetched"
stats_lazy=$(crit decode -i "$IMG/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('pages_lazy', 0))")
((stats_lazy == lazy)) || fail "stats-dump says pages_lazy=$stats_lazy, the dump served $lazy"
wait_exit "$UNSHARE" "the source's unshare" 10
UNSHARE=
! kill -0 "$SRC_PID" 2>/dev/null || fail "the source $SRC_PID still lives after the DUMP"
SRC_PID=
echo "ok: DUMP success=1 after the transfer, notify pre-dump,post-dump,status-ready, source gone"

# 3. A lazy DUMP without ps: nothing to serve the pages on; the program runs on, intact.
start_program tp_lazy 1
mkdir -p "$WORK/img-noport"
rpc --images "$WORK/img-noport" --pid "$TARGET_PID" --log-file dump.log --notify --opt lazy_pages=true DUMP >"$WORK/noport.out"
expect type DUMP "$WORK/noport.out"
expect success 0 "$WORK/noport.out"
expect_in cr_errmsg "no port to serve the pages on" "$WORK/noport.out"
[[ "$(field notify "$WORK/noport.out")" != *status-ready* ]] || fail "a failed lazy DUMP notified status-ready"
kill -0 "$TARGET_PID" || fail "the program died after the refused DUMP"
check_thawed
echo "ok: lazy DUMP without ps: $(field cr_errmsg "$WORK/noport.out")"

# 4. The daemon goes away before it has every page: the DUMP fails naming it and the program, thawed,
#    runs on with all its memory.
start_program tp_lazy 8
rm -f "$WORK/daemon.status"
lazy_dump_rpc "$WORK/img-gone" "$TARGET_PID" "$WORK/gone.out" --notify
"$CRSHIM" lazy-pages -D "$WORK/img-gone" --page-server --address 127.0.0.1 --port "$PORT" --status-fd 3 -o lazy-pages.log -v4 \
  3>"$WORK/daemon.status" 2>"$WORK/daemon.err" &
DAEMON_PID=$!
status_byte "$WORK/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=
wait_exit "$RPC_PID" "the lazy DUMP" 30
RPC_PID=
expect type DUMP "$WORK/gone.out"
expect success 0 "$WORK/gone.out"
expect_in cr_errmsg "the daemon went away before it had every page" "$WORK/gone.out"
expect notify "pre-dump,post-dump,status-ready" "$WORK/gone.out"
kill -0 "$TARGET_PID" || fail "the program died with the failed lazy DUMP"
check_thawed
echo "ok: daemon gone: $(field cr_errmsg "$WORK/gone.out")"

# 5. The client goes away while the DUMP waits for its destination: the engine gives up, thaws the
#    program and exits (it must not keep the tree frozen for nobody).
start_program tp_lazy 8
lazy_dump_rpc "$WORK/img-hangup" "$TARGET_PID" "$WORK/hangup.out"
ENGINE=$(pgrep -P "$RPC_PID") || fail "no engine below the client"
kill -9 "$RPC_PID"
wait "$RPC_PID" 2>/dev/null || true
RPC_PID=
for _ in $(seq 100); do kill -0 "$ENGINE" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$ENGINE" 2>/dev/null || fail "the engine still waits after its client went away"
grep -qF "lazy dump: accept page server port $PORT: the RPC client went away; hint: the tree runs on here" "$WORK/img-hangup/dump.log" ||
  fail "unclear error: $(grep Error "$WORK/img-hangup/dump.log")"
check_thawed
echo "ok: client gone while the DUMP waited: the engine thawed the program and exited"
