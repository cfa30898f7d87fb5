#!/bin/bash
# Cgroups: a task in a v1 memory cgroup and a v2 cgroup of its own comes back in the same cgroups
# (made again when missing), in another memory cgroup with --cgroup-root memory:PATH, in ours with
# --manage-cgroups=ignore; a failing restore leaves no cgroup it made behind; a hierarchy this host
# has not mounted is refused with a hint.
source "$(dirname "$0")/lib.sh"

V1ROOT=/sys/fs/cgroup/memory
V2ROOT=/sys/fs/cgroup/unified
[[ -f $V1ROOT/cgroup.procs && -f $V2ROOT/cgroup.procs ]] || fail "needs the v1 memory and the v2 hierarchy mounted"
NAME=crshim-test-$$
OTHER=crshim-other-$$
CGROUP_DIRS=("$V1ROOT/$OTHER/deeper" "$V1ROOT/$NAME" "$V2ROOT/$NAME" "$V1ROOT/$OTHER")  # deepest first
at_exit 'remove_cgroups "${CGROUP_DIRS[@]}"'

# The target joins $NAME in both hierarchies, then becomes tp_memory.
start_in_cgroups() {
  mkdir -p "$V1ROOT/$NAME" "$V2ROOT/$NAME"
  READY=$WORK/$1.ready RESULT=$WORK/$1.result
  setsid sh -c "echo \$\$ > $V1ROOT/$NAME/cgroup.procs && echo \$\$ > $V2ROOT/$NAME/cgroup.procs && \
    exec $PROGRAMS/tp_memory $READY $RESULT" </dev/null >"$WORK/$1.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  expect_cgroups "/$NAME" "/$NAME"
}

# expect_cgroups MEMORY_PATH V2_PATH: the target's cgroups as /proc/PID/cgroup lists them.
expect_cgroups() {
  local cg
  cg=$(cat "/proc/$TARGET_PID/cgroup")
  grep -qx "[0-9]*:memory:$1" <<<"$cg" || fail "memory cgroup is not $1: $cg"
  grep -qx "0::$2" <<<"$cg" || fail "v2 cgroup is not $2: $cg"
}

own_memory=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
own_v2=$(sed -n 's/^0:://p' /proc/self/cgroup)

# 1. Dump records the set (cgroup.img, thread_core.cg_set); restore puts the task back.
start_in_cgroups a
checkpoint "$WORK/a"
decode_all "$WORK/a"
crit decode -i "$WORK/a/cgroup.img" | grep -q "\"path\": \"/$NAME\"" || fail "cgroup.img lacks /$NAME"
# (Debian's crit 3.17 does not know thread_core.cg_set, field 16: our own decoder shows it.)
"$CRSHIM" show "$WORK/a/core-$TARGET_PID.img" | grep -q '"cg_set": [1-9]' || fail "core has no cg_set"
reap_target
restore_detached "$WORK/a" --manage-cgroups
expect_cgroups "/$NAME" "/$NAME"
finish_and_check
reap_target
echo "ok: restored into memory:/$NAME and 0::/$NAME"

# 2. The cgroups are gone before the restore (default mode, soft): made again.
start_in_cgroups b
checkpoint "$WORK/b"
reap_target
remove_cgroups "${CGROUP_DIRS[@]}"
[[ ! -d $V1ROOT/$NAME && ! -d $V2ROOT/$NAME ]] || fail "could not remove the test cgroups"
restore_detached "$WORK/b"
expect_cgroups "/$NAME" "/$NAME"
finish_and_check
reap_target
echo "ok: missing cgroups made again (soft)"

# 3. --cgroup-root memory:/OTHER moves the memory root only.
start_in_cgroups c
checkpoint "$WORK/c"
reap_target
restore_detached "$WORK/c" --manage-cgroups=soft --cgroup-root "memory:/$OTHER"
expect_cgroups "/$OTHER" "/$NAME"
[[ -d $V1ROOT/$OTHER ]] || fail "$V1ROOT/$OTHER not made"
finish_and_check
reap_target
echo "ok: --cgroup-root memory:/$OTHER"

# 4. --manage-cgroups=ignore: the task stays in crshim's cgroups.
start_in_cgroups d
D_PID=$TARGET_PID
checkpoint "$WORK/d"
reap_target
restore_detached "$WORK/d" --manage-cgroups=ignore
expect_cgroups "$own_memory" "$own_v2"
finish_and_check
reap_target
echo "ok: --manage-cgroups=ignore leaves the task in ours ($own_memory)"

# 5. A restore failing after the tasks were placed removes the cgroups it made, and only those.
start_in_cgroups e
checkpoint "$WORK/e"
reap_target
remove_cgroups "${CGROUP_DIRS[@]}"
mkdir "$V2ROOT/$NAME"  # exists already: must survive the failed restore
if CRSHIM_FAULT=restore:cgroups "$CRSHIM" restore -D "$WORK/e" -o restore-fault.log -v4 -d \
  --cgroup-root "memory:/$OTHER/deeper" 2>"$WORK/err"; then
  fail "restore with the fault succeeded"
fi
grep -q "injected failure" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -q "made $V1ROOT/$OTHER/deeper" "$WORK/e/restore-fault.log" || fail "the restore made no cgroup to remove"
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "pid $TARGET_PID left behind"; fi
[[ ! -e $V1ROOT/$OTHER/deeper && ! -e $V1ROOT/$OTHER ]] || fail "cgroups made by the failed restore are left"
[[ -d $V2ROOT/$NAME ]] || fail "a cgroup that existed before was removed"
echo "ok: failed restore removed $V1ROOT/$OTHER/deeper and $V1ROOT/$OTHER, kept $V2ROOT/$NAME"

# 6. A hierarchy the image names but this host has not mounted: refused, with the way out.
cp -r "$WORK/d" "$WORK/f"
crit decode -i "$WORK/d/cgroup.img" | sed 's/"memory"/"crshim_none"/g' | crit encode -o "$WORK/f/cgroup.img" ||
  fail "cannot rewrite cgroup.img"
grep -q crshim_none <(crit decode -i "$WORK/f/cgroup.img") || fail "cgroup.img names no crshim_none hierarchy"
if "$CRSHIM" restore -D "$WORK/f" -o restore.log -v4 -d --manage-cgroups 2>"$WORK/err"; then
  fail "restore into an unmounted hierarchy succeeded"
fi
grep -qF "cgroup hierarchy 'crshim_none': not mounted on this host; hint: mount it, or restore with --manage-cgroups=ignore" \
  "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
if kill -0 "$D_PID" 2>/dev/null; then fail "pid $D_PID left behind"; fi
echo "ok: an unmounted hierarchy is refused with a hint"
