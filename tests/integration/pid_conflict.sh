#!/bin/bash
# Restoring while the pid is held by a live process fails fast with a clear error and creates nothing;
# so does restoring pids without the capabilities to choose them.
source "$(dirname "$0")/lib.sh"

start_program tp_memory
checkpoint "$WORK/img" --leave-running
start=$(date +%s%N)
if "$CRSHIM" restore -D "$WORK/img" -o restore.log -d 2>"$WORK/err"; then fail "restore over a live pid succeeded"; fi
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "the pid is used by a live process (tp_memory)" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -qF "; hint: stop that process, or restore in a new pid namespace" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
((elapsed_ms < 5000)) || fail "took ${elapsed_ms} ms to give up"
[[ $(wc -l <"$WORK/err") -eq 1 ]] || fail "error is not one line: $(cat "$WORK/err")"
finish_and_check
echo "ok: restore over a live pid refused in ${elapsed_ms} ms: $(cat "$WORK/err")"

# Without the privilege to choose pids (CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN) the restore says what it needs.
command -v capsh >/dev/null || fail "capsh is needed (package libcap2-bin)"
reap_target
if capsh --drop=cap_checkpoint_restore,cap_sys_admin -- -c "$CRSHIM restore -D $WORK/img -o restore-nocap.log -d" \
  2>"$WORK/nocap.err"; then
  fail "restored pids without CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN"
fi
grep -qF "clone3 pid $TARGET_PID: creating the task with its original pid: Operation not permitted (EPERM); hint: restoring pids needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN" \
  "$WORK/nocap.err" || fail "unexpected error: $(cat "$WORK/nocap.err")"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "a task was left behind"
echo "ok: restoring pids without the capabilities for it is refused with a hint"
