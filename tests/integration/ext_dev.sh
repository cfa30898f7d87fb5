#!/bin/bash
# External block devices: a hand-made container (own mount and pid namespace, pivot_root'ed) keeps its
# counter on an ext4 file system of a loop device. Its dump is refused until the device is named with
# --external dev[MAJOR/MINOR]:NAME (the message says so); the images then hold the mount as CRIU does
# (fstype AUTO, fsname ext4, source dev[NAME]); a restore without --external dev[NAME]:DEVICE is refused
# with the key to give and leaves nothing behind; with it, the file system is mounted again from the
# device under --root and the counter goes on in the same file.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"
[[ -x /bin/busybox ]] || fail "/bin/busybox is needed (package busybox-static)"
command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is needed (package e2fsprogs)"
source "$(dirname "$0")/lib_container.sh"

# The host's own view of the disk lives outside $WORK: leftovers() reports any mount under $WORK.
DISK=$WORK/disk.img HOSTVIEW=$(mktemp -d /tmp/crshim-extdev.XXXXXX) LOOP=""
truncate -s 16M "$DISK"
mkfs.ext4 -q -F "$DISK" || fail "mkfs.ext4"
LOOP=$(losetup --find --show "$DISK") || fail "losetup"
# The killed target must let go of the file system before it can be unmounted.
at_exit 'sleep 0.2; umount "$HOSTVIEW" 2>/dev/null && rmdir "$HOSTVIEW"; [[ -z $LOOP ]] || losetup -d "$LOOP" 2>/dev/null'
# The host watches the same superblock the container writes on.
mount "$LOOP" "$HOSTVIEW" || fail "mount $LOOP"
mkdir -p "$HOSTVIEW/store"
DEVNO=$(printf '%d/%d' "0x$(stat -c %t "$LOOP")" "0x$(stat -c %T "$LOOP")")

ROOT1=$WORK/rootfs1
make_rootfs "$ROOT1"

# Runs as pid 1 of the new pid namespace, in a private copy of our mount namespace.
SETUP='
set -e
R=$0 DEV=$1
B=/bin/busybox
$B mount --bind "$R" "$R"
$B mount -t ext4 "$DEV" "$R/data"
$B mount --bind "$R/data/store" "$R/mnt/ro"
cd "$R"
$B pivot_root . .
$B umount -l .
cd /
$B mount -t proc proc /proc
echo ready >/data/ready
exec </data/ready >>/data/out 2>&1
exec /bin/busybox sh -c "i=0; while :; do i=\$((i + 1)); echo \$i >/mnt/ro/counter; /bin/busybox sleep 0.4; done"
'
setsid unshare --mount --pid --fork --propagation private setsid /bin/busybox sh -c "$SETUP" "$ROOT1" "$LOOP" \
  </dev/null >"$WORK/setup.out" 2>&1 &
UNSHARE=$!
wait_for_file "$HOSTVIEW/ready" || fail "setup failed: $(cat "$WORK/setup.out")"
TARGET_PID=$(pgrep -P "$UNSHARE" | head -1)
[[ -n $TARGET_PID ]] || fail "no container init under $UNSHARE"
for _ in $(seq 100); do (($(cat "$HOSTVIEW/store/counter" 2>/dev/null || echo 0) >= 3)) && break; sleep 0.05; done
BEFORE=$(mounts "$TARGET_PID")
grep -q "^/data ext4 " <<<"$BEFORE" || fail "no ext4 on /data in the container: $BEFORE"
grep -q "^/mnt/ro ext4 " <<<"$BEFORE" || fail "no bind of the ext4 on /mnt/ro: $BEFORE"

# 1. Without the device named: refused before freezing, with the key to give.
mkdir -p "$WORK/refused"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump.log 2>"$WORK/err"; then fail "dumped an unnamed ext4 mount"; fi
grep -qF -- "ext4 mounts cannot be restored" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -qF -- "--external dev[$DEVNO]:NAME" "$WORK/err" || fail "the error does not name dev[$DEVNO]: $(cat "$WORK/err")"
kill -0 "$TARGET_PID" || fail "the refused dump killed the container"
echo "ok: an ext4 mount is refused with the device key to give (dev[$DEVNO])"

# 2. Named: the images hold it as CRIU does.
just_written "$HOSTVIEW/store/counter"
checkpoint "$WORK/img" --external "dev[$DEVNO]:disk"
decode_all "$WORK/img"
entry=$(crit decode -i "$WORK"/img/mountpoints-*.img | python3 -c "
import json, sys
for e in json.load(sys.stdin)['entries']:
    if e['mountpoint'] == '/data': print(e['fstype'], e.get('fsname'), e['source'])")
[[ $entry == "16 ext4 dev[disk]" ]] || fail "mountpoints image has /data as '$entry', expected fstype 16 (AUTO), fsname ext4, source dev[disk]"
COUNT=$(cat "$HOSTVIEW/store/counter")
wait "$UNSHARE" 2>/dev/null || true
TARGET_PID=""

# 3. Restore without the device: refused with the key, nothing left.
ROOT2=$WORK/rootfs2
make_rootfs "$ROOT2"
if "$CRSHIM" restore -D "$WORK/img" --root "$ROOT2" -d -o restore-nodev.log 2>"$WORK/err"; then fail "restored without the device"; fi
grep -qF -- "--external dev[disk]:DEVICE_PATH" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
[[ -z "$(tasks_in "$ROOT2")" ]] || fail "the refused restore left tasks in the root"
[[ -z "$(leftovers)" ]] || fail "the refused restore left: $(leftovers)"
echo "ok: a restore without --external dev[disk]:DEVICE is refused, leaving nothing"

# 4. Restore with the device: same mounts, the counter goes on in the same file.
"$CRSHIM" restore -D "$WORK/img" --root "$ROOT2" -d -o restore.log -v4 --external "dev[disk]:$LOOP" ||
  fail "restore failed: $(tail -3 "$WORK/img/restore.log")"
TARGET_PID=""
for p in $(tasks_in "$ROOT2"); do  # the restored init: pid 1 of its namespace
  grep -q "^NSpid:.*[[:space:]]1$" "/proc/$p/status" && TARGET_PID=$p
done
[[ -n $TARGET_PID ]] || fail "no restored task in $ROOT2"
AFTER=$(mounts "$TARGET_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "mounts differ after restore:
before: $BEFORE
after:  $AFTER"
for _ in $(seq 100); do (($(cat "$HOSTVIEW/store/counter" 2>/dev/null || echo 0) > COUNT)) && break; sleep 0.05; done
(($(cat "$HOSTVIEW/store/counter") > COUNT)) || fail "the counter stopped at $COUNT"
kill -9 "$TARGET_PID"
for _ in $(seq 100); do [[ -z "$(tasks_in "$ROOT2")" ]] && break; sleep 0.05; done
TARGET_PID=""
[[ -z "$(leftovers)" ]] || fail "leftovers: $(leftovers)"
echo "ok: restored with --external dev[disk]:$LOOP; the counter went on from $COUNT on the same ext4"
