#!/bin/bash
# A process tree whose root is pid 1 of its own pid namespace comes back in a new pid namespace with
# the same inner pids (the tree checks every pid, ppid, pgid and sid from inside).
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"

READY=$WORK/ready RESULT=$WORK/result
setsid unshare --pid --fork setsid "$PROGRAMS/tp_tree" "$READY" "$RESULT" </dev/null >>"$WORK/tree.out" 2>&1 &
UNSHARE=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -P "$UNSHARE")
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$TARGET_PID/status" || fail "tp_tree is not pid 1 of its namespace"

checkpoint "$WORK/img1"
wait "$UNSHARE" 2>/dev/null || true
restore_detached "$WORK/img1" --pidfile "$WORK/pid1"
TARGET_PID=$(cat "$WORK/pid1")
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$TARGET_PID/status" || fail "restored root is not pid 1 of a new namespace"
[[ "$(readlink "/proc/$TARGET_PID/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]] || fail "restored into our own pid namespace"
echo "ok: restored into a new pid namespace as pid 1 (host pid $TARGET_PID)"

# Checkpoint the restored tree again, and restore it once more.
checkpoint "$WORK/img2"
restore_detached "$WORK/img2" --pidfile "$WORK/pid2"
TARGET_PID=$(cat "$WORK/pid2")
finish_and_check
echo "ok: the tree checked its pids, groups, sessions, threads and memory after two restores"

# A multi-threaded pid 1 (as a Go or Java container init is), dumped and so killed: its last thread
# to exit waits in the kernel until its other threads are reaped, which crshim as their tracer must
# do in whatever order they go. Five rounds, since the order varies.
for round in 1 2 3 4 5; do
  READY=$WORK/threads.ready RESULT=$WORK/threads.result
  rm -f "$READY" "$RESULT"
  setsid unshare --pid --fork setsid "$PROGRAMS/tp_threads" "$READY" "$RESULT" </dev/null >>"$WORK/threads.out" 2>&1 &
  UNSHARE=$!
  wait_for_file "$READY"
  TARGET_PID=$(pgrep -P "$UNSHARE")
  checkpoint "$WORK/img-threads-$round"
  wait "$UNSHARE" 2>/dev/null || true
  grep -q 'Dumping finished successfully' "$WORK/img-threads-$round/dump.log" || fail "round $round: the dump did not finish"
  restore_detached "$WORK/img-threads-$round" --pidfile "$WORK/pid-threads"
  TARGET_PID=$(cat "$WORK/pid-threads")
  finish_and_check
done
echo "ok: a multi-threaded pid 1 dumped and killed five times, restored each time"
