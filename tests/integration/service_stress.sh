#!/bin/bash
# The service under load: 1000 connections in a row leave its fd count and memory where they were,
# and 4 dumps then 4 restores running at once through it all succeed.
source "$(dirname "$0")/lib.sh"
source "$SRC/tests/rpc/client.sh"

SOCK=$WORK/svc.sock
PIDFILE=$WORK/svc.pid
RPC_SERVICE=$SOCK
at_exit '[[ ! -f "$PIDFILE" ]] || kill "$(cat "$PIDFILE")" 2>/dev/null'
"$CRSHIM" service --address "$SOCK" --pidfile "$PIDFILE" -d || fail "service -d failed"
svc=$(cat "$PIDFILE")

fds() { ls "/proc/$svc/fd" | wc -l; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$svc/status"; }

"$PY" "$SRC/tests/rpc/hammer.py" "$SOCK" 50 >/dev/null || fail "warm-up requests failed"
fds_before=$(fds)
rss_before=$(rss_kib)
"$PY" "$SRC/tests/rpc/hammer.py" "$SOCK" 1000 >"$WORK/hammer.out" || fail "1000 requests: $(cat "$WORK/hammer.out")"
[[ "$(cat "$WORK/hammer.out")" == answers=1000 ]] || fail "hammer: $(cat "$WORK/hammer.out")"
fds_after=$(fds)
rss_after=$(rss_kib)
((fds_after == fds_before)) || fail "service fds went from $fds_before to $fds_after over 1000 requests"
((rss_after - rss_before < 512)) || fail "service RSS grew from $rss_before to $rss_after KiB over 1000 requests"
zombies=$(ps --ppid "$svc" -o stat= | grep -c Z || true)
((zombies == 0)) || fail "$zombies unreaped workers"
echo "ok: 1000 requests, service fds $fds_before -> $fds_after, RSS $rss_before -> $rss_after KiB"

# Four targets dumped at once, then restored at once.
PROGS=(tp_memory tp_threads tp_signals tp_stress)
declare -A PID RES
for prog in "${PROGS[@]}"; do
  start_program "$prog"
  PID[$prog]=$TARGET_PID
  RES[$prog]=$RESULT
  mkdir -p "$WORK/img-$prog"
done
for prog in "${PROGS[@]}"; do
  rpc --images "$WORK/img-$prog" --pid "${PID[$prog]}" --log-file dump.log DUMP >"$WORK/dump-$prog.out" &
done
wait_jobs() {
  local job
  for job in $(jobs -p); do [[ " ${PID[*]} " == *" $job "* ]] || wait "$job"; done
}
wait_jobs
for prog in "${PROGS[@]}"; do
  expect success 1 "$WORK/dump-$prog.out"
  wait "${PID[$prog]}" 2>/dev/null || true
done
echo "ok: 4 concurrent dumps through the service"
for prog in "${PROGS[@]}"; do
  rpc --images "$WORK/img-$prog" --log-file restore.log RESTORE >"$WORK/restore-$prog.out" &
done
wait_jobs
for prog in "${PROGS[@]}"; do
  expect success 1 "$WORK/restore-$prog.out"
  expect restore_pid "${PID[$prog]}" "$WORK/restore-$prog.out"
done
for prog in "${PROGS[@]}"; do
  TARGET_PID=${PID[$prog]} RESULT=${RES[$prog]}
  finish_and_check
done
echo "ok: 4 concurrent restores through the service, every target verified itself"
[[ "$(cat "$PIDFILE")" == "$svc" ]] || fail "a job overwrote the service's pidfile with $(cat "$PIDFILE")"
