#!/bin/bash
# Children sharing their parent's fd table (CLONE_FILES), fs state (CLONE_FS), address space and
# signal handlers (CLONE_VM|CLONE_SIGHAND), and shared anonymous memory keep sharing them after restore.
source "$(dirname "$0")/lib.sh"
cycle tp_clone_share

# The images say so as CRIU's do: equal ids, one fd table image, one pages image for the shared mm.
start_program tp_clone_share
checkpoint "$WORK/img5" --leave-running
finish_and_check
reap_target
ids() { crit decode -i "$WORK/img5/ids-$1.img" --pretty | grep "\"$2\"" | tr -dc 0-9; }
mapfile -t pids < <(crit decode -i "$WORK/img5/pstree.img" --pretty | grep '"pid"' | tr -dc '0-9\n')
((${#pids[@]} == 5)) || fail "expected 5 tasks in pstree.img, found ${#pids[@]}"
root=${pids[0]}
pages_id() { crit decode -i "$WORK/img5/pagemap-$1.img" --pretty | grep '"pages_id"' | tr -dc 0-9; }
shared=0
for p in "${pids[@]:1}"; do
  for k in vm_id files_id fs_id sighand_id; do
    [[ "$(ids "$p" $k)" == "$(ids "$root" $k)" ]] && shared=$((shared + 1))
  done
  if [[ "$(ids "$p" vm_id)" == "$(ids "$root" vm_id)" ]]; then
    # One mm, read once: both pagemaps name the same pages image.
    [[ "$(pages_id "$p")" == "$(pages_id "$root")" ]] || fail "the shared mm of $p was dumped twice"
  elif [[ "$(pages_id "$p")" == "$(pages_id "$root")" ]]; then
    fail "pid $p has its own mm but the root's pages image"
  fi
done
((shared == 4)) || fail "expected 4 shared ids (files, fs, vm, sighand), found $shared"
nfd=$(ls "$WORK"/img5/fdinfo-*.img | wc -l)
((nfd == 4)) || fail "expected 4 fd tables (one shared), found $nfd"
echo "ok: shared objects recorded once in the images"

# Siblings sharing an fd table their parent gave up: no clone recreates that; restore refuses it
# before creating any task, naming the tasks.
start_program tp_clone_share siblings
checkpoint "$WORK/img6"
reap_target
if "$CRSHIM" restore -D "$WORK/img6" -o restore.log -v4 -d 2>"$WORK/refused.err"; then
  fail "restore of siblings sharing an fd table without their parent succeeded"
fi
grep -q "share their fd table (CLONE_FILES) but" "$WORK/refused.err" || fail "unexpected error: $(cat "$WORK/refused.err")"
grep -q "Created task" "$WORK/img6/restore.log" && fail "tasks were created before the refusal"
kill -0 "$TARGET_PID" 2>/dev/null && fail "pid $TARGET_PID is in use after the refused restore"
echo "ok: sharing not inherited from the parent is refused"
