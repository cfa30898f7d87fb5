#!/bin/bash
# A hand-made busybox container (own mount and pid namespace, pivot_root'ed; proc, sysfs, cgroup2,
# a tmpfs holding a file, an external host directory, a read-only bind, devpts, mqueue) is dumped
# with --external mnt[/data]:data, killed, and restored with --root on a fresh copy of its rootfs:
# the same mount list, the tmpfs file, the counter going on in the host directory, and nothing left
# mounted anywhere once it is gone. A restore failing after the mounts exist leaves nothing behind.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"
[[ -x /bin/busybox ]] || fail "/bin/busybox is needed (package busybox-static)"
command -v tar >/dev/null || fail "GNU tar is needed"

source "$(dirname "$0")/lib_container.sh"

HOST=$WORK/hostdata
mkdir -p "$HOST"
ROOT1=$WORK/rootfs1
make_rootfs "$ROOT1"
[[ -z "$(leftovers)" ]] || fail "leftovers before the test: $(leftovers)"

# Runs as pid 1 of the new pid namespace, in a private copy of our mount namespace.
SETUP='
set -e
R=$0 H=$1
exec 2>"$H/setup.err"
B=/bin/busybox
$B mount --bind "$R" "$R"
$B mount --bind "$H" "$R/data"
$B mount --bind "$R/etc" "$R/mnt/ro"
$B mount -o remount,bind,ro "$R/mnt/ro"
$B mount -t tmpfs -o size=1m,mode=1777 tmpfs "$R/tmp"
echo "kept in tmpfs" >"$R/tmp/keep"
$B mkdir -p "$R/tmp/sub/dir"
echo nested >"$R/tmp/sub/dir/file"
$B mkdir -p "$R/dev/pts" "$R/dev/mqueue"
$B mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
$B mount -t mqueue mqueue "$R/dev/mqueue"
echo mounted >&2
# Files opened in this namespace before pivot_root would be on mounts that are gone afterwards.
exec 2>&1
cd "$R"
$B pivot_root . .
$B umount -l .
cd /
$B mount -t proc proc /proc
$B mount -t sysfs -o ro sysfs /sys
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo ready >/data/ready
# Like a container init: stdio and the program itself come from inside the new root.
exec </tmp/keep >>/tmp/out 2>&1
exec /bin/busybox sh -c "i=0; while :; do i=\$((i + 1)); echo \$i >/data/counter; /bin/busybox sleep 0.4; done"
'
setsid unshare --mount --pid --fork --propagation private setsid /bin/busybox sh -c "$SETUP" "$ROOT1" "$HOST" \
  </dev/null >/dev/null 2>&1 &
UNSHARE=$!
wait_for_file "$HOST/ready" || fail "setup failed: $(cat "$HOST/setup.err")"
TARGET_PID=$(pgrep -P "$UNSHARE" | head -1)
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$TARGET_PID/status" || fail "the container is not pid 1 of its namespace"
[[ "$(readlink "/proc/$TARGET_PID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]] || fail "no own mount namespace"
for _ in $(seq 100); do (($(cat "$HOST/counter" 2>/dev/null || echo 0) >= 3)) && break; sleep 0.05; done
BEFORE=$(mounts "$TARGET_PID")
echo "$BEFORE" | grep -q "^/tmp tmpfs" || fail "no tmpfs in the container: $BEFORE"
echo "$BEFORE" | grep -q "^/mnt/ro ext4 ro," || echo "$BEFORE" | grep -q "^/mnt/ro [a-z0-9]* ro," || fail "no ro bind: $BEFORE"

# Without the host directory marked external the dump refuses before freezing, naming it.
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK" -o refused.log 2>"$WORK/refused.err"; then
  fail "a dump with an unmarked host bind mount succeeded"
fi
grep -q "mount /data" "$WORK/refused.err" || fail "refusal does not name /data: $(cat "$WORK/refused.err")"
grep -qF -- "--external mnt[/data]:KEY" "$WORK/refused.err" || fail "refusal lacks the hint: $(cat "$WORK/refused.err")"
kill -0 "$TARGET_PID" || fail "the container died after the refused dump"
echo "ok: a host bind mount that is not external is refused with a hint"

# Without GNU tar (hidden from crshim by a bind mount of /dev/null) the tmpfs contents cannot be
# dumped: the dump fails naming the package, and the container runs on.
mkdir -p "$WORK/notar"
if unshare --mount --propagation private sh -c 'mount --bind /dev/null /usr/bin/tar && exec "$0" "$@"' \
  "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/notar" -o notar.log --external 'mnt[/data]:data' 2>"$WORK/notar.err"; then
  fail "a dump with tmpfs contents and no tar succeeded"
fi
grep -qF "find tar: GNU tar is needed for tmpfs contents; hint: install the tar package" "$WORK/notar.err" ||
  fail "unexpected error: $(cat "$WORK/notar.err")"
kill -0 "$TARGET_PID" || fail "the container died after the dump without tar"
echo "ok: without tar the dump fails with a hint"

just_written "$HOST/counter"
checkpoint "$WORK/img" --external 'mnt[/data]:data'
wait "$UNSHARE" 2>/dev/null || true
decode_all "$WORK/img"
ls "$WORK"/img/mountpoints-*.img >/dev/null || fail "no mountpoints image"
crit decode -i "$WORK"/img/mountpoints-*.img --pretty >"$WORK/mnts.json"
grep -q '"ext_key": "data"' "$WORK/mnts.json" || fail "no ext_key for /data"
ls "$WORK"/img/tmpfs-dev-*.tar.gz.img >/dev/null || fail "no tmpfs contents image"
tar -tzf "$WORK"/img/tmpfs-dev-*.tar.gz.img | grep -q '^./keep$' || fail "tmpfs image lacks ./keep"
echo "ok: dumped $(grep -c '"mnt_id"' "$WORK/mnts.json") mounts and the tmpfs contents"

# A restore failing once the mounts exist leaves no task and no mount behind.
ROOTF=$WORK/rootfs-fail
make_rootfs "$ROOTF"
if CRSHIM_FAULT=restore:mounts "$CRSHIM" restore -D "$WORK/img" -o restore-fail.log -v4 -d --root "$ROOTF" \
  --ext-mount-map "data:$HOST" 2>"$WORK/fail.err"; then
  fail "restore with fault restore:mounts succeeded"
fi
grep -q "injected failure" "$WORK/fail.err" || fail "unexpected error: $(cat "$WORK/fail.err")"
grep -q "Mount tree of pid" "$WORK/img/restore-fail.log" || fail "the fault came before the mounts were made"
[[ -z "$(tasks_in "$ROOTF")" ]] || fail "tasks left in the failed root: $(tasks_in "$ROOTF")"
[[ -z "$(leftovers)" ]] || fail "mounts left after the failed restore: $(leftovers)"
[[ ! -e "$ROOTF/tmp/keep" ]] || fail "tmpfs contents leaked into the rootfs directory"
echo "ok: a restore failing after the mounts leaves no task and no mount"

# A missing external path is refused before any task exists.
if "$CRSHIM" restore -D "$WORK/img" -o restore-noext.log -d --root "$ROOTF" 2>"$WORK/noext.err"; then
  fail "restore without the external mount's path succeeded"
fi
grep -qF "mnt[data]" "$WORK/noext.err" || fail "no hint for the external mount: $(cat "$WORK/noext.err")"
grep -qF "; hint: give --external mnt[data]:HOST_PATH (or --ext-mount-map data:HOST_PATH)" "$WORK/noext.err" ||
  fail "no hint for the external mount: $(cat "$WORK/noext.err")"
# An image with a mount namespace needs the directory of its root file system.
if "$CRSHIM" restore -D "$WORK/img" -o restore-noroot.log -d --ext-mount-map "data:$HOST" 2>"$WORK/noroot.err"; then
  fail "restore of a mount namespace without --root succeeded"
fi
grep -qF "the image holds a mount namespace; hint: give the directory of its root file system with --root DIR" \
  "$WORK/noroot.err" || fail "no hint for --root: $(cat "$WORK/noroot.err")"

# A symlink in the new rootfs cannot lead a mount out of it: /tmp -> /etc is the rootfs' own /etc.
ROOTS=$WORK/rootfs-symlink
make_rootfs "$ROOTS"
rmdir "$ROOTS/tmp"
ln -s /etc "$ROOTS/tmp"
restore_detached "$WORK/img" --root "$ROOTS" --external "mnt[data]:$HOST" --pidfile "$WORK/pid-symlink"
SYM_PID=$(cat "$WORK/pid-symlink")
mounts "$SYM_PID" | grep -q "^/etc tmpfs " || fail "the tmpfs is not on the rootfs' /etc: $(mounts "$SYM_PID")"
[[ "$(cat "/proc/$SYM_PID/root/etc/keep")" == "kept in tmpfs" ]] || fail "tmpfs contents not in the rootfs' /etc"
kill -9 "$SYM_PID"
for _ in $(seq 100); do kill -0 "$SYM_PID" 2>/dev/null || break; sleep 0.05; done
[[ -z "$(tasks_in "$ROOTS")" ]] || fail "tasks left in the symlinked root"
echo "ok: mount points are resolved inside the new root (a symlink to /etc stays in it)"

ROOT2=$WORK/rootfs2
make_rootfs "$ROOT2"
COUNT=$(cat "$HOST/counter")
restore_detached "$WORK/img" --root "$ROOT2" --external "mnt[data]:$HOST" --pidfile "$WORK/pid"
TARGET_PID=$(cat "$WORK/pid")
AFTER=$(mounts "$TARGET_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "mounts differ after restore:
--- before
$BEFORE
--- after
$AFTER"
echo "ok: the same $(echo "$AFTER" | wc -l) mounts (type, mount point, flags) after restore"
[[ "$(stat -c %d:%i "/proc/$TARGET_PID/root/")" == "$(stat -c %d:%i "$ROOT2")" ]] || fail "the root is not $ROOT2"
[[ "$(cat "/proc/$TARGET_PID/root/tmp/keep")" == "kept in tmpfs" ]] || fail "tmpfs file lost"
[[ "$(cat "/proc/$TARGET_PID/root/tmp/sub/dir/file")" == nested ]] || fail "nested tmpfs file lost"
[[ ! -e "$ROOT2/tmp/keep" ]] || fail "tmpfs contents were written into the rootfs directory"
[[ "$(cat "/proc/$TARGET_PID/root/mnt/ro/motd")" == "motd of the rootfs" ]] || fail "ro bind shows the wrong tree"
if touch "/proc/$TARGET_PID/root/mnt/ro/x" 2>/dev/null; then fail "the read-only bind is writable"; fi
echo "ok: tmpfs contents restored, the read-only bind is read-only"
sleep 1
C1=$(cat "$HOST/counter")
sleep 1
C2=$(cat "$HOST/counter")
((C1 > COUNT && C2 > C1)) || fail "the counter does not go on in the external dir: $COUNT -> $C1 -> $C2"
echo "ok: the counter goes on in the external /data ($COUNT -> $C1 -> $C2)"
[[ -z "$(leftovers)" ]] || fail "crshim left mounts on the host: $(leftovers)"

# The restored container is checkpointed again (RPC-style --ext-mount-map this time) and comes back once more.
just_written "$HOST/counter"
checkpoint "$WORK/img2" --ext-mount-map /data:data
for _ in $(seq 100); do kill -0 "$TARGET_PID" 2>/dev/null || break; sleep 0.05; done
ROOT3=$WORK/rootfs3
make_rootfs "$ROOT3"
COUNT=$(cat "$HOST/counter")
restore_detached "$WORK/img2" --root "$ROOT3" --ext-mount-map "data:$HOST" --pidfile "$WORK/pid2"
TARGET_PID=$(cat "$WORK/pid2")
AFTER=$(mounts "$TARGET_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "mounts differ after the second restore: $AFTER"
[[ "$(cat "/proc/$TARGET_PID/root/tmp/keep")" == "kept in tmpfs" ]] || fail "tmpfs file lost in the second restore"
sleep 1
(($(cat "$HOST/counter") > COUNT)) || fail "the counter stopped after the second restore"
echo "ok: dumped again after restore and restored once more"

kill -9 "$TARGET_PID"
for _ in $(seq 100); do kill -0 "$TARGET_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$TARGET_PID" 2>/dev/null && fail "the restored container did not die"
TARGET_PID=
[[ -z "$(tasks_in "$ROOT2")$(tasks_in "$ROOT3")" ]] || fail "tasks left in a root: $(tasks_in "$ROOT2") $(tasks_in "$ROOT3")"
[[ -z "$(leftovers)" ]] || fail "mounts left after the container died: $(leftovers)"
echo "ok: nothing left mounted once the restored container is gone"
