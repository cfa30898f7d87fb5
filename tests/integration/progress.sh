#!/bin/bash
# Progress on a terminal: a dump and a restore run under script(1) (stderr is a pty) end with a
# summary line of what they moved; with stderr on a file there is no progress output at all.
source "$(dirname "$0")/lib.sh"
command -v script >/dev/null || fail "script(1) is needed (package bsdutils)"

start_program tp_memory
script -qec "$CRSHIM dump -t $TARGET_PID -D $WORK/img -o dump.log" /dev/null </dev/null >"$WORK/dump.tty" 2>&1 ||
  fail "dump failed: $(cat "$WORK/dump.tty")"
grep -aq "dump: [0-9.]* [KMG]iB, [0-9.]* [KMG]iB/s" "$WORK/dump.tty" || fail "no dump progress: $(cat -v "$WORK/dump.tty")"
reap_target
script -qec "$CRSHIM restore -D $WORK/img -o restore.log -d" /dev/null </dev/null >"$WORK/restore.tty" 2>&1 ||
  fail "restore failed: $(cat "$WORK/restore.tty")"
grep -aq "restore: [0-9.]* [KMG]iB of [0-9.]* [KMG]iB (100%)" "$WORK/restore.tty" ||
  fail "no restore progress: $(cat -v "$WORK/restore.tty")"
finish_and_check
reap_target
echo "ok: dump and restore draw progress on a terminal"

rm -f "$RESULT"
start_program tp_memory
"$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img2" -o dump.log 2>"$WORK/dump.err" || fail "dump failed"
[[ ! -s "$WORK/dump.err" ]] || fail "output on a non-terminal stderr: $(cat "$WORK/dump.err")"
echo "ok: no progress output when stderr is not a terminal"
