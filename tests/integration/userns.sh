#!/bin/bash
# A tree in a user namespace of its own (root inside mapped to 100000 outside, as a rootless or
# userns-remapped container has it), with its own pid namespace: dumped with the namespace's maps,
# restored into a new user namespace with the same maps, ids as the namespace sees them.
source "$(dirname "$0")/lib.sh"
USERNS_PROGRAMS=(tp_tree tp_creds)
source "$(dirname "$0")/lib_userns.sh"

maps_of() { echo "uid: $(tr -s ' ' </proc/"$1"/uid_map) gid: $(tr -s ' ' </proc/"$1"/gid_map)"; }

READY=$WORK/tree.ready RESULT=$WORK/tree.result
in_userns pid "$WORK/tree.out" "$PROGRAMS/tp_tree" "$READY" "$RESULT"
wait_for_file "$READY"
TARGET_PID=$(userns_task)
MAPS=$(maps_of "$TARGET_PID")
IDS=$(grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$TARGET_PID/status")
checkpoint "$WORK/img"
[[ -f "$WORK/img/userns-$(crit decode -i "$WORK/img/ids-1.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["user_ns_id"])').img" ]] ||
  fail "no userns image was written"
crit decode -i "$WORK"/img/userns-*.img | grep -q '"lower_first": 100000' || fail "the userns image lacks the map: $(crit decode -i "$WORK"/img/userns-*.img)"
# Ids in the images are the namespace's: the program runs as root inside.
crit decode -i "$WORK/img/core-1.img" | grep -q '"uid": 0' || fail "the core image does not hold the namespace's uid 0"
restore_detached "$WORK/img" --pidfile "$WORK/pid"
TARGET_PID=$(cat "$WORK/pid")
[[ "$(readlink "/proc/$TARGET_PID/ns/user")" != "$(readlink /proc/self/ns/user)" ]] || fail "restored into our own user namespace"
[[ "$(maps_of "$TARGET_PID")" == "$MAPS" ]] || fail "maps differ: $(maps_of "$TARGET_PID"), was $MAPS"
[[ "$(grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$TARGET_PID/status")" == "$IDS" ]] ||
  fail "ids differ: $(grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$TARGET_PID/status") was $IDS"
echo "ok: a tree in its own user and pid namespaces ($MAPS) restored with the same maps and ids"

# 1b. The same images restored into an existing user namespace (--join-ns user:PID, as a runtime that
#     made the namespace asks), that of the tree restored above: the new tree's pid namespace belongs
#     to it, and both trees live side by side (each is pid 1 of its own pid namespace).
HOLDER=$TARGET_PID
at_exit 'kill -9 $HOLDER 2>/dev/null'
restore_detached "$WORK/img" --pidfile "$WORK/pid" --join-ns "user:$HOLDER"
TARGET_PID=$(cat "$WORK/pid")
[[ $TARGET_PID != "$HOLDER" ]] || fail "the second restore gave the same host pid"
[[ "$(readlink "/proc/$TARGET_PID/ns/user")" == "$(readlink "/proc/$HOLDER/ns/user")" ]] || fail "not in the joined user namespace"
[[ "$(readlink "/proc/$TARGET_PID/ns/pid")" != "$(readlink "/proc/$HOLDER/ns/pid")" ]] || fail "no pid namespace of its own"
[[ "$(grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$TARGET_PID/status")" == "$IDS" ]] ||
  fail "ids differ in the joined namespace: $(grep -E '^(Uid|Gid|Groups|CapEff):' "/proc/$TARGET_PID/status") was $IDS"
python3 - "$TARGET_PID" "$HOLDER" <<'PY' || fail "the tree's pid namespace is not owned by the joined user namespace"
import fcntl, os, sys
NS_GET_USERNS = 0xb701
pidns = os.open("/proc/%s/ns/pid" % sys.argv[1], os.O_RDONLY)
owner = os.fstat(fcntl.ioctl(pidns, NS_GET_USERNS)).st_ino
sys.exit(owner != os.stat("/proc/%s/ns/user" % sys.argv[2]).st_ino)
PY
kill -9 "$TARGET_PID"
# As runc restores a container whose config names a user namespace path: also --restore-sibling.
restore_detached "$WORK/img" --pidfile "$WORK/pid" --join-ns "user:$HOLDER" --restore-sibling
TARGET_PID=$(cat "$WORK/pid")
[[ "$(readlink "/proc/$TARGET_PID/ns/user")" == "$(readlink "/proc/$HOLDER/ns/user")" ]] || fail "not in the joined user namespace (sibling)"
[[ "$(ps -o ppid= -p "$TARGET_PID" | tr -d ' ')" == "$$" ]] || fail "the sibling restore's root is not the restoring shell's child"
kill -9 "$HOLDER"
finish_and_check
echo "ok: the same tree restored into the user namespace of pid $HOLDER, which owns its new pid namespace (also with --restore-sibling)"

# 2. Credentials that are not root inside (uid/gid 1000 keeping one capability, no_new_privs, a seccomp
#    filter), dumped twice: the restored tree is dumped and restored again.
READY=$WORK/creds.ready RESULT=$WORK/creds.result
in_userns pid "$WORK/creds.out" "$PROGRAMS/tp_creds" "$READY" "$RESULT"
wait_for_file "$READY"
TARGET_PID=$(userns_task)
IDS=$(grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs|Seccomp):' "/proc/$TARGET_PID/status")
grep -q "^Uid:.*101000" <<<"$IDS" || fail "tp_creds is not uid 1000 inside: $IDS"
checkpoint "$WORK/img-creds"
crit decode -i "$WORK/img-creds/core-1.img" | grep -q '"uid": 1000' || fail "the core image does not hold the namespace's uid 1000"
for round in 1 2; do
  restore_detached "$WORK/img-creds" --pidfile "$WORK/pid-creds"
  TARGET_PID=$(cat "$WORK/pid-creds")
  [[ "$(grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs|Seccomp):' "/proc/$TARGET_PID/status")" == "$IDS" ]] ||
    fail "credentials differ after restore $round: $(grep -E '^(Uid|Gid|Groups|Cap...)' "/proc/$TARGET_PID/status") was $IDS"
  ((round == 2)) || checkpoint "$WORK/img-creds"
done
finish_and_check
echo "ok: uid 1000 inside (101000 outside) with a capability and a seccomp filter, restored twice"

# 2b. A restore that fails once the user namespace and part of the tree exist leaves no task of it.
in_userns pid "$WORK/fail.out" "$PROGRAMS/tp_tree" "$WORK/fail.ready" "$WORK/fail.result"
wait_for_file "$WORK/fail.ready"
TARGET_PID=$(userns_task)
checkpoint "$WORK/img-fail"
for _ in $(seq 100); do pgrep -f "tp_tree $WORK/fail.ready" >/dev/null || break; sleep 0.05; done  # the dumped tree is gone
for point in restore:task-forked:3 restore:before-resume; do
  if CRSHIM_FAULT=$point "$CRSHIM" restore -D "$WORK/img-fail" -o restore-fault.log -d 2>"$WORK/err"; then
    fail "the fault point $point did not fail the restore"
  fi
  grep -q "fault point ${point%:[0-9]*}: injected failure" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
  if pgrep -f "tp_tree $WORK/fail.ready" >/dev/null; then fail "a task of the restore failed at $point is alive"; fi
done
echo "ok: restores failing at restore:task-forked:3 and restore:before-resume leave no task in a user namespace"

# 2c. A cwd below a directory the task's uid may not search (root's 0700 directory, as a checkout
#     can be): the restore gets the task there all the same (fchdir to a directory opened outside).
mkdir -m 0700 "$WORK/locked"
mkdir -m 0777 "$WORK/locked/inside"
USERNS_CWD=$WORK/locked/inside in_userns pid "$WORK/cwd.out" "$PROGRAMS/tp_tree" "$WORK/cwd.ready" "$WORK/cwd.result"
wait_for_file "$WORK/cwd.ready"
TARGET_PID=$(userns_task)
READY=$WORK/cwd.ready RESULT=$WORK/cwd.result
[[ "$(readlink "/proc/$TARGET_PID/cwd")" == "$WORK/locked/inside" ]] || fail "tp_tree runs in $(readlink "/proc/$TARGET_PID/cwd")"
checkpoint "$WORK/img-cwd"
wait "$LAUNCHER" 2>/dev/null || true
restore_detached "$WORK/img-cwd" --pidfile "$WORK/pid-cwd"
TARGET_PID=$(cat "$WORK/pid-cwd")
[[ "$(readlink "/proc/$TARGET_PID/cwd")" == "$WORK/locked/inside" ]] || fail "restored into $(readlink "/proc/$TARGET_PID/cwd")"
finish_and_check
echo "ok: a task of uid 100000 restored into its cwd below a 0700 directory of root's"

# 3. A container in its own user namespace: mount, pid, UTS, IPC and network namespaces owned by it,
#    pivot_root into a busybox rootfs, a bind mount of a host directory, a tmpfs holding a file, proc
#    and sysfs. Restored with --root on a fresh copy of the rootfs.
source "$(dirname "$0")/lib_container.sh"
[[ -x /bin/busybox ]] || fail "/bin/busybox is needed (package busybox-static)"
HOST=$WORK/hostdata
mkdir -p "$HOST" && chmod 0777 "$HOST"
ROOT1=$WORK/rootfs1
make_rootfs "$ROOT1"
SETUP='
set -e
R=$0 H=$1
exec 2>"$H/setup.err"
B=/bin/busybox
$B hostname userns-box
$B mount --bind "$R" "$R"
$B mount --bind "$H" "$R/data"
$B mount -t tmpfs -o size=1m,mode=1777 tmpfs "$R/tmp"
echo "kept in tmpfs" >"$R/tmp/keep"
# Before the old root goes: in a user namespace proc and sysfs mount only where they are fully visible.
$B mount -t proc proc "$R/proc"
$B mount -t sysfs -o ro sysfs "$R/sys"
cd "$R"
$B pivot_root . .
$B umount -l .
cd /
echo ready >/data/ready
exec </tmp/keep >>/tmp/out 2>&1
exec /bin/busybox sh -c "i=0; while :; do i=\$((i + 1)); echo \$i >/data/counter; /bin/busybox sleep 0.4; done"
'
in_userns "pid mnt uts ipc net" "$WORK/box.out" /bin/busybox sh -c "$SETUP" "$ROOT1" "$HOST"
for _ in $(seq 200); do [[ -e "$HOST/ready" || -s "$HOST/setup.err" ]] && break; sleep 0.05; done
[[ -e "$HOST/ready" ]] || fail "setup failed: $(cat "$HOST/setup.err" "$WORK/box.out" 2>/dev/null)"
TARGET_PID=$(userns_task)
view() {
  echo "hostname: $(nsenter --uts --target "$1" hostname)"
  echo "ids: $(grep -E '^(Uid|Gid):' "/proc/$1/status" | tr -s '\t\n' ' ')"
  echo "maps: $(maps_of "$1")"
  mounts "$1" | sed 's/^/mount: /'
}
BEFORE=$(view "$TARGET_PID")
just_written "$HOST/counter"
checkpoint "$WORK/img-box" --external 'mnt[/data]:data'
wait "$LAUNCHER" 2>/dev/null || true
decode_all "$WORK/img-box"
ROOT2=$WORK/rootfs2
make_rootfs "$ROOT2"
COUNT=$(cat "$HOST/counter")
restore_detached "$WORK/img-box" --root "$ROOT2" --external "mnt[data]:$HOST" --pidfile "$WORK/pid-box"
TARGET_PID=$(cat "$WORK/pid-box")
AFTER=$(view "$TARGET_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "the container differs after restore:
--- before
$BEFORE
--- after
$AFTER"
for ns in user mnt pid uts ipc net; do
  [[ "$(readlink "/proc/$TARGET_PID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]] || fail "restored into our $ns namespace"
done
[[ "$(cat "/proc/$TARGET_PID/root/tmp/keep")" == "kept in tmpfs" ]] || fail "tmpfs file lost"
sleep 1
(($(cat "$HOST/counter") > COUNT)) || fail "the counter does not go on: $COUNT -> $(cat "$HOST/counter")"
echo "ok: a container in its own user namespace restored with --root: $(mounts "$TARGET_PID" | wc -l) mounts, ids and maps as before; its counter goes on"
kill -9 "$TARGET_PID"
for _ in $(seq 100); do kill -0 "$TARGET_PID" 2>/dev/null || break; sleep 0.05; done
TARGET_PID=
[[ -z "$(leftovers)" ]] || fail "mounts left on the host: $(leftovers)"
echo "ok: nothing of the container is left on the host"
