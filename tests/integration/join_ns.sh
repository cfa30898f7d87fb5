#!/bin/bash
# --join-ns: a task dumped in our namespaces is restored into a network namespace made with
# `ip netns add`, a UTS namespace given by a pid and a time namespace (with its clock offsets) given
# by a pid; pid namespaces (the way is --external pid[..]) cannot be joined, nor user namespaces by a
# tree without a pid namespace of its own.
source "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"

NS=crshim-test-$$
ip netns add "$NS" || fail "ip netns add"
HOLDER="" TIME_HOLDER=""
at_exit 'ip netns del "$NS" 2>/dev/null; for h in $HOLDER $TIME_HOLDER; do kill -9 "$h" 2>/dev/null; done'
# A process in its own UTS namespace, with its own hostname, to join by pid.
unshare --uts sh -c 'hostname crshim-joined; exec sleep 600' &
HOLDER=$!
for _ in $(seq 1 100); do [[ "$(readlink /proc/$HOLDER/ns/uts)" != "$(readlink /proc/self/ns/uts)" ]] && break; sleep 0.02; done
# A time namespace whose monotonic clock is 10000 s ahead (the process in it is unshare's child).
unshare --time --fork --monotonic 10000 sleep 600 &
TIME_UNSHARE=$!
for _ in $(seq 1 100); do TIME_HOLDER=$(pgrep -P "$TIME_UNSHARE" || true); [[ -n "$TIME_HOLDER" ]] && break; sleep 0.02; done
[[ -n "$TIME_HOLDER" ]] || fail "no time namespace holder"

start_program tp_memory
checkpoint "$WORK/img"
reap_target
if "$CRSHIM" restore -D "$WORK/img" -d --join-ns pid:1 2>"$WORK/err"; then fail "joining a pid namespace was accepted"; fi
grep -qi "pid" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
if "$CRSHIM" restore -D "$WORK/img" -d --join-ns "user:$HOLDER" 2>"$WORK/err"; then fail "joining a user namespace was accepted"; fi
# A tree in crshim's pid namespace cannot live in another user namespace (userns.sh joins one).
grep -q "join-ns user: joining a user namespace needs a tree with its own pid namespace" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
restore_detached "$WORK/img" --join-ns "net:/var/run/netns/$NS" --join-ns "uts:$HOLDER" --join-ns "time:$TIME_HOLDER"
want=$(stat -L -c %i "/var/run/netns/$NS")
got=$(stat -L -c %i "/proc/$TARGET_PID/ns/net")
[[ "$want" == "$got" ]] || fail "restored task is in netns $got, expected $want"
[[ "$(readlink "/proc/$TARGET_PID/ns/uts")" == "$(readlink "/proc/$HOLDER/ns/uts")" ]] || fail "not in the joined UTS namespace"
[[ $(nsenter -t "$TARGET_PID" -u hostname) == crshim-joined ]] || fail "hostname inside is $(nsenter -t "$TARGET_PID" -u hostname)"
[[ "$(readlink "/proc/$TARGET_PID/ns/time")" == "$(readlink "/proc/$TIME_HOLDER/ns/time")" ]] || fail "not in the joined time namespace"
grep -Eq "^monotonic[[:space:]]+10000[[:space:]]+0$" "/proc/$TARGET_PID/timens_offsets" ||
  fail "time namespace offsets: $(cat "/proc/$TARGET_PID/timens_offsets")"
finish_and_check
echo "ok: restored into netns $NS (inode $got), the UTS namespace of pid $HOLDER and the time namespace of pid $TIME_HOLDER; pid namespaces (and user ones for this tree) refused"
