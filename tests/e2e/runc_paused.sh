#!/bin/bash
# runc drives crshim on a paused container (containerd pauses one before `ctr task checkpoint`): the
# frozen freezer cgroup (RPC freeze_cgroup) is thawed while the engine stops the tasks with ptrace and
# frozen again when they run on (--leave-running); a plain checkpoint of a paused container restores.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# shellcheck disable=SC2119 # no config edits
make_bundle
run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
"${RUNC[@]}" pause "$ID" || fail "runc pause failed"
[[ "$(container_status)" == paused ]] || fail "not paused: $(container_status)"
frozen_at=$(ticks "$WORK/out1" | tail -1)

mkdir -p "$WORK/img1" "$WORK/w1"
"${RUNC[@]}" checkpoint --leave-running --image-path "$WORK/img1" --work-path "$WORK/w1" "$ID" ||
  fail "runc checkpoint --leave-running of a paused container failed: $(engine_log "$WORK/w1")"
grep -q "is frozen: thawing it for the dump" "$WORK/w1/dump.log" || fail "the engine did not see the frozen cgroup"
[[ "$(container_status)" == paused ]] || fail "the container is $(container_status) after checkpoint, not paused"
# A sleep that expired while the tasks were stopped may print one line before the freezer takes them.
sleep 0.2
after=$(ticks "$WORK/out1" | tail -1)
((after - frozen_at <= 1)) || fail "the container ticked from $frozen_at to $after around the checkpoint"
sleep 0.6
[[ "$(ticks "$WORK/out1" | tail -1)" == "$after" ]] || fail "the paused container ticks on after the checkpoint"
"${RUNC[@]}" resume "$ID" || fail "runc resume failed"
wait_lines "$WORK/out1" $(($(wc -l <"$WORK/out1") + 2))
echo "ok: checkpoint --leave-running of a paused container leaves it paused; it resumes and ticks"

"${RUNC[@]}" pause "$ID" || fail "runc pause failed"
checkpoint_gone "$WORK/img2" "$WORK/w2"
restore_container "$WORK/img2" "$WORK/w3" "$WORK/out2"
check_continues "$WORK/out1" "$WORK/out2"
echo "ok: a paused container checkpointed and restored ticks on"
