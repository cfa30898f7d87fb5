#!/bin/bash
# --external pid[INO]:KEY: a task that is pid 2+ of a pid namespace it does not own (entered with
# nsenter) is dumped with that namespace marked external (pidns-<id>.img holds KEY), and restored with
# --inherit-fd fd[N]:KEY into the same, still living namespace with its pid there.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null && command -v nsenter >/dev/null || fail "unshare/nsenter are needed (package util-linux)"

HOLDER=""
at_exit '[[ -z "$HOLDER" ]] || kill -9 "$HOLDER" 2>/dev/null'
unshare --pid --fork --mount-proc sleep 600 &
UNSHARE=$!
for _ in $(seq 1 100); do HOLDER=$(pgrep -P "$UNSHARE" || true); [[ -n "$HOLDER" ]] && break; sleep 0.02; done
[[ -n "$HOLDER" ]] || fail "no namespace holder"
INO=$(stat -L -c %i "/proc/$HOLDER/ns/pid")

READY=$WORK/ready RESULT=$WORK/result
nsenter -t "$HOLDER" -p setsid "$PROGRAMS/tp_memory" "$READY" "$RESULT" </dev/null >>"$WORK/out" 2>&1 &
NSENTER=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -P "$NSENTER")
INNER=$(awk '/^NSpid:/ {print $NF}' "/proc/$TARGET_PID/status")
((INNER > 1)) || fail "the target is pid $INNER of the namespace"

mkdir -p "$WORK/refused"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump.log --leave-running 2>"$WORK/err"; then
  fail "a non-init task of a foreign pid namespace was dumped without --external pid[..]"
fi
grep -q -- "--external pid\[$INO\]:KEY" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"

checkpoint "$WORK/img" --external "pid[$INO]:extPid"
wait "$NSENTER" 2>/dev/null || true
decode_all "$WORK/img"
crit decode -i "$WORK/img"/pidns-*.img | grep -q '"ext_key": "extPid"' || fail "pidns image: $(crit decode -i "$WORK/img"/pidns-*.img)"

if "$CRSHIM" restore -D "$WORK/img" -d 2>"$WORK/err"; then fail "restored without the pid namespace"; fi
grep -q -- "--inherit-fd fd\[N\]:extPid" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
exec 7<"/proc/$HOLDER/ns/pid"
# From a pid namespace of its own, crshim cannot enter a sibling one.
if unshare --pid --fork "$CRSHIM" restore -D "$WORK/img" -o restore-sibling.log -v4 -d --inherit-fd fd[7]:extPid 2>"$WORK/err"; then
  fail "restored into a pid namespace outside crshim's"
fi
grep -qF "setns(CLONE_NEWPID) the external pid namespace: Invalid argument (EINVAL); hint: it must be crshim's own pid namespace or one below it" \
  "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
restore_detached "$WORK/img" --inherit-fd fd[7]:extPid --pidfile "$WORK/pid"
exec 7<&-
TARGET_PID=$(cat "$WORK/pid")
[[ "$(readlink "/proc/$TARGET_PID/ns/pid")" == "$(readlink "/proc/$HOLDER/ns/pid")" ]] || fail "not in the external pid namespace"
got=$(awk '/^NSpid:/ {print $NF}' "/proc/$TARGET_PID/status")
[[ "$got" == "$INNER" ]] || fail "pid $got in the namespace, was $INNER"
finish_and_check
echo "ok: restored into the existing pid namespace $INO as its pid $INNER (host pid $TARGET_PID)"
