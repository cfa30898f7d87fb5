#!/bin/bash
# --file-locks: flock, POSIX and OFD locks are dumped and taken again; without the option a task
# holding a lock is refused (as CRIU) and keeps running.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"
start_program tp_locks "$WORK/files"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/nolocks" 2>"$WORK/err"; then fail "locks dumped without --file-locks"; fi
grep -q "use --file-locks" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
finish_and_check
echo "ok: a lock holder is refused without --file-locks"
CHECKPOINT_OPTS=--file-locks cycle tp_locks "$WORK/files"
crshim_show=$("$CRSHIM" show "$WORK/img1/filelocks.img")
[[ $(grep -c '"fd"' <<<"$crshim_show") == 3 ]] || fail "filelocks.img: $crshim_show"
