#!/bin/bash
# A program in its own UTS and IPC namespaces (hostname, domain name, IPC limits set there) comes back
# in new UTS and IPC namespaces with the same values; namespaces not dumpable yet are refused before
# anything is frozen.
source "$(dirname "$0")/lib.sh"

READY=$WORK/ready RESULT=$WORK/result
setsid unshare --uts --ipc sh -c "hostname crshim-uts && domainname crshim-domain && \
  echo 12345 > /proc/sys/kernel/msgmax && echo 77 > /proc/sys/fs/mqueue/msg_max && \
  exec $PROGRAMS/tp_memory $READY $RESULT" </dev/null >"$WORK/out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
checkpoint "$WORK/img"
for img in "$WORK"/img/utsns-*.img "$WORK"/img/ipcns-var-*.img; do [[ -f $img ]] || fail "missing $img"; done
reap_target
restore_detached "$WORK/img"
[[ "$(readlink /proc/$TARGET_PID/ns/uts)" != "$(readlink /proc/self/ns/uts)" ]] || fail "restored into our UTS namespace"
[[ "$(readlink /proc/$TARGET_PID/ns/ipc)" != "$(readlink /proc/self/ns/ipc)" ]] || fail "restored into our IPC namespace"
[[ $(nsenter -t "$TARGET_PID" -u hostname) == crshim-uts ]] || fail "hostname: $(nsenter -t "$TARGET_PID" -u hostname)"
[[ $(nsenter -t "$TARGET_PID" -u domainname) == crshim-domain ]] || fail "domainname: $(nsenter -t "$TARGET_PID" -u domainname)"
[[ $(nsenter -t "$TARGET_PID" -i cat /proc/sys/kernel/msgmax) == 12345 ]] || fail "msgmax not restored"
[[ $(nsenter -t "$TARGET_PID" -i cat /proc/sys/fs/mqueue/msg_max) == 77 ]] || fail "mqueue msg_max not restored"
[[ $(hostname) != crshim-uts ]] || fail "the host's name changed"
finish_and_check
echo "ok: UTS and IPC namespaces restored with hostname, domain name and IPC limits"

# A network namespace of its own with a link that cannot be dumped (a bridge): refused before freezing,
# target untouched.
setsid unshare --net sh -c 'ip link add crbr0 type bridge && exec "$0" "$@"' "$PROGRAMS/tp_memory" "$READY.2" "$RESULT.2" \
  </dev/null >"$WORK/out2" 2>&1 &
TARGET_PID=$! READY=$READY.2 RESULT=$RESULT.2
wait_for_file "$READY"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img2" 2>"$WORK/err"; then fail "a private netns was dumped"; fi
grep -q "own net namespace" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
finish_and_check
echo "ok: own network namespace refused before freezing, the program ran on"
