#!/bin/bash
# runc drives crshim into a refusal: the container holds a netlink socket (busybox uevent), which crshim
# cannot dump. `runc checkpoint` must fail and point at the engine's log, which names the socket, and the
# container must keep running untouched. runc 1.1 does not show cr_errmsg, so the same DUMP is also sent
# over swrk directly to check that the answer's cr_errmsg names the socket too.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"
# shellcheck source=tests/rpc/client.sh
source "$SRC/tests/rpc/client.sh"

# uevent listens on a NETLINK_KOBJECT_UEVENT socket until killed; the ticker is its parent.
make_bundle "c['process']['args'][2] = 'uevent true & ' + c['process']['args'][2]"
run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
init_pid=$(container_pid)
uevent_pid=$(pgrep -P "$init_pid" uevent) || fail "uevent is not running in the container"
sock=$(readlink "/proc/$uevent_pid/fd/3")
[[ "$sock" == socket:* ]] || fail "uevent's fd 3 is $sock, not its netlink socket"
awk -v ino="${sock//[^0-9]/}" '$10 == ino {found = 1} END {exit !found}' "/proc/$uevent_pid/net/netlink" || fail "$sock is not in /proc/$uevent_pid/net/netlink"

# names_socket TEXT: TEXT names the refused task, its descriptor and the socket's inode.
names_socket() { [[ "$1" == *"dump pid $init_pid: pid $uevent_pid: "*"fd 3 ("*"${sock//[^0-9]/}"* ]]; }

for mode in "" --leave-running; do
  mkdir -p "$WORK/img$mode" "$WORK/w$mode"
  rc=0
  # shellcheck disable=SC2086 # $mode is empty or one option
  "${RUNC[@]}" checkpoint $mode --image-path "$WORK/img$mode" --work-path "$WORK/w$mode" "$ID" \
    >"$WORK/cp$mode.out" 2>&1 || rc=$?
  ((rc != 0)) || fail "runc checkpoint $mode of a container holding a netlink socket succeeded"
  out=$(cat "$WORK/cp$mode.out")
  # runc 1.1 prints the request type (NOTIFY: the failure came after the pre-dump notification), cr_errno
  # and the log file, not cr_errmsg; the log's error line names the task, the descriptor and the socket.
  [[ "$out" == *"criu failed: type NOTIFY errno 0"*"log file: $WORK/w$mode/dump.log"* ]] ||
    fail "runc did not report the engine's failure: $out"
  err=$(grep "Error" "$WORK/w$mode/dump.log" | head -1)
  names_socket "$err" || fail "the engine's log does not name the refused socket: $err"
  [[ "$(container_status)" == running ]] || fail "container is $(container_status) after the failed checkpoint $mode"
  [[ "$(container_pid)" == "$init_pid" && -d "/proc/$uevent_pid" ]] || fail "the container's tasks changed"
  for pid in "$init_pid" "$uevent_pid"; do
    [[ "$(awk '{print $3}' "/proc/$pid/stat")" != [tT] ]] || fail "pid $pid is left stopped"
    [[ "$(awk '/^TracerPid/ {print $2}' "/proc/$pid/status")" == 0 ]] || fail "pid $pid is still traced"
  done
  before=$(wc -l <"$WORK/out1")
  wait_lines "$WORK/out1" $((before + 3))
  [[ ! -e "$WORK/img$mode/pstree.img" ]] || fail "a refused checkpoint left images behind"
  echo "ok: runc checkpoint${mode:+ $mode} refused (exit $rc), the container keeps ticking"
done

# The same refusal as the RPC answer runc received: cr_errmsg names the task, the descriptor and the socket.
mkdir -p "$WORK/img-rpc"
rpc --images "$WORK/img-rpc" --pid "$init_pid" --log-file dump.log --notify --opt leave_running=true \
  --opt empty_ns=0x40000000 --opt manage_cgroups=true --opt orphan_pts_master=true DUMP >"$WORK/rpc.out"
expect success 0 "$WORK/rpc.out"
expect exit 1 "$WORK/rpc.out"
names_socket "$(field cr_errmsg "$WORK/rpc.out")" || fail "cr_errmsg does not name the refused socket: $(cat "$WORK/rpc.out")"
[[ "$(container_status)" == running ]] || fail "container is $(container_status) after the refused RPC DUMP"
echo "ok: the DUMP answer's cr_errmsg names the socket: $(field cr_errmsg "$WORK/rpc.out" | cut -c1-100)..."
