#!/bin/bash
# runc drives crshim: a container with a user namespace of its own (root inside is 100000 outside,
# 65536 ids, as a userns-remapped runtime sets it up) is checkpointed and restored by runc; the
# restored init is root in a new user namespace with the same maps and its ticker goes on. Then a
# container joining an existing user namespace by path: restored into that namespace again.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

make_userns_bundle

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
pid=$(container_pid)
host_userns=$(readlink /proc/self/ns/user)
[[ "$(readlink "/proc/$pid/ns/user")" != "$host_userns" ]] || fail "runc did not give the container a user namespace"
BEFORE=$(userns_view "$pid")
grep -q '^uid_map: 0 100000 65536$' <<<"$BEFORE" || fail "unexpected uid map: $BEFORE"
grep -q '^outside Uid: 100000 100000 100000 100000$' <<<"$BEFORE" || fail "init is not uid 100000 outside: $BEFORE"
grep -q '^inside Uid: 0 0 0 0$' <<<"$BEFORE" || fail "init is not root inside: $BEFORE"
echo "ok: runc started the container in its own user namespace ($(sed -n 1p <<<"$BEFORE"))"

checkpoint_gone "$WORK/img" "$WORK/w1"
grep -q "RPC request options:" "$WORK/w1/dump.log" || fail "dump.log does not show the request's options"
ls "$WORK"/img/userns-*.img >/dev/null 2>&1 || fail "no userns image: $(ls "$WORK/img")"
crit decode -i "$WORK"/img/userns-*.img | grep -q '"lower_first": 100000' ||
  fail "the userns image lacks the map: $(crit decode -i "$WORK"/img/userns-*.img)"
echo "ok: runc checkpoint wrote the user namespace's maps"

restore_container "$WORK/img" "$WORK/w2" "$WORK/out2"
grep -q "RPC request options:" "$WORK/w2/restore.log" || fail "restore.log does not show the request's options"
check_continues "$WORK/out1" "$WORK/out2"
pid=$(container_pid)
[[ "$(readlink "/proc/$pid/ns/user")" != "$host_userns" ]] || fail "the restored init is in the host's user namespace"
AFTER=$(userns_view "$pid")
[[ "$AFTER" == "$BEFORE" ]] || fail "the restored init's user namespace differs:
--- before
$BEFORE
--- after
$AFTER"
echo "ok: restored init $pid is root in a new user namespace with the same maps, uid 100000 outside"

# The namespace is the container's: runc exec joins it and runs as root there.
[[ "$("${RUNC[@]}" exec "$ID" cat /proc/self/uid_map | awk '{$1 = $1; print}')" == "0 100000 65536" ]] ||
  fail "runc exec does not see the container's uid map"
before=$(ticks "$WORK/out2" | wc -l)
wait_lines "$WORK/out2" $((before + 3))
echo "ok: runc exec joins the restored user namespace; the ticker keeps going"

# The restored container is checkpointed and restored again: its namespace is dumped as the first was.
checkpoint_gone "$WORK/img2" "$WORK/w3"
restore_container "$WORK/img2" "$WORK/w4" "$WORK/out3"
check_continues "$WORK/out2" "$WORK/out3"
pid=$(container_pid)
[[ "$(userns_view "$pid")" == "$BEFORE" ]] || fail "after the second restore: $(userns_view "$pid")"
echo "ok: checkpointed and restored a second time, same maps and ids"

# A container whose config names an existing user namespace (held by a process a runtime made it
# with): runc checkpoints it, and restores it with join_ns user and rst_sibling; the restored init is
# in the same namespace again, its new pid namespace owned by it.
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
userns_holder
python3 - "$BUNDLE/config.json" "/proc/$HOLDER/ns/user" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["linux"]["namespaces"] = [n if n["type"] != "user" else {"type": "user", "path": sys.argv[2]} for n in c["linux"]["namespaces"]]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
holder_userns=$(readlink "/proc/$HOLDER/ns/user")
run_container "$WORK/out-join1"
wait_lines "$WORK/out-join1" 3
pid=$(container_pid)
[[ "$(readlink "/proc/$pid/ns/user")" == "$holder_userns" ]] || fail "runc did not put the container into the holder's user namespace"
JOINED=$(userns_view "$pid")
grep -q '^uid_map: 0 100000 65536$' <<<"$JOINED" || fail "unexpected uid map: $JOINED"
grep -q '^inside Uid: 0 0 0 0$' <<<"$JOINED" || fail "init is not root inside: $JOINED"
echo "ok: runc started a container in the user namespace of holder $HOLDER"

checkpoint_gone "$WORK/img-join" "$WORK/w-join1"
restore_container "$WORK/img-join" "$WORK/w-join2" "$WORK/out-join2"
grep -q 'join_ns.*ns: "user"' "$WORK/w-join2/restore.log" || fail "runc did not ask to join the user namespace: $(grep -m1 "RPC request options" "$WORK/w-join2/restore.log")"
check_continues "$WORK/out-join1" "$WORK/out-join2"
pid=$(container_pid)
[[ "$(readlink "/proc/$pid/ns/user")" == "$holder_userns" ]] ||
  fail "the restored init is in $(readlink "/proc/$pid/ns/user"), not in the holder's $holder_userns"
[[ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink "/proc/$HOLDER/ns/pid")" ]] || fail "the restored init shares the holder's pid namespace"
[[ "$(userns_view "$pid")" == "$JOINED" ]] || fail "the restored init's user namespace view differs:
--- before
$JOINED
--- after
$(userns_view "$pid")"
before=$(ticks "$WORK/out-join2" | wc -l)
wait_lines "$WORK/out-join2" $((before + 3))
echo "ok: restored init $pid is root in the holder's user namespace again (same uid map), the ticker goes on"
