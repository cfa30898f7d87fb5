#!/bin/bash
# crshim's RPC extension "req-inherit-fd": an RPC client names inherit_fd keys without passing their
# fds; crshim asks for each (NOTIFY with the key), the client answers with the fd as SCM_RIGHTS, and
# the restored task writes into the client's objects: a FIFO for its stdout pipe, a file for its log.
source "$(dirname "$0")/lib.sh"
source "$SRC/tests/rpc/client.sh"

READY=$WORK/ready RESULT=$WORK/result
exec {out1}> >(cat >"$WORK/out1")
setsid "$PROGRAMS/tp_inherit" "$READY" "$RESULT" "$WORK/log1" </dev/null >&"$out1" 2>"$WORK/err.out" &
TARGET_PID=$!
exec {out1}>&-
wait_for_file "$READY"
PIPE_KEY=$(readlink "/proc/$TARGET_PID/fd/1")
MNT=$(awk '/^mnt_id:/ {print $2}' "/proc/$TARGET_PID/fdinfo/3")
INO=$(stat -L -c %i "/proc/$TARGET_PID/fd/3")
FILE_KEY=$(printf 'file[%x:%x]' "$MNT" "$INO")
checkpoint "$WORK/img" --external "$FILE_KEY"
reap_target

mkfifo "$WORK/fifo"
cat "$WORK/fifo" >"$WORK/out2" &
reader=$!
echo "log2-start" >"$WORK/log2"
"$PY" "$SRC/tests/rpc/req_inherit_fd.py" "$CRSHIM" "$WORK/img" "$PIPE_KEY=$WORK/fifo" "$FILE_KEY=$WORK/log2" \
  >"$WORK/rpc.out" || fail "client failed: $(cat "$WORK/rpc.out")"
expect success 1 "$WORK/rpc.out"
expect restore_pid "$TARGET_PID" "$WORK/rpc.out"
expect asked "$PIPE_KEY,$FILE_KEY" "$WORK/rpc.out"
finish_and_check
wait "$reader" || true
grep -q "after-restore" "$WORK/out2" || fail "stdout after restore did not reach the client's FIFO: $(cat "$WORK/out2")"
[[ $(cat "$WORK/log2") == $'log2-start\nlog-after' ]] || fail "log2 is: $(cat "$WORK/log2")"
echo "ok: req-inherit-fd: crshim asked for both keys and the restored task writes into the client's files"

# A client that answers without a file: the restore fails naming the key, and no task is left.
cat >"$WORK/noanswer.py" <<'PY'
import os, socket, subprocess, sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from pycriu import rpc_pb2 as rpc
sk, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
p = subprocess.Popen([sys.argv[1], "swrk", str(theirs.fileno())], pass_fds=[theirs.fileno()])
theirs.close()
req = rpc.criu_req(type=rpc.RESTORE)
req.opts.images_dir_fd = os.open(sys.argv[2], os.O_RDONLY)
req.opts.notify_scripts = True
req.opts.log_file = "restore-noanswer.log"
req.opts.inherit_fd.add(key=sys.argv[3], fd=901)
sk.send(req.SerializeToString())
while True:
    resp = rpc.criu_resp()
    resp.ParseFromString(sk.recv(65536))
    if resp.type != rpc.NOTIFY:
        break
    sk.send(rpc.criu_req(type=rpc.NOTIFY, notify_success=True).SerializeToString())  # an old client: no fd
print("success=%d" % int(resp.success))
print("cr_errmsg=" + resp.cr_errmsg)
p.wait()
PY
"$PY" "$WORK/noanswer.py" "$CRSHIM" "$WORK/img" "$PIPE_KEY" >"$WORK/noanswer.out"
expect success 0 "$WORK/noanswer.out"
expect_in cr_errmsg "$PIPE_KEY" "$WORK/noanswer.out"
expect_in cr_errmsg "carried no file" "$WORK/noanswer.out"
kill -0 "$TARGET_PID" 2>/dev/null && fail "a task was left behind"
echo "ok: an answer without a file fails the restore, naming the key"
