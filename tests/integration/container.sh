#!/bin/bash
# A container built by hand, with every namespace crshim restores: unshare of mount, pid, UTS, IPC,
# network and cgroup namespaces, pivot_root into a busybox rootfs, a bind mount of a host directory,
# a tmpfs holding a file, a hostname, SysV shared memory holding data, and a veth pair whose inner
# end has an address and a default route. It is dumped, killed and restored with --root on a fresh
# copy of the rootfs; inside, everything is as before (mounts, hostname, shm contents, addresses,
# routes, namespaces of its own), its counter goes on, and once it is gone the host has no mount,
# veth or namespace of it left.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_container.sh"
for tool in unshare nsenter ip python3; do command -v $tool >/dev/null || fail "$tool is needed"; done
[[ -x /bin/busybox ]] || fail "/bin/busybox is needed (package busybox-static)"

IN=ctin$$ OUT=ctout$$ OUT2=ctnew$$
cleanup_links() { ip link del "$OUT" 2>/dev/null || true; ip link del "$OUT2" 2>/dev/null || true; }
at_exit cleanup_links

# shm OP PID [TEXT]: SysV shared memory key 0x5eed in PID's IPC namespace, written (put) or read (get).
shm() {
  nsenter --ipc --target "$2" python3 - "$1" "${3:-}" <<'PY'
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
op, text = sys.argv[1], sys.argv[2].encode()
shmid = libc.shmget(0x5eed, 4096, 0o1600 if op == "put" else 0)  # IPC_CREAT | 0600
if shmid < 0:
    sys.exit("shmget: errno %d" % ctypes.get_errno())
addr = libc.shmat(shmid, None, 0)
if op == "put":
    ctypes.memmove(addr, text + b"\0", len(text) + 1)
else:
    print(ctypes.string_at(addr).decode())
libc.shmdt(ctypes.c_void_p(addr))
PY
}

# view PID: what the container looks like from inside, minus what a restore may renumber.
view() {
  echo "hostname: $(nsenter --uts --target "$1" hostname)"
  echo "shm: $(shm get "$1")"
  nsenter --net --target "$1" ip -4 -o addr show dev "$IN" | awk '{ print "addr:", $4 }'
  nsenter --net --target "$1" ip -6 -o addr show dev "$IN" scope global | awk '{ print "addr6:", $4 }'
  nsenter --net --target "$1" ip route show | sed 's/^/route: /'
  mounts "$1" | sed 's/^/mount: /'
}

HOST=$WORK/hostdata
mkdir -p "$HOST"
ROOT1=$WORK/rootfs1
make_rootfs "$ROOT1"
SETUP='
set -e
R=$0 H=$1
exec 2>"$H/setup.err"
B=/bin/busybox
$B hostname crshim-box
$B mount --bind "$R" "$R"
$B mount --bind "$H" "$R/data"
$B mount -t tmpfs -o size=1m,mode=1777 tmpfs "$R/tmp"
echo "kept in tmpfs" >"$R/tmp/keep"
cd "$R"
$B pivot_root . .
$B umount -l .
cd /
$B mount -t proc proc /proc
$B mount -t sysfs -o ro sysfs /sys
echo ready >/data/ready
exec </tmp/keep >>/tmp/out 2>&1
exec /bin/busybox sh -c "i=0; while :; do i=\$((i + 1)); echo \$i >/data/counter; /bin/busybox sleep 0.4; done"
'
setsid unshare --mount --pid --uts --ipc --net --cgroup --fork --propagation private setsid /bin/busybox sh -c "$SETUP" \
  "$ROOT1" "$HOST" </dev/null >/dev/null 2>&1 &
UNSHARE=$!
wait_for_file "$HOST/ready" || fail "setup failed: $(cat "$HOST/setup.err")"
TARGET_PID=$(pgrep -P "$UNSHARE" | head -1)
for ns in mnt pid uts ipc net cgroup; do
  [[ "$(readlink "/proc/$TARGET_PID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]] || fail "no $ns namespace of its own"
done
# The network: a veth into the container, addresses and a default route inside.
ip link add "$OUT" type veth peer name "$IN" || fail "cannot make a veth pair"
ip link set "$IN" netns "$TARGET_PID"
ip addr add 10.203.0.1/24 dev "$OUT" && ip link set "$OUT" up
nsenter --net --target "$TARGET_PID" sh -c "ip link set lo up && ip link set $IN up &&
  ip addr add 10.203.0.2/24 dev $IN && ip addr add fd00:203::2/64 dev $IN nodad &&
  ip route add default via 10.203.0.1" || fail "cannot configure the container's network"
shm put "$TARGET_PID" "shared data of the box" || fail "cannot create the SysV shm"
BEFORE=$(view "$TARGET_PID")
echo "$BEFORE" | grep -q "^shm: shared data of the box$" || fail "shm not readable: $BEFORE"
echo "$BEFORE" | grep -q "^route: default via 10.203.0.1" || fail "no default route: $BEFORE"
echo "$BEFORE" | grep -q "^addr6: fd00:203::2/64$" || fail "no IPv6 address: $BEFORE"
echo "$BEFORE" | grep -q "^mount: /tmp tmpfs" || fail "no tmpfs: $BEFORE"

just_written "$HOST/counter"
checkpoint "$WORK/img" --external 'mnt[/data]:data'
wait "$UNSHARE" 2>/dev/null || true
decode_all "$WORK/img"
for img in netdev utsns ipcns-shm mountpoints; do ls "$WORK"/img/$img-*.img >/dev/null 2>&1 || fail "no $img image"; done
for _ in $(seq 100); do ip link show "$OUT" >/dev/null 2>&1 || break; sleep 0.05; done  # dies with the netns
echo "ok: container dumped ($(ls "$WORK/img" | wc -l) images), killed"

ROOT2=$WORK/rootfs2
make_rootfs "$ROOT2"
COUNT=$(cat "$HOST/counter")
restore_detached "$WORK/img" --root "$ROOT2" --external "mnt[data]:$HOST" --veth-pair "$IN=$OUT2" --pidfile "$WORK/pid"
TARGET_PID=$(cat "$WORK/pid")
ip addr add 10.203.0.1/24 dev "$OUT2" && ip link set "$OUT2" up || fail "no host end $OUT2"
AFTER=$(view "$TARGET_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "the container differs after restore:
--- before
$BEFORE
--- after
$AFTER"
for ns in mnt pid uts ipc net cgroup; do
  [[ "$(readlink "/proc/$TARGET_PID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]] || fail "restored into our $ns namespace"
done
[[ "$(cat "/proc/$TARGET_PID/root/tmp/keep")" == "kept in tmpfs" ]] || fail "tmpfs file lost"
# A TCP connect from inside to the host end: refused (a reset came back) or accepted both mean it answered.
reach='import socket, sys
s = socket.socket(); s.settimeout(2)
try: s.connect(("10.203.0.1", 9))
except ConnectionRefusedError: pass
except OSError as e: sys.exit(str(e))'
nsenter --net --target "$TARGET_PID" python3 -c "$reach" || fail "the host end does not answer from inside"
echo "ok: hostname, shm contents, addresses, routes and $(mounts "$TARGET_PID" | wc -l) mounts as before"
sleep 1
(($(cat "$HOST/counter") > COUNT)) || fail "the counter does not go on: $COUNT -> $(cat "$HOST/counter")"
echo "ok: the container's counter goes on ($COUNT -> $(cat "$HOST/counter"))"

NETNS=$(readlink "/proc/$TARGET_PID/ns/net")
kill -9 "$TARGET_PID"
for _ in $(seq 100); do kill -0 "$TARGET_PID" 2>/dev/null || break; sleep 0.05; done
TARGET_PID=
for _ in $(seq 100); do ip link show "$OUT2" >/dev/null 2>&1 || break; sleep 0.05; done
ip link show "$OUT2" >/dev/null 2>&1 && fail "the veth outlived the container"
[[ -z "$(tasks_in "$ROOT2")" ]] || fail "tasks left in the root: $(tasks_in "$ROOT2")"
[[ -z "$(leftovers)" ]] || fail "mounts left on the host: $(leftovers)"
grep -q "$NETNS" <(for p in /proc/[0-9]*; do readlink "$p/ns/net" 2>/dev/null; done) && fail "the network namespace lives on"
echo "ok: nothing of the container is left on the host"
