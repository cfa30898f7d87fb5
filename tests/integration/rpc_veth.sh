#!/bin/bash
# RPC restore of a tree with a network namespace of its own and a veth to the host: the host end is
# named by criu_opts.veths (as --veth-pair), then, dumped again, by criu_opts.external veth[IN]:OUT
# (as --external). The host end comes back with that name, the inner address answers from the host,
# and the restored program reaches the host through the veth.
source "$(dirname "$0")/lib.sh"
source "$SRC/tests/rpc/client.sh"
for tool in ip nsenter python3; do command -v "$tool" >/dev/null || fail "$tool is needed"; done

NS=crrv-$$
HOST=crr$$
HOST2=crs$$
cleanup_net() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST" 2>/dev/null || true
  ip link del "$HOST2" 2>/dev/null || true
}
at_exit cleanup_net

# answers: a TCP connect from the host to the inner address gets an answer (refused: nothing listens).
answers() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("10.202.0.2", 5556))
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("no answer: %s" % e)
PY
}

# host_end NAME: the restored host end is there, a veth, and gets the host's address.
host_end() {
  local link
  link=$(ip -o -d link show "$1") || fail "no host end $1 after the RPC restore"
  grep -q "veth" <<<"$link" || fail "$1 is not a veth: $link"
  ip addr add 10.202.0.1/24 dev "$1"
  ip link set "$1" up
  [[ $(answers) == refused ]] || fail "the inner address 10.202.0.2 does not answer through $1: $(answers)"
}

ip netns add "$NS" || fail "ip netns add"
ip link add "$HOST" type veth peer name veth0 netns "$NS" || fail "ip link add veth"
ip addr add 10.202.0.1/24 dev "$HOST"
ip link set "$HOST" up
ip -n "$NS" link set lo up
ip -n "$NS" link set veth0 up
ip -n "$NS" addr add 10.202.0.2/24 dev veth0
READY=$WORK/rv.ready RESULT=$WORK/rv.result
setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" connect=10.202.0.1:9 \
  </dev/null >>"$WORK/rv.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
ip netns del "$NS"
orig=$TARGET_PID

# 1. DUMP and RESTORE over RPC, the host end named by veths.
mkdir -p "$WORK/img1"
rpc --images "$WORK/img1" --pid "$orig" --log-file dump.log DUMP >"$WORK/dump1.out"
expect success 1 "$WORK/dump1.out"
reap_target
wait_gone "$HOST"
ls "$WORK"/img1/netdev-*.img >/dev/null || fail "no netdev image"
rpc --images "$WORK/img1" --log-file restore.log --veth "veth0=$HOST2" RESTORE >"$WORK/restore1.out"
expect success 1 "$WORK/restore1.out"
expect restore_pid "$orig" "$WORK/restore1.out"
grep -q "Created veth veth0 in the namespace, host end $HOST2" "$WORK/img1/restore.log" || fail "restore.log does not name $HOST2"
host_end "$HOST2"
[[ $(nsenter -t "$orig" -n ip -o addr show dev veth0) == *"inet 10.202.0.2/24"* ]] || fail "veth0 lost its address"
echo "ok: RPC RESTORE with veths veth0=$HOST2: host end made, inner address answers"

# 2. Dumped again and restored with external veth[veth0]:NAME over RPC.
mkdir -p "$WORK/img2"
rpc --images "$WORK/img2" --pid "$orig" --log-file dump.log DUMP >"$WORK/dump2.out"
expect success 1 "$WORK/dump2.out"
wait_gone "$HOST2"
rpc --images "$WORK/img2" --log-file restore.log --external "veth[veth0]:$HOST" RESTORE >"$WORK/restore2.out"
expect success 1 "$WORK/restore2.out"
ip link show "$HOST2" >/dev/null 2>&1 && fail "$HOST2 is back although external named $HOST"
host_end "$HOST"
finish_and_check
echo "ok: RPC RESTORE with external veth[veth0]:$HOST; the restored program reached the host"

# 3. Without a name for the host end: refused with the hint, no veth left.
wait_gone "$HOST"
rpc --images "$WORK/img2" --log-file restore3.log RESTORE >"$WORK/restore3.out"
expect success 0 "$WORK/restore3.out"
expect_in cr_errmsg "veth[veth0]:HOSTNAME" "$WORK/restore3.out"
echo "ok: an RPC RESTORE without veths is refused naming the missing host end"
