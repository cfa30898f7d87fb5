#!/bin/bash
# Every fault point: a failed dump leaves the target running exactly as before (it passes its own
# checks), also when crshim itself is killed there; a failed restore leaves no task behind and the
# images byte-identical, also when a tree fails halfway through creating its tasks.
source "$(dirname "$0")/lib.sh"

DUMP_POINTS=(dump:frozen dump:pages dump:images)
RESTORE_POINTS=(restore:task-created restore:setup-namespaces restore:memory restore:threads restore:before-resume)
PROGRAMS_UNDER_TEST=(tp_memory tp_threads tp_signals)
outcomes=0

for prog in "${PROGRAMS_UNDER_TEST[@]}"; do
  for point in "${DUMP_POINTS[@]}"; do
    start_program "$prog"
    dir=$WORK/$prog-${point//:/-}
    mkdir -p "$dir"
    if CRSHIM_FAULT=$point "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 2>"$WORK/err"; then
      fail "dump of $prog with fault $point succeeded"
    fi
    grep -q "injected failure" "$WORK/err" || fail "dump with $point: unexpected error: $(cat "$WORK/err")"
    kill -0 "$TARGET_PID" || fail "$prog died after the failed dump at $point"
    finish_and_check
    reap_target
    outcomes=$((outcomes + 1))
    echo "ok: $prog survives a dump failing at $point"
  done
done

for prog in "${PROGRAMS_UNDER_TEST[@]}"; do
  start_program "$prog"
  checkpoint "$WORK/$prog-img"
  reap_target
  before=$(cd "$WORK/$prog-img" && sha256sum -- *.img | sha256sum)
  for point in "${RESTORE_POINTS[@]}"; do
    if CRSHIM_FAULT=$point "$CRSHIM" restore -D "$WORK/$prog-img" -o restore.log -v4 -d 2>"$WORK/err"; then
      fail "restore of $prog with fault $point succeeded"
    fi
    grep -q "injected failure" "$WORK/err" || fail "restore with $point: unexpected error: $(cat "$WORK/err")"
    if kill -0 "$TARGET_PID" 2>/dev/null; then fail "pid $TARGET_PID left behind by the restore failing at $point"; fi
    after=$(cd "$WORK/$prog-img" && sha256sum -- *.img | sha256sum)
    [[ "$before" == "$after" ]] || fail "images changed by the restore failing at $point"
    outcomes=$((outcomes + 1))
    echo "ok: $prog restore failing at $point leaves nothing behind"
  done
  restore_detached "$WORK/$prog-img"
  finish_and_check
  echo "ok: $prog restores after the failed attempts"
done

# crshim killed (SIGKILL, as by the OOM killer) at the dump points: the kernel releases the tasks, and
# they must run on as before; no injection window may be left open across a point.
for prog in "${PROGRAMS_UNDER_TEST[@]}"; do
  for point in "${DUMP_POINTS[@]}"; do
    start_program "$prog"
    dir=$WORK/$prog-killed-${point//:/-}
    mkdir -p "$dir"
    if CRSHIM_FAULT_KILL=1 CRSHIM_FAULT=$point "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 2>/dev/null; then
      fail "dump of $prog killed at $point succeeded"
    fi
    kill -0 "$TARGET_PID" || fail "$prog died after crshim was killed at $point"
    finish_and_check
    reap_target
    outcomes=$((outcomes + 1))
    echo "ok: $prog survives crshim being killed at $point"
  done
done

# A full file system under the images (a 1 MiB tmpfs, 64 MiB to write): ENOSPC, named in one line,
# and the target runs on.
FULL=$WORK/full
mkdir -p "$FULL"
mount -t tmpfs -o size=1m tmpfs "$FULL" || fail "mount tmpfs"
tree_pids=()
# A failing tree case must not leave a restored tree running.
at_exit 'umount "$FULL" 2>/dev/null; ((${#tree_pids[@]} == 0)) || kill -9 "${tree_pids[@]}" 2>/dev/null'
start_program tp_memory
if "$CRSHIM" dump -t "$TARGET_PID" -D "$FULL" -o "$WORK/full-dump.log" -v4 2>"$WORK/err"; then fail "dumped 64 MiB into 1 MiB"; fi
[[ $(wc -l <"$WORK/err") == 1 ]] || fail "expected one line on stderr: $(cat "$WORK/err")"
grep -q "write pages-1.img: No space left on device (ENOSPC); hint: free space on that file system" "$WORK/err" ||
  fail "the error does not say ENOSPC with its hint: $(cat "$WORK/err")"
kill -0 "$TARGET_PID" || fail "tp_memory died after the dump hit a full disk"
finish_and_check
reap_target
umount "$FULL"
outcomes=$((outcomes + 1))
echo "ok: a dump into a full file system fails with ENOSPC and the target runs on"

# A tree failing at its first, fifth and last task created (restore:task-forked:N): every task made
# before is killed, whatever its depth or pid namespace.
start_program tp_tree
checkpoint "$WORK/tree-img"
reap_target
mapfile -t tree_pids < <(crit decode -i "$WORK/tree-img/pstree.img" | python3 -c "
import json, sys
for e in json.load(sys.stdin)['entries']: print(e['pid'])")
((${#tree_pids[@]} >= 10)) || fail "tp_tree dumped ${#tree_pids[@]} tasks, expected at least 10"
before=$(cd "$WORK/tree-img" && sha256sum -- *.img | sha256sum)
for nth in 1 5 "${#tree_pids[@]}"; do
  if CRSHIM_FAULT=restore:task-forked:$nth "$CRSHIM" restore -D "$WORK/tree-img" -o restore.log -v4 -d 2>"$WORK/err"; then
    fail "tree restore failing at task $nth succeeded"
  fi
  grep -q "injected failure" "$WORK/err" || fail "tree restore failing at task $nth: unexpected error: $(cat "$WORK/err")"
  grep -q "task-forked" "$WORK/err" || fail "the error does not name the point: $(cat "$WORK/err")"
  for p in "${tree_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then fail "pid $p left behind by the tree restore failing at task $nth"; fi
  done
  [[ "$(cd "$WORK/tree-img" && sha256sum -- *.img | sha256sum)" == "$before" ]] || fail "images changed by the failed tree restore"
  outcomes=$((outcomes + 1))
  echo "ok: a tree restore failing at task $nth of ${#tree_pids[@]} leaves no task"
done
restore_detached "$WORK/tree-img"
finish_and_check
tree_pids=()  # gone on their own: their numbers may be reused
echo "ok: the tree restores after the failed attempts"

echo "fault matrix: $(( ${#DUMP_POINTS[@]} + ${#RESTORE_POINTS[@]} )) points x ${#PROGRAMS_UNDER_TEST[@]} programs, the dump points again with crshim killed, a full disk, and a tree failing at 3 of its tasks = $outcomes outcomes checked"
