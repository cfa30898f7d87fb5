#!/bin/bash
# Post-copy migration driven by runc (runc --criu crshim): `runc checkpoint --lazy-pages --page-server`
# leaves the container's private memory out of the images and serves it from the frozen container;
# `crshim lazy-pages --page-server` on the "destination" fetches it while `runc restore --lazy-pages`
# already runs a second container from the copied images. The ticker goes on counting and its 16 MiB
# shell variable comes back intact.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# Registered after lib_runc's e2e_cleanup, so it runs before it: the daemon, a checkpoint still
# serving in the background, then both containers.
ID2=$ID-b
CKPT_PID=
DAEMON_PID=
lazy_teardown() {
  [[ -n "$DAEMON_PID" ]] && kill -9 "$DAEMON_PID" 2>/dev/null
  # A lazy dump still waiting for the destination resumes the container when told to stop; runc
  # then fails its checkpoint and exits.
  if [[ -n "$CKPT_PID" ]]; then
    local engine
    for engine in $(pgrep -P "$CKPT_PID"); do kill -TERM "$engine" 2>/dev/null; done
    for _ in $(seq 100); do kill -0 "$CKPT_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$CKPT_PID" 2>/dev/null
  fi
  "${RUNC[@]}" delete -f "$ID2" >/dev/null 2>&1
  "${RUNC[@]}" delete -f "$ID" >/dev/null 2>&1
  return 0
}
at_exit lazy_teardown

PORT=$((27600 + $$ % 300))
# The shell holds 16 MiB in a variable and prints its checksum at start and on SIGUSR1.
# shellcheck disable=SC2016 # expanded by the container's shell
TICKER='big=$(yes 0123456789abcdef | head -c 16777216); trap '\''echo sum $(echo "$big" | md5sum)'\'' USR1; echo sum $(echo "$big" | md5sum); i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done'
# shellcheck disable=SC2119 # no config edits
make_bundle
for applet in yes head md5sum; do ln -s busybox "$BUNDLE/rootfs/bin/$applet"; done

run_container "$WORK/out1"
wait_lines "$WORK/out1" 4
sum1=$(grep '^sum ' "$WORK/out1" | head -1)
[[ "$sum1" =~ ^sum\ [0-9a-f]{32} ]] || fail "the container printed no checksum: $(head -2 "$WORK/out1")"
src_pid=$(container_pid)

# 1. The checkpoint: runc asks for the feature, then the engine freezes the container, writes the
#    images without its private memory and says so on runc's --status-fd; it then waits for the
#    destination.
IMG=$WORK/img W1=$WORK/w1
mkdir -p "$IMG" "$W1"
"${RUNC[@]}" checkpoint --lazy-pages --page-server "127.0.0.1:$PORT" --status-fd 3 --image-path "$IMG" --work-path "$W1" "$ID" \
  3>"$WORK/ckpt.status" >"$WORK/ckpt.out" 2>&1 &
CKPT_PID=$!
status_byte "$WORK/ckpt.status" "runc checkpoint" "$CKPT_PID"
grep -q "RPC request options:.*lazy_pages: true" "$W1/dump.log" || fail "runc did not ask for lazy pages: $(grep 'RPC request options' "$W1/dump.log")"
grep -q "RPC request options:.*ps {.*port: $PORT" "$W1/dump.log" || fail "runc did not pass the page server: $(grep 'RPC request options' "$W1/dump.log")"
echo "runc's dump request: $(grep -o 'RPC request options:.*' "$W1/dump.log" | grep -o 'lazy_pages: [a-z]*\|ps {[^}]*}\|status_fd: [0-9]*' | tr '\n' ' ')"
got=$(notifications "$W1/dump.log")
[[ "$got" == "pre-dump network-lock post-dump status-ready" ]] || fail "dump notified: $got"
serving=$(grep -o 'Serving [0-9]* lazy pages on port [0-9]*' "$W1/dump.log") || fail "the dump log does not say it serves lazy pages"
lazy=$(awk '{print $2}' <<<"$serving")
((lazy >= 4096)) || fail "only $lazy pages left lazy for a 16 MiB variable: $serving"
[[ "$serving" == *"port $PORT" ]] || fail "the dump serves on another port: $serving"
kill -0 "$src_pid" 2>/dev/null || fail "the source container's init is gone before the destination asked"
lines_frozen=$(wc -l <"$WORK/out1")
sleep 0.5
(($(wc -l <"$WORK/out1") == lines_frozen)) || fail "the source container still ticks while its pages are served"
echo "ok: runc checkpoint --lazy-pages is ready, $lazy pages left lazy, the source is frozen"

# 2. The destination: a copy of the images, the daemon fetching from the source, runc restore of a
#    second container from the same bundle (runc keeps the first one until its checkpoint ends).
IMG2=$WORK/img2 W2=$WORK/w2
cp -a "$IMG" "$IMG2"
mkdir -p "$W2"
# The background push is slowed down so that the restored container reads its variable (a fork of
# the shell on SIGUSR1 reads it) while most of it is still on the source.
CRSHIM_LAZY_PUSH_PAUSE_MS=50 "$CRSHIM" lazy-pages -D "$IMG2" -W "$W2" --page-server --address 127.0.0.1 --port "$PORT" --status-fd 3 -o lazy-pages.log -v4 \
  3>"$WORK/daemon.status" 2>"$WORK/daemon.err" &
DAEMON_PID=$!
status_byte "$WORK/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
[[ -S "$W2/lazy-pages.socket" ]] || fail "the daemon is ready but $W2/lazy-pages.socket is missing"
ID_SAVED=$ID ID=$ID2
restore_container "$IMG2" "$W2" "$WORK/out2" --lazy-pages
kill -USR1 "$(container_pid)"
ID=$ID_SAVED
grep -q "RPC request options:.*lazy_pages: true" "$W2/restore.log" || fail "runc restore did not ask for lazy pages"
grep -q 'left to the lazy-pages daemon' "$W2/restore.log" || fail "the restore wrote every page itself"
echo "ok: runc restore --lazy-pages runs $ID2"

# 3. The transfer ends: the daemon exits 0 having fetched pages from the source, runc checkpoint
#    returns 0 and the source container is gone.
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 60
DAEMON_PID=
((RC == 0)) || fail "the lazy-pages daemon exited $RC: $(tail -3 "$WORK/daemon.err") $(tail -3 "$W2/lazy-pages.log")"
stats=$(grep -o 'lazy-pages: .* fetched from the source' "$W2/lazy-pages.log") || fail "no stats line in the daemon's log"
fetched=$(sed -E 's/.* ([0-9]+) fetched from the source/\1/' <<<"$stats")
((fetched >= lazy)) || fail "the daemon fetched $fetched pages of $lazy: $stats"
# The shell forks a sleep every 0.2 s while pages are missing: what parent and child both miss is
# fetched once, and pushes into the short-lived children come last (else about twice the pages).
((fetched * 2 < lazy * 3)) || fail "the daemon fetched $fetched pages for $lazy lazy ones: $stats"
echo "daemon: $stats"
faults=$(sed -E 's/.*faults served \(([0-9]+) pages\).*/\1/' <<<"$stats")
forked=$(sed -E 's/.* ([0-9]+) forked.*/\1/' <<<"$stats")
((faults >= 1 && forked >= 1)) || fail "the restored shell's fork did not fault pages in: $stats"
wait_exit "$CKPT_PID" "runc checkpoint" 30
CKPT_PID=
((RC == 0)) || fail "runc checkpoint exited $RC: $(cat "$WORK/ckpt.out") $(engine_log "$W1")"
grep -q "The lazy-pages daemon has every page" "$W1/dump.log" || fail "the dump did not see the transfer end"
sent=$(sed -n 's/.*Lazy pages: [0-9]* requests, \([0-9]*\) pages sent.*/\1/p' "$W1/dump.log")
[[ "$sent" == "$fetched" ]] || fail "the dump sent '$sent' pages, the daemon fetched $fetched"
# The statistics are written once the transfer ended.
stats_lazy=$(crit decode -i "$W1/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('pages_lazy', 0))")
((stats_lazy == lazy)) || fail "stats-dump says pages_lazy=$stats_lazy, the dump served $lazy"
[[ -z "$(container_status)" ]] || fail "the source container still exists after the checkpoint: $(container_status)"
! kill -0 "$src_pid" 2>/dev/null || fail "the source container's init $src_pid still lives"
echo "ok: daemon exit 0 after $fetched pages, runc checkpoint exit 0, source container gone"

# 4. The restored container ticks on from where the source stopped, and its memory is the source's.
last=$(grep -v '^sum ' "$WORK/out1" | tail -1)
[[ "$last" =~ ^[0-9]+$ ]] || fail "unexpected ticker output: '$last'"
for ((i = 0; i < 100; i++)); do (($(grep -vc '^sum ' "$WORK/out2") >= 3)) && grep -q '^sum ' "$WORK/out2" && break; sleep 0.1; done
first=$(grep -v '^sum ' "$WORK/out2" | head -1)
[[ "$first" == $((last + 1)) ]] || fail "the restored ticker printed '$first' first, expected $((last + 1)): $(head -5 "$WORK/out2")"
[[ "$(grep -v '^sum ' "$WORK/out1" | tail -1)" == "$last" ]] || fail "the restored ticker writes to the old output"
echo "ok: the ticker went on from $last to $first in the new output"
sum2=$(grep '^sum ' "$WORK/out2" | head -1)
[[ "$sum2" == "$sum1" ]] || fail "the restored variable's checksum is '$sum2', was '$sum1'"
echo "ok: $ID2's 16 MiB variable, read while it was arriving, is intact ($sum2)"
ID=$ID2
[[ "$(container_status)" == running ]] || fail "$ID2 is not running: $(container_status)"
"${RUNC[@]}" delete -f "$ID2" || fail "runc delete -f $ID2 failed"
[[ -z "$(container_status)" ]] || fail "$ID2 still exists after delete"
ID=$ID_SAVED
