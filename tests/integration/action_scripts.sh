#!/bin/bash
# --action-script: CRIU's hook order and environment on dump and restore; failing scripts abort cleanly.
source "$(dirname "$0")/lib.sh"

ACTIONS=$WORK/actions.log
# Logs "ACTION INIT_PID inv|noinv": noinv until CRTOOLS_IMAGE_DIR reaches a complete image set.
SCRIPT=$WORK/log-action.sh
cat >"$SCRIPT" <<EOF
#!/bin/sh
if [ -f "\$CRTOOLS_IMAGE_DIR/inventory.img" ]; then inv=inv; else inv=noinv; fi
echo "\$CRTOOLS_SCRIPT_ACTION \${CRTOOLS_INIT_PID:-none} \$inv" >> "$ACTIONS"
EOF
chmod +x "$SCRIPT"

# fails_at ACTION: a script that exits 7 at ACTION and succeeds elsewhere.
fails_at() {
  local s=$WORK/fail-$1.sh
  printf '#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = %s ] && exit 7\nexit 0\n' "$1" >"$s"
  chmod +x "$s"
  echo "$s"
}

expect_actions() {
  local want=$1 got
  got=$(cat "$ACTIONS")
  [[ "$got" == "$want" ]] || fail "action scripts ran as:
$got
expected:
$want"
}

# 1. dump then restore: exact order, CRTOOLS_INIT_PID and CRTOOLS_IMAGE_DIR.
start_program tp_memory
orig=$TARGET_PID
checkpoint "$WORK/img" --action-script "$SCRIPT"
expect_actions "pre-dump $orig noinv
post-dump $orig inv"
reap_target
: >"$ACTIONS"
restore_detached "$WORK/img" --action-script "$SCRIPT"
expect_actions "pre-restore none inv
setup-namespaces $orig inv
post-setup-namespaces $orig inv
post-restore $orig inv
pre-resume $orig inv
post-resume $orig inv"
finish_and_check
echo "ok: dump and restore hooks in CRIU's order with CRTOOLS_* set"

# 2. a script failing at pre-restore: restore exits non-zero and nothing runs with the old pid.
start_program tp_memory
orig=$TARGET_PID
checkpoint "$WORK/img2"
reap_target
TARGET_PID=
if "$CRSHIM" restore -D "$WORK/img2" -o restore.log -v4 -d --action-script "$(fails_at pre-restore)" 2>"$WORK/restore2.err"; then
  fail "restore succeeded although pre-restore failed"
fi
if kill -0 "$orig" 2>/dev/null; then TARGET_PID=$orig; fail "pid $orig exists after the failed restore"; fi
grep -q "failed at pre-restore: exit status 7" "$WORK/img2/restore.log" || fail "restore.log does not name the failed script"
grep -q "pre-restore" "$WORK/restore2.err" || fail "stderr does not name the failed point: $(cat "$WORK/restore2.err")"
echo "ok: failing pre-restore aborts the restore, no process left"

# 3. a script failing at setup-namespaces: the task already exists and must be killed.
if "$CRSHIM" restore -D "$WORK/img2" -o restore3.log -v4 -d --action-script "$(fails_at setup-namespaces)" 2>/dev/null; then
  fail "restore succeeded although setup-namespaces failed"
fi
sleep 0.2
if kill -0 "$orig" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$orig/status" 2>/dev/null; then
  TARGET_PID=$orig
  fail "pid $orig still runs after setup-namespaces failed"
fi
echo "ok: failing setup-namespaces kills the half-restored task"

# 4. the same images still restore afterwards.
restore_detached "$WORK/img2"
TARGET_PID=$orig
finish_and_check
echo "ok: images restore after the failed attempts"

# 5. a script failing at pre-dump: dump fails, the program runs on untouched.
start_program tp_memory
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img5" -o dump.log -v4 --action-script "$(fails_at pre-dump)" 2>/dev/null; then
  fail "dump succeeded although pre-dump failed"
fi
[[ ! -e "$WORK/img5/inventory.img" ]] || fail "a failed dump left inventory.img"
finish_and_check
echo "ok: failing pre-dump leaves the program running"
