#!/bin/bash
# Dumps refused for what the tree is, not for a bug: each gives one line naming the process or object
# and the reason (asserted word for word here), exits non-zero, and the target runs on untouched.
#  1. a process whose children would be born in another time namespace than its own;
#  2. a task moved out of its cgroup namespace's root (its own view starts with "/..");
#  3. --freeze-cgroup naming a directory with no freezer;
#  4. a task that cannot be stopped (stuck in vfork) within --timeout.
source "$(dirname "$0")/lib.sh"

V2ROOT=/sys/fs/cgroup/unified
[[ -f $V2ROOT/cgroup.procs ]] || fail "needs the v2 hierarchy mounted at $V2ROOT"
NAME=crshim-refusals-$$
CGROUP_DIRS=("$V2ROOT/$NAME/a" "$V2ROOT/$NAME/b" "$V2ROOT/$NAME")  # deepest first
at_exit 'remove_cgroups "${CGROUP_DIRS[@]}"'

# expect_refused DIR TEXT [OPTIONS...]: the dump of TARGET_PID fails, stderr carries TEXT, no image is
# left that could be mistaken for a dump, and the target is still there.
expect_refused() {
  local dir=$1 text=$2
  shift 2
  mkdir -p "$dir"
  if "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 "$@" 2>"$WORK/err"; then fail "the dump of $TARGET_PID was not refused"; fi
  [[ $(wc -l <"$WORK/err") == 1 ]] || fail "expected one line on stderr, got: $(cat "$WORK/err")"
  grep -qF -- "$text" "$WORK/err" || fail "stderr lacks '$text': $(cat "$WORK/err")"
  [[ ! -e $dir/inventory.img ]] || fail "a refused dump left inventory.img"
  kill -0 "$TARGET_PID" 2>/dev/null || fail "the target died"
}

# ---- 1. Time namespace made for children only: the process itself still runs on the host's clocks.
READY=$WORK/timens.ready RESULT=$WORK/timens.result
setsid python3 -c "
import ctypes, os, signal, sys, time
if ctypes.CDLL(None, use_errno=True).unshare(0x80) != 0: sys.exit('unshare(CLONE_NEWTIME) failed')
ns = os.readlink('/proc/self/ns/time')
def done(*_):
    ok = os.readlink('/proc/self/ns/time') == ns and os.readlink('/proc/self/ns/time_for_children') != ns
    open('$RESULT', 'w').write('PASS' if ok else 'FAIL: time namespaces changed')
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
open('$READY', 'w').close()
while True: time.sleep(1)
" </dev/null >"$WORK/timens.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
expect_refused "$WORK/timens" "Error: dump failed: dump pid $TARGET_PID: its children would be born in another time namespace than its own (time:["
grep -q "dump the process that runs in the new time namespace (its child), not the one that made it" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
finish_and_check
wait "$TARGET_PID" 2>/dev/null || true
echo "ok: a process with a time namespace for its children only is refused, and runs on"

# ---- 2. Moved out of its cgroup namespace's root.
mkdir -p "$V2ROOT/$NAME/a" "$V2ROOT/$NAME/b"
READY=$WORK/tp_memory.ready RESULT=$WORK/tp_memory.result
setsid sh -c "echo \$\$ > $V2ROOT/$NAME/a/cgroup.procs && \
  exec unshare --cgroup $PROGRAMS/tp_memory $READY $RESULT" </dev/null >"$WORK/cgns.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
echo "$TARGET_PID" >"$V2ROOT/$NAME/b/cgroup.procs"
inside=$(nsenter --cgroup --target "$TARGET_PID" cat "/proc/$TARGET_PID/cgroup" | grep '^0::')
[[ $inside == "0::/../b" ]] || fail "the task's own view of its v2 cgroup is $inside, expected 0::/../b"
expect_refused "$WORK/cgns" "Error: dump failed: dump pid $TARGET_PID: cgroup '/$NAME/b' (v2) lies outside the task's cgroup namespace root '/../b'"
echo "$TARGET_PID" >"$V2ROOT/$NAME/a/cgroup.procs"
finish_and_check
wait "$TARGET_PID" 2>/dev/null || true
echo "ok: a task outside its cgroup namespace's root is refused, and runs on"

# ---- 3. --freeze-cgroup without a freezer there.
start_program tp_memory
expect_refused "$WORK/freezer" "Error: dump failed: dump --freeze-cgroup $V2ROOT/$NAME/none: no freezer.state or cgroup.freeze there" \
  --freeze-cgroup "$V2ROOT/$NAME/none"
grep -q "name the tree's freezer cgroup directory" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
finish_and_check
echo "ok: --freeze-cgroup naming a directory without a freezer is refused, and the target runs on"

# ---- 4. A task that will not stop: --timeout bounds the wait.
READY=$WORK/vfork.ready RESULT=$WORK/vfork.result
setsid "$PROGRAMS/tp_vfork" "$READY" "$RESULT" 6 </dev/null >"$WORK/vfork.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
mkdir -p "$WORK/vfork"
start=$(date +%s%N)
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/vfork" -o dump.log -v4 --timeout 1 2>"$WORK/err"; then fail "dumped a task stuck in vfork"; fi
took=$((($(date +%s%N) - start) / 1000000))
((took < 3000)) || fail "the dump gave up after $took ms with --timeout 1"
grep -qF "freeze tid $TARGET_PID: did not stop within 1 s; it is in an uninterruptible wait (a vfork parent, stuck I/O); hint: see /proc/$TARGET_PID/stack; raise --timeout if it is only slow" "$WORK/err" ||
  fail "unexpected error: $(cat "$WORK/err")"
wait_for_file "$RESULT" 20
[[ $(cat "$RESULT") == PASS ]] || fail "after the failed dump: $(cat "$RESULT")"
echo "ok: a task stuck in vfork is given up after --timeout 1 ($took ms), and runs on"
