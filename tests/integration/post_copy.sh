#!/bin/bash
# Post-copy migration: `dump --lazy-pages` keeps a program's memory in the frozen source and serves
# it; a copy of its images (without those pages) is restored with `restore --lazy-pages` while
# `lazy-pages --page-server` fetches every page from the source. The program runs in its own pid
# namespace, so the copy gets its pids while the source still holds them; its memory arrives on demand.
# Then every way it can go wrong: the destination gone mid-transfer or the dump interrupted (the
# source runs on, its memory intact), a port in use (nothing frozen), no dump to connect to.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"

PORT=$((20000 + $$ % 12000))  # below the ephemeral range (32768 and up)
DUMP_PID='' DAEMON_PID='' COPY_PID=''
stop_all() {
  local p
  for p in $DUMP_PID $DAEMON_PID $COPY_PID; do kill -9 "$p" 2>/dev/null || true; done
}
at_exit stop_all

# start_source PROGRAM [ARGS...]: PROGRAM READY RESULT ARGS as pid 1 of a new pid namespace; sets
# TARGET_PID, READY, RESULT.
start_source() {
  local name=$1
  local args=("${@:2}")
  READY=$WORK/$name.ready RESULT=$WORK/$name.result
  rm -f "$READY" "$RESULT"
  setsid unshare --pid --fork setsid "$PROGRAMS/$name" "$READY" "$RESULT" "${args[@]}" </dev/null >>"$WORK/$name.out" 2>&1 &
  local unshare=$!
  wait_for_file "$READY"
  TARGET_PID=$(pgrep -P "$unshare")
}

# lazy_dump DIR [OPTIONS...]: `dump --lazy-pages` of TARGET_PID in the background, on 127.0.0.1:PORT;
# returns once it serves (sets DUMP_PID).
lazy_dump() {
  local dir=$1
  shift
  mkdir -p "$dir"
  "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 --lazy-pages --address 127.0.0.1 --port "$PORT" \
    --status-fd 3 "$@" 3>"$dir/dump.status" 2>"$dir/dump.err" &
  DUMP_PID=$!
  status_byte "$dir/dump.status" "the lazy dump" "$DUMP_PID"
}

# destination SRC DST [VAR=VALUE...]: copies the images to DST, starts `lazy-pages --page-server`
# there (sets DAEMON_PID) and restores from them (sets COPY_PID).
destination() {
  local src=$1 dst=$2
  shift 2
  cp -a "$src" "$dst"
  rm -f "$dst"/dump.*
  env "$@" "$CRSHIM" lazy-pages -D "$dst" -o lazy-pages.log -v4 --page-server --address 127.0.0.1 --port "$PORT" \
    --status-fd 3 3>"$dst/daemon.status" &
  DAEMON_PID=$!
  status_byte "$dst/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
  "$CRSHIM" restore -D "$dst" -o restore.log -v4 -d --lazy-pages --pidfile "$dst/pid" ||
    fail "restore failed: $(tail -3 "$dst/restore.log")"
  COPY_PID=$(cat "$dst/pid")
}

# check_source_runs: the source, resumed after a failed transfer, verifies its memory.
check_source_runs() {
  local state
  state=$(awk '{print $3}' "/proc/$TARGET_PID/stat")
  [[ $state == S || $state == R ]] || fail "the source is in state $state after the failed transfer"
  rm -f "$RESULT"
  finish_and_check
}

# 1. The migration. The daemon's background push is slowed down, so the restored program runs while
#    most of its 64 MiB is still in the source, and takes it through faults.
start_source tp_lazy 64
SOURCE_PID=$TARGET_PID
lazy_dump "$WORK/img"
[[ -e /proc/$SOURCE_PID ]] || fail "the source is gone before its pages were served"
pages_bytes=$(cat "$WORK"/img/pages-*.img | wc -c)
((pages_bytes < 1048576)) || fail "the images hold $pages_bytes bytes of pages: the memory was written after all"
destination "$WORK/img" "$WORK/img-b" CRSHIM_LAZY_PUSH_PAUSE_MS=100
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$COPY_PID/status" || fail "the copy is not pid 1 of a new pid namespace"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon finished before the copy touched its memory"
kill -0 "$DUMP_PID" 2>/dev/null || fail "the dump ended before the copy had its memory"
TARGET_PID=$COPY_PID
finish_and_check
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 30
DAEMON_PID=
((RC == 0)) || fail "the daemon exited $RC: $(tail -3 "$WORK/img-b/lazy-pages.log")"
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC == 0)) || fail "the lazy dump exited $RC: $(cat "$WORK/img/dump.err")"
stats=$(grep 'lazy-pages: .* tasks' "$WORK/img-b/lazy-pages.log")
fetched=$(sed -E 's/.* ([0-9]+) fetched from the source.*/\1/' <<<"$stats")
faulted=$(sed -E 's/.*faults served \(([0-9]+) pages\).*/\1/' <<<"$stats")
((fetched >= 16000)) || fail "only $fetched pages came from the source: $stats"
((faulted >= 8192)) || fail "only $faulted pages came through faults: the copy did not run before its memory was there"
grep -q 'The lazy-pages daemon has every page' "$WORK/img/dump.log" || fail "the dump did not hear the end of the transfer"
lazy=$(crit decode -i "$WORK/img/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump']['pages_lazy'])")
((lazy >= 16384)) || fail "only $lazy pages were left lazy for 64 MiB"
for ((i = 0; i < 100; i++)); do [[ -e /proc/$SOURCE_PID ]] || break; sleep 0.05; done
[[ ! -e /proc/$SOURCE_PID ]] || fail "the source still exists after the migration"
echo "ok: 64 MiB migrated after the copy started: $fetched pages fetched from the source, $faulted through faults"
TARGET_PID=

# 2. The destination goes away in the middle: the dump fails with one line, the source resumes with
#    its memory intact (the copy, whose memory is incomplete, is killed).
start_source tp_lazy 32
lazy_dump "$WORK/img2"
destination "$WORK/img2" "$WORK/img2-b" CRSHIM_LAZY_PUSH_PAUSE_MS=5000
kill -9 "$COPY_PID" "$DAEMON_PID"
DAEMON_PID=
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC != 0)) || fail "the lazy dump exited 0 though the daemon went away"
grep -qF "lazy dump: serve lazy-pages daemon 127.0.0.1:" "$WORK/img2/dump.err" ||
  fail "unclear error: $(cat "$WORK/img2/dump.err")"
grep -qF "the daemon went away before it had every page; hint: the tree runs on here; a copy restored from these images has lost memory: kill it" "$WORK/img2/dump.err" ||
  fail "unclear error: $(cat "$WORK/img2/dump.err")"
check_source_runs
echo "ok: destination gone mid-transfer: $(head -1 "$WORK/img2/dump.err")"

# 3. The same when serving itself fails (a fault injected at the 20th request for pages, of the 32
#    the daemon's background push makes).
start_source tp_lazy 32
CRSHIM_FAULT=dump:lazy-get:20 lazy_dump "$WORK/img-f"
destination "$WORK/img-f" "$WORK/img-f-b"
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC != 0)) || fail "the lazy dump exited 0 though serving failed"
grep -qF "lazy dump: fault point dump:lazy-get: injected failure" "$WORK/img-f/dump.err" || fail "unclear error: $(cat "$WORK/img-f/dump.err")"
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 30
DAEMON_PID=
((RC != 0)) || fail "the daemon exited 0 without the pages"
grep -qF "lazy dump 127.0.0.1:$PORT" "$WORK/img-f-b/lazy-pages.log" || fail "unclear daemon error: $(tail -3 "$WORK/img-f-b/lazy-pages.log")"
kill -9 "$COPY_PID" 2>/dev/null || true
check_source_runs
echo "ok: serving failed at its 20th request: the source runs on; the daemon: $(grep -m1 'Error' "$WORK/img-f-b/lazy-pages.log")"

# 4. A dump waiting for its destination gives up on SIGTERM and resumes the tree.
start_source tp_lazy 8
lazy_dump "$WORK/img3"
kill -TERM "$DUMP_PID"
wait_exit "$DUMP_PID" "the interrupted dump" 10
DUMP_PID=
((RC != 0)) || fail "the interrupted dump exited 0"
grep -qF "lazy dump: accept page server port $PORT: interrupted by SIGTERM; hint: the tree runs on here" "$WORK/img3/dump.err" || fail "unclear error: $(cat "$WORK/img3/dump.err")"
check_source_runs
echo "ok: SIGTERM while waiting: $(head -1 "$WORK/img3/dump.err")"

# 5. The port is taken: refused before anything is frozen. 6. No dump to fetch from.
start_source tp_lazy 1
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $PORT)); s.listen(1); open('$WORK/busy', 'w').close(); time.sleep(60)" &
BUSY=$!
at_exit "kill $BUSY 2>/dev/null"
wait_for_file "$WORK/busy"
mkdir -p "$WORK/img4"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img4" -o dump.log -v4 --lazy-pages --address 127.0.0.1 --port "$PORT" 2>"$WORK/err4"; then
  fail "a lazy dump on a port in use succeeded"
fi
grep -qF "bind page server 127.0.0.1:$PORT: Address already in use (EADDRINUSE); hint: another server uses that port: pick another --port" "$WORK/err4" ||
  fail "unclear error: $(cat "$WORK/err4")"
! grep -q 'Frozen task' "$WORK/img4/dump.log" || fail "the tree was frozen before the port was checked"
kill "$BUSY"
check_source_runs
echo "ok: port in use: $(head -1 "$WORK/err4")"
if "$CRSHIM" lazy-pages -D "$WORK/img" -W "$WORK" -o lazy-none.log --page-server --address 127.0.0.1 --port "$PORT" 2>"$WORK/err5"; then
  fail "the daemon started without a dump to fetch from"
fi
grep -qF "connect lazy dump 127.0.0.1:$PORT: Connection refused (ECONNREFUSED); hint: start \`crshim dump --lazy-pages --port PORT\` on the source first" "$WORK/err5" ||
  fail "unclear error: $(cat "$WORK/err5")"
echo "ok: no dump to fetch from: $(head -1 "$WORK/err5")"

# 7. Pre-dumps first, then the lazy dump: only the pages written since the last pre-dump stay in the
#    source (PE_LAZY); the rest comes from the pre-dump's images, copied ahead (PE_PARENT).
start_source tp_predump "$WORK"
mkdir -p "$WORK/m/pre"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/m/pre" -o pre.log -v4 || fail "pre-dump: $(tail -3 "$WORK/m/pre/pre.log")"
kill -USR1 "$TARGET_PID"
wait_for_file "$WORK/changed"
lazy_dump "$WORK/m/final" --prev-images-dir ../pre --track-mem
mkdir -p "$WORK/m-b"
cp -a "$WORK/m/pre" "$WORK/m-b/pre"
destination "$WORK/m/final" "$WORK/m-b/final"
[[ "$(readlink "$WORK/m-b/final/parent")" == ../pre ]] || fail "the copy lost its parent link"
TARGET_PID=$COPY_PID
finish_and_check
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 30
DAEMON_PID=
((RC == 0)) || fail "the daemon exited $RC: $(tail -3 "$WORK/m-b/final/lazy-pages.log")"
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC == 0)) || fail "the lazy dump exited $RC: $(cat "$WORK/m/final/dump.err")"
stat_of() { crit decode -i "$WORK/m/final/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('$1', 0))"; }
lazy=$(stat_of pages_lazy) parent=$(stat_of pages_skipped_parent)
((lazy >= 1000 && lazy < 1300)) || fail "$lazy pages were left lazy; 1000 were changed since the pre-dump"
((parent >= 15000)) || fail "only $parent pages were left to the pre-dump's images"
fetched=$(sed -nE 's/.*lazy-pages: .* ([0-9]+) fetched from the source.*/\1/p' "$WORK/m-b/final/lazy-pages.log")
((fetched >= 1000 && fetched < 1300)) || fail "$fetched pages were fetched from the source"
echo "ok: pre-dump, then a lazy dump: $fetched changed pages fetched from the source, $parent from the pre-dump's images"

# 8. Every kind of tree the engine restores moves the same way: processes with threads, sessions, a
#    zombie and a nested pid namespace; shared fd tables, fs state and address spaces (CLONE_VM: one
#    pagemap served for two tasks); shared anonymous memory; memfd mappings.
for prog in tp_tree tp_clone_share tp_threads tp_shmem tp_memfd_map; do
  start_source "$prog"
  lazy_dump "$WORK/k-$prog"
  destination "$WORK/k-$prog" "$WORK/k-$prog-b"
  TARGET_PID=$COPY_PID
  finish_and_check
  wait_exit "$DAEMON_PID" "the lazy-pages daemon" 30
  DAEMON_PID=
  ((RC == 0)) || fail "$prog: the daemon exited $RC: $(tail -3 "$WORK/k-$prog-b/lazy-pages.log")"
  wait_exit "$DUMP_PID" "the lazy dump" 30
  DUMP_PID=
  ((RC == 0)) || fail "$prog: the lazy dump exited $RC: $(cat "$WORK/k-$prog/dump.err")"
  echo "ok: $prog moved by post-copy ($(grep -o '[0-9]* fetched from the source' "$WORK/k-$prog-b/lazy-pages.log"))"
done

# 9. --leave-running: once the destination has every page the source runs on too (two copies).
start_source tp_lazy 8
SOURCE_PID=$TARGET_PID
lazy_dump "$WORK/img-lr" --leave-running
destination "$WORK/img-lr" "$WORK/img-lr-b"
TARGET_PID=$COPY_PID
finish_and_check
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 30
DAEMON_PID=
((RC == 0)) || fail "the daemon exited $RC: $(tail -3 "$WORK/img-lr-b/lazy-pages.log")"
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC == 0)) || fail "the lazy dump exited $RC: $(cat "$WORK/img-lr/dump.err")"
TARGET_PID=$SOURCE_PID
check_source_runs
echo "ok: --leave-running: the copy and then the source passed their checks"
