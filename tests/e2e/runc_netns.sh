#!/bin/bash
# runc drives crshim: a container in an external network namespace (ip netns) with a host directory
# bind-mounted on /data; after checkpoint/restore it is in the same netns and /data is still writable.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

NETNS=crshim-e2e-$$
ip netns add "$NETNS" || fail "ip netns add $NETNS failed"
E2E_NETNS+=("$NETNS")
mkdir -p "$WORK/data"
echo before >"$WORK/data/seed"

make_bundle \
  "c['linux']['namespaces'] = [n if n['type'] != 'network' else {'type': 'network', 'path': '/run/netns/$NETNS'} for n in c['linux']['namespaces']]" \
  "c['mounts'].append({'destination': '/data', 'type': 'bind', 'source': '$WORK/data', 'options': ['rbind', 'rw']})"

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
netns_ino=$(stat -L -c %i "/run/netns/$NETNS")
[[ "$(readlink "/proc/$(container_pid)/ns/net")" == "net:[$netns_ino]" ]] || fail "container is not in $NETNS"

checkpoint_gone "$WORK/img" "$WORK/w1"
grep -q "extRootNetNS" "$WORK/w1/dump.log" || fail "dump.log does not mention the external netns key"
echo "ok: runc checkpoint of a container in netns $NETNS"

restore_container "$WORK/img" "$WORK/w2" "$WORK/out2"
check_continues "$WORK/out1" "$WORK/out2"
pid=$(container_pid)
[[ "$(readlink "/proc/$pid/ns/net")" == "net:[$netns_ino]" ]] ||
  fail "restored init is in $(readlink "/proc/$pid/ns/net"), not net:[$netns_ino] ($NETNS)"
echo "ok: restored init is back in netns $NETNS"

[[ "$("${RUNC[@]}" exec "$ID" cat /data/seed)" == before ]] || fail "/data does not show the host directory"
"${RUNC[@]}" exec "$ID" sh -c 'echo after > /data/written' || fail "/data is not writable after restore"
[[ "$(cat "$WORK/data/written")" == after ]] || fail "a write to /data did not reach the host directory"
echo "ok: bind mount /data restored from the host directory and writable"
