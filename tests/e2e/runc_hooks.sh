#!/bin/bash
# runc drives crshim: OCI prestart and createRuntime hooks. runc runs them during the restore when the
# engine notifies setup-namespaces, with the OCI state of the restored init on their stdin.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

HOOKS_LOG=$WORK/hooks.log
# A hook logs its argv and the pid and status of the state JSON that runc writes to its stdin.
cat >"$WORK/hook.py" <<'PY'
#!/usr/bin/python3
import json, sys
state = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write(" ".join(sys.argv[2:]) + " pid=%d status=%s id=%s\n" % (state["pid"], state["status"], state["id"]))
PY
chmod +x "$WORK/hook.py"
hook() { echo "{'path': '$WORK/hook.py', 'args': ['hook.py', '$HOOKS_LOG', '$1', 'arg2']}"; }
make_bundle "c['hooks'] = {'prestart': [$(hook prestart)], 'createRuntime': [$(hook createRuntime)]}"

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
first_pid=$(container_pid)
expected="prestart arg2 pid=$first_pid status=creating id=$ID
createRuntime arg2 pid=$first_pid status=creating id=$ID"
# runc 1.1 starts createRuntime hooks first at run time; only the set matters here.
[[ "$(sort "$HOOKS_LOG")" == "$(sort <<<"$expected")" ]] || fail "hooks at runc run: $(cat "$HOOKS_LOG")"
echo "ok: hooks ran at runc run with pid $first_pid"

checkpoint_gone "$WORK/img" "$WORK/w1"
sleep 0.3
rm -f "$HOOKS_LOG"
restore_container "$WORK/img" "$WORK/w2" "$WORK/out2"
check_continues "$WORK/out1" "$WORK/out2"
pid=$(container_pid)
[[ "$pid" != "$first_pid" ]] || fail "the restored init has the old host pid $pid; the check below would prove nothing"
expected="prestart arg2 pid=$pid status=stopped id=$ID
createRuntime arg2 pid=$pid status=stopped id=$ID"
[[ -f "$HOOKS_LOG" ]] || fail "no hook ran during runc restore: $(notifications "$WORK/w2/restore.log")"
[[ "$(cat "$HOOKS_LOG")" == "$expected" ]] || fail "hooks at restore logged:
$(cat "$HOOKS_LOG")
expected:
$expected"
echo "ok: prestart then createRuntime ran during restore with the restored pid $pid"
