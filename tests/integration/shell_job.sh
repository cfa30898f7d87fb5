#!/bin/bash
# --shell-job: a program whose stdio is a terminal is dumped, and restored onto the terminal of the
# shell that restores it (each side runs under `script`, which gives it a pty).
source "$(dirname "$0")/lib.sh"
command -v script >/dev/null || fail "script(1) is needed (package bsdutils)"

READY=$WORK/ready RESULT=$WORK/result
script -qec "exec $PROGRAMS/tp_shelljob $READY $RESULT" /dev/null </dev/null >"$WORK/tty1.out" 2>&1 &
SCRIPT_PID=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -nx tp_shelljob)
[[ -n "$TARGET_PID" ]] || fail "no target"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img" -o dump.log 2>"$WORK/err"; then fail "a terminal job was dumped without --shell-job"; fi
grep -q "fd 0 of pid $TARGET_PID: dump /dev/pts/[0-9]*: a pty slave whose master is not in the dumped tree" "$WORK/err" &&
  grep -q -- "--shell-job" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
checkpoint "$WORK/img" --shell-job
wait "$SCRIPT_PID" 2>/dev/null || true

# Restore in the foreground inside a new pty: crshim waits for the task and exits with its status.
script -qec "$CRSHIM restore -D $WORK/img -o restore.log -v4 --shell-job" /dev/null </dev/null >"$WORK/tty2.out" 2>&1 &
RESTORE_SCRIPT=$!
# The task exists as soon as it is created; it is only the program again once the restore is done
# (a SIGTERM before that would kill crshim's half-built task).
for _ in $(seq 1 200); do grep -qs "Restore finished successfully" "$WORK/img/restore.log" && break; sleep 0.05; done
kill -0 "$TARGET_PID" 2>/dev/null || fail "not restored: $(cat "$WORK/tty2.out")"
finish_and_check
wait "$RESTORE_SCRIPT" || true
grep -q "still talking to a terminal" "$WORK/tty2.out" || fail "no output on the new terminal: $(cat "$WORK/tty2.out")"
echo "ok: terminal job restored onto the restoring shell's terminal"
