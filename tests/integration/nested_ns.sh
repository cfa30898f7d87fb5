#!/bin/bash
# UTS and IPC namespaces made inside the tree (tp_nested_ns): a child unshares its own, names its host
# and keeps a SysV segment and a queued message there, and its child lives in them too; with
# "sibling" a second child has a UTS namespace of its own. Each namespace is dumped once and made again
# at restore by the task that made it, with its contents; the root's stay the restorer's.
source "$(dirname "$0")/lib.sh"

cycle tp_nested_ns

start_program tp_nested_ns sibling
checkpoint "$WORK/img-s"
decode_all "$WORK/img-s"
names=$(for f in "$WORK"/img-s/utsns-*.img; do crit decode -i "$f" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['nodename'])"; done | sort | tr '\n' ' ')
[[ $names == "crshim-nested crshim-sibling " ]] || fail "UTS images hold '$names'"
[[ $(ls "$WORK"/img-s/ipcns-var-*.img | wc -l) == 1 ]] || fail "expected one nested IPC namespace image: $(ls "$WORK/img-s")"
ls "$WORK"/img-s/ipcns-shm-*.img >/dev/null || fail "no SysV shm image for the nested IPC namespace"
reap_target
restore_detached "$WORK/img-s"
finish_and_check
echo "ok: two nested UTS namespaces and one IPC namespace, each made again by its task"

# Two orphans that share a UTS namespace their parent made before it exited (they now are the
# subreaper's children): the first makes it again at restore, the second joins it.
setsid "$PROGRAMS/reaper" sh -c 'unshare -u sh -c "hostname crshim-orphans; sleep 1000 & sleep 1000 &"; touch "$0"; exec sleep 1000' \
  "$WORK/orphans.ready" </dev/null >>"$WORK/orphans.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$WORK/orphans.ready"
checkpoint "$WORK/img-o"
reap_target
restore_detached "$WORK/img-o" --pidfile "$WORK/pid-o"
TARGET_PID=$(cat "$WORK/pid-o")
mapfile -t kids < <(pgrep -P "$TARGET_PID")
((${#kids[@]} == 3)) || fail "the restored subreaper has ${#kids[@]} children: ${kids[*]}"
declare -A utsns
for k in "${kids[@]}"; do utsns[$(readlink "/proc/$k/ns/uts")]+="$k "; done
((${#utsns[@]} == 2)) || fail "the three children are in ${#utsns[@]} UTS namespaces"
for ns in "${!utsns[@]}"; do
  read -ra in_it <<<"${utsns[$ns]}"
  if ((${#in_it[@]} == 2)); then
    [[ $(nsenter -t "${in_it[0]}" -u hostname) == crshim-orphans ]] || fail "the orphans' host name is $(nsenter -t "${in_it[0]}" -u hostname)"
    [[ $ns != $(readlink "/proc/$TARGET_PID/ns/uts") ]] || fail "the orphans are in the subreaper's UTS namespace"
  fi
done
kill -9 "$TARGET_PID" "${kids[@]}"
TARGET_PID=
echo "ok: two orphans sharing the UTS namespace their exited parent made: one makes it, the other joins it"

# A task that went back into the host's UTS namespace below one that left it: crshim cannot reach the
# host's from inside the tree; the restore says so before creating any task.
setsid "$PROGRAMS/reaper" sh -c 'unshare -u sh -c "nsenter --uts=/proc/$1/ns/uts sleep 1000 & touch $0; exec sleep 1000" "$0" "$1"' \
  "$WORK/back.ready" "$$" </dev/null >>"$WORK/back.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$WORK/back.ready"
sleep 0.2  # nsenter has joined and exec'd sleep
checkpoint "$WORK/img-b"
reap_target
if "$CRSHIM" restore -D "$WORK/img-b" -o restore.log -v4 -d 2>"$WORK/err"; then fail "restored a task into the dumper's namespace"; fi
grep -qE "restore ids-[0-9]+\.img: the task shares the UTS namespace of the dumper, not its parent's; crshim cannot reach it from the task; hint: " "$WORK/err" ||
  fail "unclear error: $(cat "$WORK/err")"
! grep -q 'Created task' "$WORK/img-b/restore.log" || fail "tasks were created before the refusal"
echo "ok: refused: $(head -1 "$WORK/err")"

# A cgroup namespace of C's own as well: rooted where C was when it unshared it, C sees its cgroups
# as before.
cycle tp_nested_ns cgroup
