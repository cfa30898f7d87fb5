#!/bin/bash
# runc drives crshim (runc --criu): checkpoint and restore of a busybox ticker container with piped stdio.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# shellcheck disable=SC2119 # no config edits
make_bundle

# The container's stdout/stderr is an anonymous pipe into cat, so runc restores it with inherit_fd pipe:[ino].
run_container "$WORK/out1"
wait_lines "$WORK/out1" 3

# 1. --leave-running: the images are written and the container keeps ticking. Without --work-path the
# engine's log and statistics land in the images directory.
mkdir -p "$WORK/img0"
"${RUNC[@]}" checkpoint --leave-running --image-path "$WORK/img0" "$ID" ||
  fail "runc checkpoint --leave-running failed: $(engine_log "$WORK/img0")"
[[ "$(container_status)" == running ]] || fail "container not running after --leave-running checkpoint: $(container_status)"
[[ -s "$WORK/img0/descriptors.json" && -f "$WORK/img0/pstree.img" ]] || fail "no images after --leave-running"
[[ -s "$WORK/img0/dump.log" && -s "$WORK/img0/stats-dump" ]] || fail "no dump.log/stats-dump in the images dir: $(ls "$WORK/img0")"
before=$(wc -l <"$WORK/out1")
wait_lines "$WORK/out1" $((before + 3))
echo "ok: runc checkpoint --leave-running, container still ticking"
got=$(notifications "$WORK/img0/dump.log")
[[ "$got" == "pre-dump network-lock post-dump network-unlock" ]] || fail "leave-running dump notified: $got"

# 2. checkpoint: the container goes away.
checkpoint_gone "$WORK/img" "$WORK/w1"
grep -q "pipe:\[" "$WORK/img/descriptors.json" || fail "descriptors.json has no pipe: $(cat "$WORK/img/descriptors.json")"
# --work-path: the log and the statistics go there, not next to the images.
check_work_files "$WORK/img" "$WORK/w1" dump
sleep 0.3
got=$(notifications "$WORK/w1/dump.log")
[[ "$got" == "pre-dump network-lock post-dump" ]] || fail "dump notified: $got"
echo "ok: runc checkpoint, container gone"

# 3. restore -d with new stdio: the ticker carries on from where it was, in the new output.
restore_container "$WORK/img" "$WORK/w2" "$WORK/out2"
check_continues "$WORK/out1" "$WORK/out2"
check_work_files "$WORK/img" "$WORK/w2" restore
got=$(notifications "$WORK/w2/restore.log")
[[ "$got" == "pre-restore setup-namespaces post-setup-namespaces post-restore network-unlock pre-resume post-resume" ]] ||
  fail "restore notified: $got"

# The restored container is a normal runc container again: exec into it, list its processes.
# shellcheck disable=SC2016 # expanded by the container's shell
[[ "$("${RUNC[@]}" exec "$ID" sh -c 'echo $((40 + 2))')" == 42 ]] || fail "runc exec in the restored container failed"
ps_out=$("${RUNC[@]}" ps "$ID") || fail "runc ps failed on the restored container"
[[ "$ps_out" == *"sh -c i=0"* ]] || fail "runc ps does not show the ticker: $ps_out"
init_pid=$(container_pid)
grep -q ":/$ID\$" "/proc/$init_pid/cgroup" || fail "restored init is not in the container cgroups: $(cat "/proc/$init_pid/cgroup")"
echo "ok: runc exec/ps work on the restored container, init $init_pid in its cgroups"

# 4. The restored container checkpoints and restores again.
checkpoint_gone "$WORK/img2" "$WORK/w3"
sleep 0.3
restore_container "$WORK/img2" "$WORK/w4" "$WORK/out3"
check_continues "$WORK/out2" "$WORK/out3"
echo "ok: a restored container checkpoints and restores again"

"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed after restore"
[[ -z "$(container_status)" ]] || fail "container still exists after delete"
echo "ok: restored container deleted"
