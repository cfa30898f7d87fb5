#!/bin/bash
# --inherit-fd: a restored task's stdout pipe is replaced by one the restorer holds (pipe:[ino] key),
# and a file dumped with --external file[mnt:ino] is reopened from an inherited fd with its own
# flags (O_APPEND kept). A key whose fd has the wrong pipe end is refused.
source "$(dirname "$0")/lib.sh"

READY=$WORK/ready RESULT=$WORK/result
exec {out1}> >(cat >"$WORK/out1")
setsid "$PROGRAMS/tp_inherit" "$READY" "$RESULT" "$WORK/log1" </dev/null >&"$out1" 2>"$WORK/err.out" &
TARGET_PID=$!
exec {out1}>&-
wait_for_file "$READY"
PIPE_KEY=$(readlink "/proc/$TARGET_PID/fd/1")
[[ $PIPE_KEY == pipe:* ]] || fail "stdout is $PIPE_KEY, not a pipe"
MNT=$(awk '/^mnt_id:/ {print $2}' "/proc/$TARGET_PID/fdinfo/3")
INO=$(stat -L -c %i "/proc/$TARGET_PID/fd/3")
FILE_KEY=$(printf 'file[%x:%x]' "$MNT" "$INO")
checkpoint "$WORK/img" --external "$FILE_KEY"
reap_target
crshim_show=$("$CRSHIM" show "$WORK/img/files.img")
grep -q "\"ext\": *true" <<<"$crshim_show" || fail "no external file entry in files.img"

# The wrong end of a pipe for the pipe key: refused, nothing left behind.
exec {rd}< <(sleep 5)
if "$CRSHIM" restore -D "$WORK/img" -o bad.log -d --inherit-fd "fd[$rd]:$PIPE_KEY" \
     --inherit-fd "fd[1]:$FILE_KEY" 2>"$WORK/err"; then fail "restore with the wrong pipe end succeeded"; fi
grep -q "the other end" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
kill -0 "$TARGET_PID" 2>/dev/null && fail "a task was left behind"
exec {rd}<&-

# The right objects: a new pipe for stdout, another file for the log.
echo "log2-start" >"$WORK/log2"
exec {out2}> >(cat >"$WORK/out2") {log2}>>"$WORK/log2"
"$CRSHIM" restore -D "$WORK/img" -o restore.log -d --inherit-fd "fd[$out2]:$PIPE_KEY" \
  --inherit-fd "fd[$log2]:$FILE_KEY" || fail "restore failed: $(tail -3 "$WORK/img/restore.log")"
exec {out2}>&- {log2}>&-
finish_and_check
sleep 0.2
grep -q "after-restore" "$WORK/out2" || fail "stdout after restore did not reach the new pipe: $(cat "$WORK/out2")"
grep -q "after-restore" "$WORK/out1" && fail "stdout after restore went to the old pipe"
[[ $(cat "$WORK/log2") == $'log2-start\nlog-after' ]] || fail "log2 is: $(cat "$WORK/log2")"
grep -q "log-after" "$WORK/log1" && fail "the log write went to the dumped file"
echo "ok: inherited pipe and external file (append mode kept); wrong pipe end refused"
