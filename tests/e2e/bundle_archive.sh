#!/bin/bash
# crshim's bundle mode archives and OCI hooks, no runtime in between:
# 1. a container on a plain rootfs is exported (--export) and restored from the archive (--import) by a
#    second bundle whose rootfs is a fresh copy: no rootfs changes travel, the ticker goes on there;
# 2. a container on an overlay rootfs writes a file and deletes one; the archive carries rootfs-diff.tar
#    and deleted.files, and a restore --import onto a NEW overlay over a fresh copy of the lower layer
#    brings both changes back before the program continues. That restore runs in the foreground, so
#    every OCI hook kind runs, in order, with the restored pid; container hooks in the container.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

FG_PID=  # a foreground restore's crshim
archive_cleanup() {
  stop_restored
  if [[ -n "$FG_PID" ]]; then wait "$FG_PID" 2>/dev/null || true; fi
  "${RUNC[@]}" delete -f "$ID" >/dev/null 2>&1
  umount -l "$BUNDLE/rootfs" 2>/dev/null
}
at_exit archive_cleanup
same_file() { [[ "$(stat -L -c %d:%i "$1")" == "$(stat -L -c %d:%i "$2")" ]]; }

# ---- 1. Plain rootfs: export, re-import on a fresh copy of the rootfs through a second bundle.
make_bundle "c['hostname'] = 'crshim-ctr'"
run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
pid=$(container_pid)
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img1" --work-path "$WORK/w1" --export "$WORK/plain.tar.gz" \
  -v4 "$pid" || fail "checkpoint --export failed: $(engine_log "$WORK/w1")"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
listing=$(tar -tzf "$WORK/plain.tar.gz") || fail "plain.tar.gz is not a gzip tar"
grep -qx checkpoint/pstree.img <<<"$listing" || fail "no checkpoint/pstree.img in the archive: $listing"
grep -qx spec.dump <<<"$listing" || fail "no spec.dump in the archive"
grep -q 'rootfs-diff.tar\|deleted.files' <<<"$listing" && fail "a plain rootfs exported rootfs changes: $listing"
BUNDLE2=$WORK/bundle2
mkdir -p "$BUNDLE2"
cp -a "$BUNDLE/rootfs" "$BUNDLE2/rootfs"
cp "$BUNDLE/config.json" "$BUNDLE2/config.json"
sleep 0.3
"$CRSHIM" restore --bundle "$BUNDLE2" --import "$WORK/plain.tar.gz" --work-path "$WORK/w2" --detach \
  --pid-file "$WORK/r1.pid" -v4 </dev/null > >(exec cat >"$WORK/out2") 2>"$WORK/r1.err" ||
  fail "restore --import on a fresh rootfs copy failed: $(cat "$WORK/r1.err") $(engine_log "$WORK/w2")"
RESTORED_PID=$(cat "$WORK/r1.pid")
note_cgroups
check_continues "$WORK/out1" "$WORK/out2"
same_file "/proc/$RESTORED_PID/root/bin/busybox" "$BUNDLE2/rootfs/bin/busybox" ||
  fail "the restored container's root is not the fresh copy $BUNDLE2/rootfs"
echo "ok: an exported archive re-imported on a fresh rootfs copy: the ticker goes on there"
stop_restored
rm -rf "$BUNDLE2"

# ---- 2. Overlay rootfs with every hook kind.
LOWER=$WORK/lower
mv "$BUNDLE/rootfs" "$LOWER"
mkdir -p "$BUNDLE/rootfs" "$WORK/up1" "$WORK/wk1" "$WORK/hooklog" "$LOWER/hooklog"
for applet in sed hostname rm; do ln -s busybox "$LOWER/bin/$applet"; done
echo lower >"$LOWER/etc/motd"
echo keep >"$LOWER/etc/keep"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$WORK/up1,workdir=$WORK/wk1" "$BUNDLE/rootfs" ||
  fail "cannot mount an overlay on $BUNDLE/rootfs"

# One hook script for every kind, in the rootfs (container hooks resolve their path there) and run from
# the host too: logs "KIND PID STATUS HOSTNAME" from the OCI state on stdin into its second argument.
cat >"$LOWER/bin/hook.sh" <<'HOOK'
#!/bin/sh
state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
status=$(echo "$state" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
echo "$1 $pid $status $(cat /proc/sys/kernel/hostname)" >>"$2"
HOOK
chmod +x "$LOWER/bin/hook.sh"
HOST_LOG=$WORK/hooklog/hooks.log
# shellcheck disable=SC2016 # expanded by the container's shell
PROGRAM='echo mine > /etc/written; rm /etc/motd; i=0; while true; do i=$((i+1)); echo "$i $(cat /etc/written) $(cat /etc/motd 2>/dev/null || echo nomotd)"; sleep 0.2; done'
python3 - "$BUNDLE/config.json" "$PROGRAM" "$WORK/hooklog" <<'PY'
import json, sys
p, program, hooklog = sys.argv[1:]
c = json.load(open(p))
c["process"]["args"] = ["sh", "-c", program]
c["root"]["readonly"] = False  # the program writes to its rootfs
c["mounts"].append({"destination": "/hooklog", "type": "bind", "source": hooklog, "options": ["rbind", "rw"]})
json.dump(c, open(p, "w"), indent=2)
PY
run_container "$WORK/out3"
wait_lines "$WORK/out3" 3
pid=$(container_pid)
[[ "$(sed -n 3p "$WORK/out3")" == "3 mine nomotd" ]] || fail "the container's program printed '$(sed -n 3p "$WORK/out3")'"
[[ -c "$WORK/up1/etc/motd" && -f "$WORK/up1/etc/written" ]] || fail "the overlay's upper dir does not hold the changes"
# The hooks are for the restore only: runc runs createContainer before its pivot_root, where a path
# resolves on the host, while a restored container's namespace has only the container's root.
python3 - "$BUNDLE/config.json" "$LOWER/bin/hook.sh" "$HOST_LOG" <<'PY'
import json, sys
p, host_hook, host_log = sys.argv[1:]
c = json.load(open(p))
hooks = {}
for kind in ("prestart", "createRuntime", "poststart", "poststop"):  # the runtime namespace: host paths
    hooks[kind] = [{"path": host_hook, "args": ["hook.sh", kind, host_log], "timeout": 10}]
for kind in ("createContainer", "startContainer"):  # the container namespace: container paths
    hooks[kind] = [{"path": "/bin/hook.sh", "args": ["hook.sh", kind, "/hooklog/hooks.log"], "timeout": 10}]
c["hooks"] = hooks
json.dump(c, open(p, "w"), indent=2)
PY
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img3" --work-path "$WORK/w3" --export "$WORK/overlay.tar" \
  -v4 "$pid" || fail "checkpoint --export of the overlay container failed: $(engine_log "$WORK/w3")"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
listing=$(tar -tf "$WORK/overlay.tar") || fail "overlay.tar is not a tar"
for want in checkpoint/pstree.img spec.dump rootfs-diff.tar deleted.files; do
  grep -qx "$want" <<<"$listing" || fail "the archive has no $want: $listing"
done
[[ "$(tar -xOf "$WORK/overlay.tar" deleted.files)" == '["/etc/motd"]' ]] ||
  fail "deleted.files is '$(tar -xOf "$WORK/overlay.tar" deleted.files)'"
diff_listing=$(tar -xOf "$WORK/overlay.tar" rootfs-diff.tar | tar -t) || fail "rootfs-diff.tar is not a tar"
grep -qx etc/written <<<"$diff_listing" || fail "rootfs-diff.tar has no etc/written: $diff_listing"
grep -q motd <<<"$diff_listing" && fail "rootfs-diff.tar carries the whiteout: $diff_listing"
grep -q "Rootfs diff of .*: [0-9]* entries, 1 deleted" "$WORK/w3/dump.log" || fail "dump.log does not report the rootfs diff"
echo "ok: checkpoint --export of an overlay rootfs: rootfs-diff.tar has etc/written, deleted.files is [\"/etc/motd\"]"

# A NEW overlay over a fresh copy of the lower layer: it has /etc/motd and no /etc/written.
umount "$BUNDLE/rootfs" || fail "umount of the first overlay failed"
cp -a "$LOWER" "$WORK/lower2"
mkdir -p "$WORK/up2" "$WORK/wk2"
mount -t overlay overlay -o "lowerdir=$WORK/lower2,upperdir=$WORK/up2,workdir=$WORK/wk2" "$BUNDLE/rootfs" ||
  fail "cannot mount the new overlay"
[[ -f "$BUNDLE/rootfs/etc/motd" && ! -e "$BUNDLE/rootfs/etc/written" ]] || fail "the new overlay is not a fresh rootfs"
rm -f "$HOST_LOG"
sleep 0.3

# Foreground restore (no --detach): crshim stays until the container's init exits, then runs poststop.
"$CRSHIM" restore --bundle "$BUNDLE" --import "$WORK/overlay.tar" --work-path "$WORK/w4" --pid-file "$WORK/r2.pid" \
  -v4 </dev/null > >(exec cat >"$WORK/out4") 2>"$WORK/r2.err" &
FG_PID=$!
for _ in $(seq 200); do [[ -s "$WORK/r2.pid" ]] && break; kill -0 "$FG_PID" 2>/dev/null || break; sleep 0.05; done
[[ -s "$WORK/r2.pid" ]] || fail "foreground restore --import wrote no pid file: $(cat "$WORK/r2.err") $(engine_log "$WORK/w4")"
RESTORED_PID=$(cat "$WORK/r2.pid")
note_cgroups
wait_lines "$WORK/out4" 3
last=$(tail -1 "$WORK/out3" | cut -d' ' -f1)
[[ "$(sed -n 1p "$WORK/out4")" == "$((last + 1)) mine nomotd" ]] ||
  fail "the restored program printed '$(sed -n 1p "$WORK/out4")' first, expected '$((last + 1)) mine nomotd'"
[[ "$(cat "$BUNDLE/rootfs/etc/written")" == mine && ! -e "$BUNDLE/rootfs/etc/motd" ]] ||
  fail "the new rootfs does not show the imported changes"
[[ "$(cat "$BUNDLE/rootfs/etc/keep")" == keep ]] || fail "an unchanged file of the lower layer is gone"
echo "ok: restore --import onto a new overlay: the program sees its written file and not the deleted one"

kill -9 "$RESTORED_PID"
rc=0
wait "$FG_PID" || rc=$?
FG_PID=
((rc == 137)) || fail "foreground restore exited $rc after its init was killed, expected 137: $(cat "$WORK/r2.err")"
# The hook log: host hooks wrote it directly, container hooks through the /hooklog bind mount.
host_name=$(cat /proc/sys/kernel/hostname)
expected="prestart $RESTORED_PID creating $host_name
createRuntime $RESTORED_PID creating $host_name
createContainer $RESTORED_PID created crshim-ctr
startContainer $RESTORED_PID created crshim-ctr
poststart $RESTORED_PID running $host_name
poststop $RESTORED_PID stopped $host_name"
[[ "$(cat "$HOST_LOG")" == "$expected" ]] || fail "hooks ran as:
$(cat "$HOST_LOG")
expected:
$expected"
echo "ok: prestart, createRuntime, createContainer, startContainer (in the container), poststart, poststop ran in order with pid $RESTORED_PID"
RESTORED_PID=
stop_restored

# A failing startContainer hook stops the container and fails the restore; poststop still runs.
python3 - "$BUNDLE/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
rm -f "$HOST_LOG"
if "$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img3" --work-path "$WORK/w5" --detach \
  --pid-file "$WORK/r3.pid" -v4 </dev/null >/dev/null 2>"$WORK/r3.err"; then
  RESTORED_PID=$(cat "$WORK/r3.pid" 2>/dev/null)
  fail "a restore whose startContainer hook failed succeeded"
fi
grep -q "OCI hook startContainer\[0\] /bin/sh: exit status 7" "$WORK/r3.err" || fail "unexpected error: $(cat "$WORK/r3.err")"
grep -q "^poststop [0-9]* stopped" "$HOST_LOG" || fail "poststop did not run after the failed start: $(cat "$HOST_LOG")"
stopped_pid=$(sed -n 's/^poststop \([0-9]*\) .*/\1/p' "$HOST_LOG")
for _ in $(seq 40); do kill -0 "$stopped_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$stopped_pid" 2>/dev/null && fail "the container $stopped_pid still runs after its startContainer hook failed"
echo "ok: a failing startContainer hook fails the restore, the container is gone, poststop ran"
