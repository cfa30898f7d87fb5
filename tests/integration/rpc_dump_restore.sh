#!/bin/bash
# CRIU RPC over `crshim swrk`, driven by tests/rpc/crpc.py (pycriu's rpc_pb2): VERSION, dump and
# restore of tp_memory with notify_scripts, refusals and failures that leave the program running.
source "$(dirname "$0")/lib.sh"

source "$SRC/tests/rpc/client.sh"

# 1. VERSION (and a keep_open FEATURE_CHECK on the same engine), also with stdio closed as pycriu does.
rpc --keep-open --then FEATURE_CHECK VERSION >"$WORK/version.out"
expect type VERSION "$WORK/version.out"
expect success 1 "$WORK/version.out"
expect version_major 4 "$WORK/version.out"
expect version_minor 2 "$WORK/version.out"
expect version_has_gitid 0 "$WORK/version.out"
expect features.lazy_pages 1 "$WORK/version.out"
expect features.mem_track 0 "$WORK/version.out"
expect exit 0 "$WORK/version.out"
rpc --close-stdio VERSION >"$WORK/version2.out"
expect success 1 "$WORK/version2.out"
expect exit 0 "$WORK/version2.out"
if "$CRSHIM" swrk 0 </dev/null 2>"$WORK/badfd.err"; then fail "swrk accepted /dev/null as its socket"; fi
grep -q "descriptor 0 is not a SOCK_SEQPACKET socket" "$WORK/badfd.err" || fail "swrk 0: $(cat "$WORK/badfd.err")"
echo "ok: VERSION 4.2 and FEATURE_CHECK over one swrk session"

# 2. DUMP with images_dir_fd, log_file and notify_scripts; every NOTIFY answered and recorded.
start_program tp_memory
orig=$TARGET_PID
mkdir -p "$WORK/img"
rpc --images "$WORK/img" --pid "$orig" --log-file dump.log --notify DUMP >"$WORK/dump.out"
expect type DUMP "$WORK/dump.out"
expect success 1 "$WORK/dump.out"
expect dump_restored 0 "$WORK/dump.out"
expect notify "pre-dump,post-dump" "$WORK/dump.out"
expect exit 0 "$WORK/dump.out"
[[ -s "$WORK/img/dump.log" ]] || fail "no dump.log in the images dir"
[[ -f "$WORK/img/inventory.img" ]] || fail "no inventory.img"
decode_all "$WORK/img"
reap_target
if kill -0 "$orig" 2>/dev/null; then fail "the dumped program still runs"; fi
echo "ok: DUMP over swrk with notify order pre-dump,post-dump"

# 3. RESTORE over swrk: notify order, pids, then the restored program verifies itself.
rpc --images "$WORK/img" --log-file restore.log --notify RESTORE >"$WORK/restore.out"
expect type RESTORE "$WORK/restore.out"
expect success 1 "$WORK/restore.out"
expect notify "pre-restore,setup-namespaces,post-setup-namespaces,post-restore,pre-resume,post-resume" "$WORK/restore.out"
expect restore_pid "$orig" "$WORK/restore.out"
expect notify_pid.setup-namespaces "$orig" "$WORK/restore.out"
expect notify_pid.post-restore "$orig" "$WORK/restore.out"
expect exit 0 "$WORK/restore.out"
[[ -s "$WORK/img/restore.log" ]] || fail "no restore.log in the images dir"
finish_and_check
echo "ok: RESTORE over swrk, pid $orig, program passes"

# 4. a dump of a pid that does not exist: success=false, cr_errmsg names the pid, non-zero exit.
missing=$(($(cat /proc/sys/kernel/pid_max) - 7))
while kill -0 "$missing" 2>/dev/null; do missing=$((missing - 1)); done
mkdir -p "$WORK/img-missing"
rpc --images "$WORK/img-missing" --pid "$missing" --log-file dump.log DUMP >"$WORK/missing.out"
expect success 0 "$WORK/missing.out"
expect type DUMP "$WORK/missing.out"
expect_in cr_errmsg "pid $missing" "$WORK/missing.out"
[[ "$(field exit "$WORK/missing.out")" != 0 ]] || fail "swrk exited 0 after a failed dump"
# The same through pycriu's own spawning (fds 0-2 closed, libcriu-style pid datagram before exec).
rpc --pycriu --images "$WORK/img-missing" --pid "$missing" DUMP >"$WORK/missing2.out"
expect success 0 "$WORK/missing2.out"
expect_in cr_errmsg "pid $missing" "$WORK/missing2.out"
echo "ok: failing DUMP answers success=false naming pid $missing"

# 5. refusals and a NACKed notification leave the program running and intact.
start_program tp_memory
mkdir -p "$WORK/img5"
rpc --images "$WORK/img5" --pid "$TARGET_PID" --opt lazy_pages=true DUMP >"$WORK/tcp.out"
expect success 0 "$WORK/tcp.out"
expect_in cr_errmsg "dump lazy pages: no port to serve the pages on" "$WORK/tcp.out"
rpc --images "$WORK/img5" --pid "$TARGET_PID" --notify --nack post-dump DUMP >"$WORK/nack.out"
expect success 0 "$WORK/nack.out"
expect notify "pre-dump,post-dump" "$WORK/nack.out"
expect_in cr_errmsg "notify post-dump: RPC client reported script error" "$WORK/nack.out"
kill -0 "$TARGET_PID" || fail "the program died after a refused dump"
finish_and_check
echo "ok: refused options and a NACKed post-dump leave the program running"

# 6. A client that goes away in the middle of a restore: every task made so far is killed, swrk exits
# non-zero and does not hang; the images can be restored afterwards.
start_program tp_memory
mkdir -p "$WORK/img6"
checkpoint "$WORK/img6"
reap_target
before=$(sha256sum "$WORK"/img6/*.img | sha256sum)
timeout 30 "$PY" "$SRC/tests/rpc/crpc.py" --crshim "$CRSHIM" --images "$WORK/img6" --log-file gone.log --notify \
  --hang-up-at setup-namespaces RESTORE >"$WORK/gone.out" || fail "the client or swrk hung (exit $?)"
expect hung_up 1 "$WORK/gone.out"
[[ "$(field exit "$WORK/gone.out")" != 0 ]] || fail "swrk exited 0 after its client went away"
pid=$(field notify_pid.setup-namespaces "$WORK/gone.out")
[[ -n "$pid" ]] || fail "no pid in the setup-namespaces notification"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "task $pid survived the client going away"
grep -q "Error" "$WORK/img6/gone.log" || fail "the log says nothing of the lost client"
[[ "$(sha256sum "$WORK"/img6/*.img | sha256sum)" == "$before" ]] || fail "the images changed"
restore_detached "$WORK/img6"
finish_and_check
echo "ok: a client gone mid-restore: task $pid killed, swrk exited $(field exit "$WORK/gone.out"), images restorable"
