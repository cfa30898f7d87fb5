#!/bin/bash
# Time namespace: a program in a time namespace whose clocks run days ahead of the host's is dumped
# (timens-<id>.img holds its clocks), killed and restored; its monotonic and boot-time clocks go on
# from where they were, and it is in a time namespace of its own again. Without CAP_SYS_ADMIN the
# restore is refused with what it takes.
source "$(dirname "$0")/lib.sh"
command -v capsh >/dev/null || fail "capsh is needed (package libcap2-bin)"

AHEAD=864000  # ten days
READY=$WORK/timens.ready RESULT=$WORK/timens.result
# unshare makes the namespace for its child: the program is unshare's only child.
unshare --time --fork --monotonic $AHEAD --boottime $AHEAD setsid \
  "$PROGRAMS/tp_timens" "$READY" "$RESULT" $AHEAD </dev/null >/dev/null 2>&1 &
LAUNCHER=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -P "$LAUNCHER" -x tp_timens)  # setsid execs in the forked child
[[ -n "$TARGET_PID" ]] || fail "no tp_timens under $LAUNCHER"
[[ "$(readlink "/proc/$TARGET_PID/ns/time")" != "$(readlink /proc/self/ns/time)" ]] || fail "not in a time namespace"
checkpoint "$WORK/img"
decode_all "$WORK/img"
mono=$(crit decode -i "$WORK"/img/timens-*.img | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['monotonic']['tv_sec'])")
((mono >= AHEAD)) || fail "timens image: monotonic is $mono s, expected at least $AHEAD"
wait "$LAUNCHER" 2>/dev/null || true
# Without CAP_SYS_ADMIN no time namespace can be made: refused with what it takes, no task left.
if capsh --drop=cap_sys_admin -- -c "$CRSHIM restore -D $WORK/img -o restore-noadmin.log -d" 2>"$WORK/noadmin.err"; then
  fail "restored a time namespace without CAP_SYS_ADMIN"
fi
grep -qF "unshare(CLONE_NEWTIME) timens-" "$WORK/noadmin.err" &&
  grep -qF ": Operation not permitted (EPERM); hint: time namespaces need Linux 5.6 and CAP_SYS_ADMIN" "$WORK/noadmin.err" ||
  fail "unexpected error: $(cat "$WORK/noadmin.err")"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "a task was left behind by the refused restore"
restore_detached "$WORK/img"
[[ "$(readlink "/proc/$TARGET_PID/ns/time")" != "$(readlink /proc/self/ns/time)" ]] || fail "restored into our time namespace"
[[ "$(readlink /proc/self/ns/time_for_children)" == "$(readlink /proc/self/ns/time)" ]] || fail "our own children's time namespace changed"
finish_and_check
echo "ok: restored into a time namespace whose clocks continue $AHEAD s ahead of the host's"
