#!/bin/bash
# crshim's own OCI bundle mode, no runtime in between: a busybox ticker started by `runc run -d` is
# checkpointed with `crshim checkpoint --bundle` and restored with `crshim restore --bundle --detach` onto
# new stdio pipes; the ticker goes on there and the bundle's OCI hooks run in order with the restored pid.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

HOOKS_LOG=$WORK/hooks.log
RESTORED_PID=
# One hook script for every kind: logs "KIND PID STATUS" from the OCI state on its stdin.
cat >"$WORK/hook.sh" <<HOOK
#!/bin/sh
state=\$(cat)
pid=\$(echo "\$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
status=\$(echo "\$state" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
bundle=\$(echo "\$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
echo "\$1 \$pid \$status \$bundle" >>"$HOOKS_LOG"
HOOK
chmod +x "$WORK/hook.sh"
make_bundle \
  "c['hooks'] = {k: [{'path': '$WORK/hook.sh', 'args': ['hook.sh', k], 'timeout': 10}] for k in ('prestart', 'createRuntime', 'poststart')}"

(cd "$BUNDLE" && "${RUNC[@]}" run -d "$ID" </dev/null > >(exec cat >"$WORK/out1") 2>&1) || fail "runc run failed"
[[ "$(container_status)" == running ]] || fail "container is not running after runc run"
wait_lines "$WORK/out1" 3
pid=$(container_pid)
rm -f "$HOOKS_LOG"  # runc ran the hooks at start; only the restore's count below

# A wrong pid is refused before anything is frozen.
if "$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/bad" $$ 2>"$WORK/bad.err"; then
  fail "checkpoint of a pid outside the bundle succeeded"
fi
grep -q "its root directory is not the bundle's rootfs" "$WORK/bad.err" || fail "unexpected error: $(cat "$WORK/bad.err")"
kill -0 "$pid" || fail "the container died from a refused checkpoint"
echo "ok: checkpoint --bundle refuses a pid that is not the bundle's container"

# 1. --leave-running: images written, container still ticking.
echo "$pid" >"$WORK/container.pid"
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img0" --work-path "$WORK/w0" --leave-running -v4 \
  --pid-file "$WORK/container.pid" ||
  fail "crshim checkpoint --leave-running failed: $(engine_log "$WORK/w0")"
before=$(wc -l <"$WORK/out1")
wait_lines "$WORK/out1" $((before + 3))
[[ -f "$WORK/img0/pstree.img" ]] || fail "no images after --leave-running"
echo "ok: checkpoint --bundle --leave-running, the container keeps ticking"

# 2. Checkpoint: the container's tasks are gone; runc still has its state, so delete it.
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w1" -v4 "$pid" ||
  fail "crshim checkpoint failed: $(engine_log "$WORK/w1")"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "container init $pid still runs after the checkpoint"
grep -q 'pipe:\[' "$WORK/img/descriptors.json" || fail "descriptors.json has no pipe: $(cat "$WORK/img/descriptors.json")"
grep -q '/sys/fs/cgroup/' "$WORK/img/crshim-oci.json" || fail "no cgroup mounts recorded: $(cat "$WORK/img/crshim-oci.json")"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
echo "ok: checkpoint --bundle, container gone ($(cat "$WORK/img/descriptors.json"))"
sleep 0.3

# A bundle that grants other capabilities than the checkpointed init has is refused before any task exists.
OTHER=$WORK/other-bundle
mkdir -p "$OTHER"
python3 - "$BUNDLE/config.json" "$OTHER/config.json" "$(realpath "$BUNDLE/rootfs")" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[3]
c["process"]["capabilities"]["effective"] = [x for x in c["process"]["capabilities"]["effective"] if x != "CAP_KILL"]
json.dump(c, open(sys.argv[2], "w"))
PY
if "$CRSHIM" restore --bundle "$OTHER" --image-path "$WORK/img" --work-path "$WORK/w-other" --detach </dev/null \
  >/dev/null 2>"$WORK/other.err"; then
  fail "a bundle with other capabilities restored"
fi
grep -q "process.capabilities.effective: the bundle grants 0x[0-9a-f]* but the checkpointed init has" "$WORK/other.err" ||
  fail "capability mismatch error: $(cat "$WORK/other.err")"
echo "ok: a bundle granting other capabilities than the checkpointed init's is refused"

# 3. Restore --detach onto new stdio pipes.
"$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w2" --detach \
  --pid-file "$WORK/restored.pid" -v4 </dev/null > >(exec cat >"$WORK/out2") 2>"$WORK/restore.err" ||
  fail "crshim restore failed: $(cat "$WORK/restore.err") $(engine_log "$WORK/w2")"
RESTORED_PID=$(cat "$WORK/restored.pid")
note_cgroups
check_continues "$WORK/out1" "$WORK/out2"
bundle_real=$(realpath "$BUNDLE")
expected="prestart $RESTORED_PID creating $bundle_real
createRuntime $RESTORED_PID creating $bundle_real
poststart $RESTORED_PID running $bundle_real"
[[ "$(cat "$HOOKS_LOG")" == "$expected" ]] || fail "hooks ran as: $(cat "$HOOKS_LOG"), expected: $expected"
echo "ok: OCI hooks prestart, createRuntime, poststart ran in order with the restored pid $RESTORED_PID"
[[ "$(readlink "/proc/$RESTORED_PID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]] || fail "restored init shares our mount namespace"
grep -q ":/$ID\$" "/proc/$RESTORED_PID/cgroup" || fail "restored init is not in the container's cgroups: $(cat "/proc/$RESTORED_PID/cgroup")"
echo "ok: restored init $RESTORED_PID in its own mount namespace and back in the container's cgroups"

# 4. A terminal container in an external network namespace with a host directory bound on /data: the
# restore hands the new pty master to --console-socket, rejoins the netns and binds /data again.
stop_restored
NETNS=crshim-e2e-$$
ip netns add "$NETNS" || fail "ip netns add $NETNS failed"
E2E_NETNS+=("$NETNS")
mkdir -p "$WORK/data"
echo before >"$WORK/data/seed"
python3 - "$BUNDLE/config.json" "$NETNS" "$WORK/data" <<'PY'
import json, sys
p, netns, data = sys.argv[1:]
c = json.load(open(p))
c["process"]["terminal"] = True
c["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network", "path": "/run/netns/" + netns}
                            for n in c["linux"]["namespaces"]]
c["mounts"].append({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]})
json.dump(c, open(p, "w"), indent=2)
PY
python3 "$SRC/tests/e2e/console_receiver.py" "$WORK/console.sock" "$WORK/con" &
E2E_PIDS+=($!)
wait_for_file "$WORK/console.sock"
(cd "$BUNDLE" && "${RUNC[@]}" run -d --console-socket "$WORK/console.sock" "$ID" </dev/null >"$WORK/run.out" 2>&1) ||
  fail "runc run of the terminal container failed: $(cat "$WORK/run.out")"
wait_for_file "$WORK/con1.name"
wait_lines "$WORK/con1.out" 3
pid=$(container_pid)
netns_ino=$(stat -L -c %i "/run/netns/$NETNS")
[[ "$(readlink "/proc/$pid/ns/net")" == "net:[$netns_ino]" ]] || fail "container is not in $NETNS"
rm -f "$HOOKS_LOG"

"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img3" --work-path "$WORK/w3" -v4 "$pid" ||
  fail "crshim checkpoint of the terminal container failed: $(engine_log "$WORK/w3")"
grep -q "External net\[$netns_ino\]:extRootNetNS" "$WORK/w3/dump.log" || fail "dump.log does not name the external netns"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
sleep 0.3
echo "ok: checkpoint --bundle of a terminal container in netns $NETNS"

# Without --console-socket a terminal container is refused before anything is made.
if "$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img3" --work-path "$WORK/w4x" --detach 2>"$WORK/noconsole.err"; then
  fail "restore of a terminal container without --console-socket succeeded"
fi
grep -q "needs --console-socket" "$WORK/noconsole.err" || fail "unexpected error: $(cat "$WORK/noconsole.err")"

"$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img3" --work-path "$WORK/w4" --detach \
  --console-socket "$WORK/console.sock" --pid-file "$WORK/restored2.pid" -v4 </dev/null >"$WORK/restore2.out" 2>&1 ||
  fail "crshim restore of the terminal container failed: $(cat "$WORK/restore2.out") $(engine_log "$WORK/w4")"
RESTORED_PID=$(cat "$WORK/restored2.pid")
note_cgroups
wait_for_file "$WORK/con2.name"
[[ "$(cat "$WORK/con2.name")" == orphan-pts-master ]] || fail "console socket got '$(cat "$WORK/con2.name")'"
check_continues "$WORK/con1.out" "$WORK/con2.out"
[[ "$(readlink "/proc/$RESTORED_PID/fd/1")" == /dev/pts/* ]] || fail "restored init's stdout is $(readlink "/proc/$RESTORED_PID/fd/1")"
echo "ok: restore --bundle --console-socket: the new master reached the console socket, the ticker goes on there"
[[ "$(readlink "/proc/$RESTORED_PID/ns/net")" == "net:[$netns_ino]" ]] ||
  fail "restored init is in $(readlink "/proc/$RESTORED_PID/ns/net"), not net:[$netns_ino]"
[[ "$(nsenter -t "$RESTORED_PID" -m cat /data/seed)" == before ]] || fail "/data does not show the host directory"
nsenter -t "$RESTORED_PID" -m sh -c 'echo after > /data/written' || fail "/data is not writable after restore"
[[ "$(cat "$WORK/data/written")" == after ]] || fail "a write to /data did not reach the host directory"
echo "ok: restored init back in netns $NETNS, /data bound from the host directory and writable"

# 5. Archives: the restored container is checkpointed again into a podman-layout archive (--export) and
# restored from it (--import) without an image directory of our own.
old_pid=$RESTORED_PID
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img5" --work-path "$WORK/w5" --export "$WORK/ckpt.tar.gz" \
  -v4 "$old_pid" || fail "crshim checkpoint --export failed: $(engine_log "$WORK/w5")"
for _ in $(seq 100); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$old_pid" 2>/dev/null && fail "restored init $old_pid still runs after its checkpoint"
listing=$(tar -tzf "$WORK/ckpt.tar.gz") || fail "the archive is not a gzip tar"
for want in checkpoint/pstree.img checkpoint/descriptors.json checkpoint/crshim-oci.json spec.dump; do
  grep -qx "$want" <<<"$listing" || fail "the archive has no $want: $listing"
done
echo "ok: checkpoint --bundle --export wrote checkpoint/ and spec.dump into a .tar.gz"
sleep 0.3
"$CRSHIM" restore --bundle "$BUNDLE" --import "$WORK/ckpt.tar.gz" --work-path "$WORK/w6" --detach \
  --console-socket "$WORK/console.sock" --pid-file "$WORK/restored3.pid" -v4 </dev/null >"$WORK/restore3.out" 2>&1 ||
  fail "crshim restore --import failed: $(cat "$WORK/restore3.out") $(engine_log "$WORK/w6")"
RESTORED_PID=$(cat "$WORK/restored3.pid")
wait_for_file "$WORK/con3.name"
check_continues "$WORK/con2.out" "$WORK/con3.out"
[[ "$(readlink "/proc/$RESTORED_PID/ns/net")" == "net:[$netns_ino]" ]] || fail "restored init left netns $NETNS"
[[ -s "$WORK/w6/restore.log" ]] || fail "no restore.log in the work path"
echo "ok: restore --bundle --import: the ticker goes on from the archive"
