#!/bin/bash
# Cgroup namespace: a task that unshared its cgroup namespace in one cgroup and then moved one level
# down comes back with a namespace of its own rooted at the same cgroup (memory v1 and v2), seeing
# the same paths from inside; the cgroups are made again when they are gone.
source "$(dirname "$0")/lib.sh"

V1ROOT=/sys/fs/cgroup/memory
V2ROOT=/sys/fs/cgroup/unified
[[ -f $V1ROOT/cgroup.procs && -f $V2ROOT/cgroup.procs ]] || fail "needs the v1 memory and the v2 hierarchy mounted"
NAME=crshim-cgns-$$
CGROUP_DIRS=("$V1ROOT/$NAME/inner" "$V2ROOT/$NAME/inner" "$V1ROOT/$NAME" "$V2ROOT/$NAME")  # deepest first
at_exit 'remove_cgroups "${CGROUP_DIRS[@]}"'

# expect_views HOST_SUFFIX INSIDE: the target's memory and v2 cgroups as we see them and as its own
# cgroup namespace shows them.
expect_views() {
  local host inside
  host=$(cat "/proc/$TARGET_PID/cgroup")
  inside=$(nsenter --cgroup --target "$TARGET_PID" cat "/proc/$TARGET_PID/cgroup")
  grep -qx "[0-9]*:memory:/$NAME$1" <<<"$host" || fail "host view of memory is not /$NAME$1: $host"
  grep -qx "0::/$NAME$1" <<<"$host" || fail "host view of v2 is not /$NAME$1: $host"
  grep -qx "[0-9]*:memory:$2" <<<"$inside" || fail "namespace view of memory is not $2: $inside"
  grep -qx "0::$2" <<<"$inside" || fail "namespace view of v2 is not $2: $inside"
  [[ "$(readlink "/proc/$TARGET_PID/ns/cgroup")" != "$(readlink /proc/self/ns/cgroup)" ]] ||
    fail "the task is in our cgroup namespace"
}

mkdir -p "$V1ROOT/$NAME/inner" "$V2ROOT/$NAME/inner"
READY=$WORK/cgns.ready RESULT=$WORK/cgns.result
# Joins $NAME, unshares the cgroup namespace there, moves on into inner, becomes tp_memory (one pid).
setsid sh -c "echo \$\$ > $V1ROOT/$NAME/cgroup.procs && echo \$\$ > $V2ROOT/$NAME/cgroup.procs && \
  exec unshare --cgroup sh -c 'echo \$\$ > $V1ROOT/$NAME/inner/cgroup.procs && \
  echo \$\$ > $V2ROOT/$NAME/inner/cgroup.procs && exec $PROGRAMS/tp_memory $READY $RESULT'" \
  </dev/null >"$WORK/cgns.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
expect_views /inner /inner
checkpoint "$WORK/img"
decode_all "$WORK/img"
prefix=$(crit decode -i "$WORK/img/cgroup.img" | python3 -c "
import json, sys
for s in json.load(sys.stdin)['entries'][0]['sets']:
    for m in s['ctls']:
        if m['name'] == 'memory' and m['path'] == '/$NAME/inner': print(m.get('cgns_prefix', 0))")
[[ "$prefix" == "$((${#NAME} + 1))" ]] || fail "cgroup.img: memory cgns_prefix is '$prefix', expected $((${#NAME} + 1))"
reap_target
remove_cgroups "${CGROUP_DIRS[@]}"
restore_detached "$WORK/img"
expect_views /inner /inner
finish_and_check
echo "ok: cgroup namespace rooted at /$NAME again, the task in /$NAME/inner (inside: /inner)"
