#!/bin/bash
# --join-ns: a task dumped in our namespaces is restored into a network namespace made with
# `ip netns add` and a UTS namespace given by a pid; pid namespaces cannot be joined.
source "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"

NS=crshim-test-$$
ip netns add "$NS" || fail "ip netns add"
HOLDER=""
trap 'ip netns del "$NS" 2>/dev/null; [[ -n "$HOLDER" ]] && kill -9 "$HOLDER" 2>/dev/null; cleanup' EXIT
# A process in its own UTS namespace, with its own hostname, to join by pid.
unshare --uts sh -c 'hostname crshim-joined; exec sleep 600' &
HOLDER=$!
for _ in $(seq 1 100); do [[ "$(readlink /proc/$HOLDER/ns/uts)" != "$(readlink /proc/self/ns/uts)" ]] && break; sleep 0.02; done

start_program tp_memory
checkpoint "$WORK/img"
reap_target
if "$CRSHIM" restore -D "$WORK/img" -d --join-ns pid:1 2>"$WORK/err"; then fail "joining a pid namespace was accepted"; fi
grep -qi "pid" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
restore_detached "$WORK/img" --join-ns "net:/var/run/netns/$NS" --join-ns "uts:$HOLDER"
want=$(stat -L -c %i "/var/run/netns/$NS")
got=$(stat -L -c %i "/proc/$TARGET_PID/ns/net")
[[ "$want" == "$got" ]] || fail "restored task is in netns $got, expected $want"
[[ "$(readlink "/proc/$TARGET_PID/ns/uts")" == "$(readlink "/proc/$HOLDER/ns/uts")" ]] || fail "not in the joined UTS namespace"
[[ $(nsenter -t "$TARGET_PID" -u hostname) == crshim-joined ]] || fail "hostname inside is $(nsenter -t "$TARGET_PID" -u hostname)"
finish_and_check
echo "ok: restored into netns $NS (inode $got) and the UTS namespace of pid $HOLDER; pid namespace refused"
