#!/bin/bash
# crshim's own OCI bundle mode for a container with a user namespace of its own (root inside is
# 100000 outside, 65536 ids): started by `runc run -d`, checkpointed with `crshim checkpoint --bundle`
# and restored with `crshim restore --bundle --detach`. The namespace comes back with the images' maps;
# a bundle whose mappings differ is refused. A bundle naming an existing user namespace (a holder's)
# restores the container into it, and checkpoints and restores it there again.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# recycle CHECKPOINT-BUNDLE RESTORE-BUNDLE N: the restored container is checkpointed into img$N (then
# gone), restored with the second bundle (work dir wr$N, output out$((N + 1))) and its ticker goes on
# from out$N; sets RESTORED_PID.
recycle() {
  local n=$3 old_pid=$RESTORED_PID
  "$CRSHIM" checkpoint --bundle "$1" --image-path "$WORK/img$n" --work-path "$WORK/wc$n" -v4 "$old_pid" ||
    fail "checkpoint $n with $1 failed: $(engine_log "$WORK/wc$n")"
  for _ in $(seq 100); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$old_pid" 2>/dev/null && fail "restored init $old_pid still runs after its checkpoint"
  stop_restored
  "$CRSHIM" restore --bundle "$2" --image-path "$WORK/img$n" --work-path "$WORK/wr$n" --detach \
    --pid-file "$WORK/restored$n.pid" -v4 </dev/null > >(exec cat >"$WORK/out$((n + 1))") 2>"$WORK/restore$n.err" ||
    fail "restore $n with $2 failed: $(cat "$WORK/restore$n.err") $(engine_log "$WORK/wr$n")"
  RESTORED_PID=$(cat "$WORK/restored$n.pid")
  note_cgroups
  check_continues "$WORK/out$n" "$WORK/out$((n + 1))"
}

make_userns_bundle

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
pid=$(container_pid)
host_userns=$(readlink /proc/self/ns/user)
[[ "$(readlink "/proc/$pid/ns/user")" != "$host_userns" ]] || fail "runc did not give the container a user namespace"
BEFORE=$(userns_view "$pid")
grep -q '^outside Uid: 100000 100000 100000 100000$' <<<"$BEFORE" || fail "init is not uid 100000 outside: $BEFORE"
grep -q '^inside Uid: 0 0 0 0$' <<<"$BEFORE" || fail "init is not root inside: $BEFORE"

# A bundle naming an existing user namespace (a holder's, as a runtime that made it beforehand) is
# joined at restore; checkpointing a container that is not in that namespace with it is refused.
userns_holder
holder_userns=$(readlink "/proc/$HOLDER/ns/user")
other_bundle join "c['linux']['namespaces'] = [n if n['type'] != 'user' else {'type': 'user', 'path': '/proc/$HOLDER/ns/user'} for n in c['linux']['namespaces']]"
if "$CRSHIM" checkpoint --bundle "$WORK/join" --image-path "$WORK/img-join" "$pid" 2>"$WORK/join.err"; then
  fail "checkpoint with a bundle naming another user namespace succeeded"
fi
grep -q "OCI bundle /proc/$HOLDER/ns/user: the container is in user:\[[0-9]*\], not in this namespace" "$WORK/join.err" ||
  fail "unexpected error: $(cat "$WORK/join.err")"
[[ $(wc -l <"$WORK/join.err") == 1 ]] || fail "the error is not one line: $(cat "$WORK/join.err")"
kill -0 "$pid" || fail "the container died from a refused checkpoint"
echo "ok: checkpoint with a bundle naming another user namespace is refused: $(cat "$WORK/join.err")"

# A bundle whose mappings are not the container's is refused before anything is frozen.
other_bundle remap "c['linux']['uidMappings'] = [{'containerID': 0, 'hostID': 200000, 'size': 65536}]"
if "$CRSHIM" checkpoint --bundle "$WORK/remap" --image-path "$WORK/img-remap" "$pid" 2>"$WORK/remap-dump.err"; then
  fail "checkpoint with a bundle mapping other ids succeeded"
fi
grep -q "checkpoint linux.uidMappings: the bundle maps '0 200000 65536' but the container's user namespace maps '0 100000 65536'" \
  "$WORK/remap-dump.err" || fail "unexpected error: $(cat "$WORK/remap-dump.err")"
[[ ! -e "$WORK/img-remap/pstree.img" ]] || fail "a refused checkpoint wrote images"
kill -0 "$pid" || fail "the container died from a refused checkpoint"
echo "ok: checkpoint with a bundle mapping other ids is refused"

"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w1" -v4 "$pid" ||
  fail "crshim checkpoint failed: $(engine_log "$WORK/w1")"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "container init $pid still runs after the checkpoint"
crit decode -i "$WORK"/img/userns-*.img | grep -q '"lower_first": 100000' ||
  fail "no userns image with the map: $(ls "$WORK/img")"
# In a user namespace runc binds the host's device nodes (and /dev/null over masked files): recorded.
grep -q '"deviceBinds":\[[^]]*"/dev/null"' "$WORK/img/crshim-oci.json" ||
  fail "the host device binds are not recorded: $(cat "$WORK/img/crshim-oci.json")"
grep -q "External mount /proc/keys as '/dev/null'" "$WORK/w1/dump.log" || fail "masked /proc/keys is not named /dev/null"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
echo "ok: checkpoint --bundle of the container in its user namespace"
sleep 0.3

# Mappings other than the images' are refused before any task exists.
if "$CRSHIM" restore --bundle "$WORK/remap" --image-path "$WORK/img" --work-path "$WORK/w-remap" --detach \
  --pid-file "$WORK/remap.pid" </dev/null >/dev/null 2>"$WORK/remap.err"; then
  fail "a bundle with other uid mappings restored"
fi
grep -q "linux.uidMappings: the bundle maps '0 200000 65536' but the checkpointed container's user namespace maps '0 100000 65536'" \
  "$WORK/remap.err" || fail "uid mapping mismatch error: $(cat "$WORK/remap.err")"
[[ $(wc -l <"$WORK/remap.err") == 1 ]] || fail "the error is not one line: $(cat "$WORK/remap.err")"
[[ ! -e "$WORK/remap.pid" ]] || fail "a refused restore wrote a pid file"
[[ -s "$WORK/w-remap/restore.log" ]] || fail "the refused restore wrote no restore.log"
! grep -q "Created task\|Restoring (" "$WORK/w-remap/restore.log" ||
  fail "a refused restore went on: $(grep -m3 "Created task\|Restoring (" "$WORK/w-remap/restore.log")"
echo "ok: a bundle with other uid mappings is refused: $(cat "$WORK/remap.err")"

# A bundle without the user namespace is refused too: the images would make one anyway.
other_bundle nouser "c['linux']['namespaces'] = [n for n in c['linux']['namespaces'] if n['type'] != 'user']"
if "$CRSHIM" restore --bundle "$WORK/nouser" --image-path "$WORK/img" --work-path "$WORK/w-nouser" --detach \
  </dev/null >/dev/null 2>"$WORK/nouser.err"; then
  fail "a bundle without a user namespace restored a container that had one"
fi
grep -q "has a user namespace of its own (uid map 0 100000 65536) but the bundle has no user namespace entry" \
  "$WORK/nouser.err" || fail "unexpected error: $(cat "$WORK/nouser.err")"
echo "ok: a bundle without the user namespace is refused"

# The record binds host device nodes only (an imported archive is not trusted to name other host paths).
cp -a "$WORK/img" "$WORK/img-bad"
sed -i 's|"deviceBinds":\["/dev/null"|"deviceBinds":["/etc"|' "$WORK/img-bad/crshim-oci.json"
grep -q '"/etc"' "$WORK/img-bad/crshim-oci.json" || fail "could not edit the record: $(cat "$WORK/img-bad/crshim-oci.json")"
if "$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img-bad" --work-path "$WORK/w-bad" --detach \
  </dev/null >/dev/null 2>"$WORK/bad.err"; then
  fail "a record binding /etc restored"
fi
grep -q "crshim-oci.json: deviceBinds names /etc, which is not a device node on this host" "$WORK/bad.err" ||
  fail "unexpected error: $(cat "$WORK/bad.err")"
echo "ok: a record naming a host path that is not a device node is refused"

"$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w2" --detach \
  --pid-file "$WORK/restored.pid" -v4 </dev/null > >(exec cat >"$WORK/out2") 2>"$WORK/restore.err" ||
  fail "crshim restore failed: $(cat "$WORK/restore.err") $(engine_log "$WORK/w2")"
RESTORED_PID=$(cat "$WORK/restored.pid")
note_cgroups
grep -q "user namespace comes back with uid map 0 100000 65536" "$WORK/w2/restore.log" ||
  fail "restore.log does not name the user namespace's maps"
grep -q "Created task $RESTORED_PID " "$WORK/w2/restore.log" || fail "restore.log does not name the tasks it made"
check_continues "$WORK/out1" "$WORK/out2"
[[ "$(readlink "/proc/$RESTORED_PID/ns/user")" != "$host_userns" ]] || fail "the restored init is in the host's user namespace"
AFTER=$(userns_view "$RESTORED_PID")
[[ "$AFTER" == "$BEFORE" ]] || fail "the restored init's user namespace differs:
--- before
$BEFORE
--- after
$AFTER"
for ns in mnt pid ipc uts net; do
  [[ "$(readlink "/proc/$RESTORED_PID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]] || fail "restored into our $ns namespace"
done
echo "ok: restored init $RESTORED_PID is root in a new user namespace with the same maps, uid 100000 outside, ticker goes on"
before=$(ticks "$WORK/out2" | wc -l)
wait_lines "$WORK/out2" $((before + 3))
echo "ok: the restored ticker keeps going"

# The restored container is checkpointed and restored again with the same bundle.
recycle "$BUNDLE" "$BUNDLE" 2
[[ "$(userns_view "$RESTORED_PID")" == "$BEFORE" ]] || fail "after the second restore: $(userns_view "$RESTORED_PID")"
echo "ok: checkpointed and restored a second time, same maps and ids"

# The same images restored with a bundle that joins the holder's user namespace: the tree comes back
# in it (its own new pid namespace owned by it), root inside, with the holder's maps.
other_bundle join-remap "c['linux']['namespaces'] = [n if n['type'] != 'user' else {'type': 'user', 'path': '/proc/$HOLDER/ns/user'} for n in c['linux']['namespaces']]; c['linux']['uidMappings'] = [{'containerID': 0, 'hostID': 200000, 'size': 65536}]"
if "$CRSHIM" restore --bundle "$WORK/join-remap" --image-path "$WORK/img2" --work-path "$WORK/w-join-remap" --detach \
  </dev/null >/dev/null 2>"$WORK/join-remap.err"; then
  fail "a bundle joining a user namespace with other uid mappings restored"
fi
grep -q "restore linux.uidMappings: the bundle maps '0 200000 65536' but the user namespace /proc/$HOLDER/ns/user maps '0 100000 65536'" \
  "$WORK/join-remap.err" || fail "unexpected error: $(cat "$WORK/join-remap.err")"
echo "ok: a bundle joining a user namespace whose maps are not its mappings is refused"

recycle "$BUNDLE" "$WORK/join" 3
grep -q "The container joins the user namespace /proc/$HOLDER/ns/user (uid map 0 100000 65536" "$WORK/wr3/restore.log" ||
  fail "restore.log does not name the joined user namespace"
[[ "$(readlink "/proc/$RESTORED_PID/ns/user")" == "$holder_userns" ]] ||
  fail "the restored init is in $(readlink "/proc/$RESTORED_PID/ns/user"), not in the holder's $holder_userns"
[[ "$(readlink "/proc/$RESTORED_PID/ns/pid")" != "$(readlink "/proc/$HOLDER/ns/pid")" ]] || fail "the restored init shares the holder's pid namespace"
[[ "$(userns_view "$RESTORED_PID")" == "$BEFORE" ]] || fail "in the joined namespace: $(userns_view "$RESTORED_PID"), was $BEFORE"
echo "ok: restored init $RESTORED_PID is root in the holder's user namespace (same maps and ids), ticker goes on"

# Checkpointed in the joined namespace with the joining bundle, and restored into it once more.
recycle "$WORK/join" "$WORK/join" 4
[[ "$(readlink "/proc/$RESTORED_PID/ns/user")" == "$holder_userns" ]] || fail "the second join is not in the holder's user namespace"
[[ "$(userns_view "$RESTORED_PID")" == "$BEFORE" ]] || fail "after the second join: $(userns_view "$RESTORED_PID")"
echo "ok: checkpointed in the joined user namespace and restored into it again"
