#!/bin/bash
# Unix sockets bound to paths inside a container's own root (mount namespace, pivot_root'ed): restored
# with --root on a fresh rootfs, the names are bound and connected inside that root, not in crshim's.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"
[[ -x /bin/busybox ]] || fail "/bin/busybox is needed (package busybox-static)"

PROG=$PROGRAMS/tp_unix_root
# make_rootfs DIR: busybox for the setup, the test program and the libraries it loads.
make_rootfs() {
  local dir=$1 lib
  mkdir -p "$dir"/{bin,proc,data,etc,sock}
  cp /bin/busybox "$dir/bin/busybox"
  cp "$PROG" "$dir/bin/tp_unix_root"
  for lib in $(ldd "$PROG" | grep -o '/[^ ]*'); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
  echo input >"$dir/etc/in"
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
$B mount --bind "$R" "$R"
$B mount --bind "$H" "$R/data"
cd "$R"
$B pivot_root . .
$B umount -l .
cd /
$B mount -t proc proc /proc
exec </etc/in >>/out.log 2>&1
exec /bin/tp_unix_root /data/ready /data/result
'
setsid unshare --mount --pid --fork --propagation private setsid /bin/busybox sh -c "$SETUP" "$ROOT1" "$HOST" \
  </dev/null >/dev/null 2>&1 &
UNSHARE=$!
wait_for_file "$HOST/ready" || fail "setup failed: $(cat "$HOST/setup.err")"
TARGET_PID=$(pgrep -P "$UNSHARE" | head -1)
[[ -S "$ROOT1/sock/a" ]] || fail "no /sock/a in the container's root"

checkpoint "$WORK/img" --external 'mnt[/data]:data'
wait "$UNSHARE" 2>/dev/null || true
decode_all "$WORK/img"
rm -f "$HOST/ready"

# crshim's own root has no /sock: binding there would fail (or land in the wrong place).
[[ ! -e /sock ]] || fail "/sock exists on the host; the test cannot tell the roots apart"
ROOT2=$WORK/rootfs2
make_rootfs "$ROOT2"
cp "$ROOT1/out.log" "$ROOT2/out.log"  # the container's stdout, reopened by path
# Without /sock in the new root the names cannot be bound: looked up there, not in crshim's root.
mv "$ROOT2/sock" "$ROOT2/sock.away"
if "$CRSHIM" restore -D "$WORK/img" -o restore-nosock.log -v4 -d --root "$ROOT2" --external "mnt[data]:$HOST" 2>"$WORK/err"; then
  fail "restored without /sock in the new root"
fi
grep -qF "open /sock: No such file or directory (ENOENT); hint: looked up inside the restored root" "$WORK/err" ||
  fail "unexpected error: $(cat "$WORK/err")"
mv "$ROOT2/sock.away" "$ROOT2/sock"
restore_detached "$WORK/img" --root "$ROOT2" --external "mnt[data]:$HOST" --pidfile "$WORK/pid"
TARGET_PID=$(cat "$WORK/pid")
[[ -S "/proc/$TARGET_PID/root/sock/a" && -S "/proc/$TARGET_PID/root/sock/lis" ]] || fail "the socket files are not in the new root: $(ls -la "/proc/$TARGET_PID/root/sock" "$ROOT2/sock" 2>&1)"
[[ ! -e /sock ]] || fail "socket files were made in crshim's root"
RESULT=$HOST/result
finish_and_check
echo "ok: unix socket names bound and connected inside the restored root"
