#!/bin/bash
# runc drives crshim: a foreground `runc restore` (no -d). The engine restores with rst_sibling, so the
# restored init is runc's own child; runc waits for it and exits when the container is killed.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# shellcheck disable=SC2119 # no config edits
make_bundle
run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
checkpoint_gone "$WORK/img" "$WORK/w1"
sleep 0.3

# runc itself is the background job (the subshell execs it), so $! is runc's pid.
mkdir -p "$WORK/w2"
(cd "$BUNDLE" && exec "${RUNC[@]}" restore --image-path "$WORK/img" --work-path "$WORK/w2" "$ID" \
  </dev/null > >(exec cat >"$WORK/out2") 2>"$WORK/restore.err") &
runc_pid=$!
for ((i = 0; i < 200; i++)); do
  [[ "$(container_status)" == running ]] && break
  kill -0 "$runc_pid" 2>/dev/null || fail "runc restore exited: $(cat "$WORK/restore.err") $(engine_log "$WORK/w2")"
  sleep 0.05
done
[[ "$(container_status)" == running ]] || fail "container not running after the foreground restore: $(container_status)"
[[ "$(cat "/proc/$runc_pid/comm")" == runc ]] || fail "pid $runc_pid is $(cat "/proc/$runc_pid/comm"), not runc"
check_continues "$WORK/out1" "$WORK/out2"

init_pid=$(container_pid)
parent=$(ppid_of "$init_pid")
[[ "$parent" == "$runc_pid" ]] || fail "restored init $init_pid has parent $parent ($(cat "/proc/$parent/comm" 2>/dev/null)), not runc $runc_pid"
kill -0 "$runc_pid" 2>/dev/null || fail "runc restore did not stay in the foreground"
echo "ok: foreground runc restore: init $init_pid is runc's ($runc_pid) child, runc waits for it"

"${RUNC[@]}" kill "$ID" KILL || fail "runc kill failed"
wait_exit "$runc_pid" "runc restore, whose container was killed," 5
rc=$RC
# runc reports the container's fate as its own exit status: 128 + SIGKILL.
((rc == 137)) || fail "runc restore exited with $rc, expected 137 (container killed): $(cat "$WORK/restore.err")"
echo "ok: killing the container ends runc restore (exit $rc)"
