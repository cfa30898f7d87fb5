#!/bin/bash
# Connection tracking in a network namespace dumped in full: entries the namespace tracks (a UDP
# flow from the host, kept alive by a long timeout) are in netns-ct-N.img and come back after restore
# with their tuples; an image without entries restores as before.
source "$(dirname "$0")/lib.sh"
for tool in ip nsenter nft python3; do command -v "$tool" >/dev/null || fail "$tool is needed"; done

NS=crct-$$
HOST=crc$$
cleanup_net() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST" 2>/dev/null || true
}
at_exit cleanup_net

inside() { nsenter -t "$TARGET_PID" -n "$@"; }
# The tracked UDP flow from the host's port 7001 to the inner port 7000 (as /proc/net/nf_conntrack prints it).
flow() { inside cat /proc/net/nf_conntrack | grep "udp" | grep "src=10.203.0.1 dst=10.203.0.2 sport=7001 dport=7000" || true; }

ip netns add "$NS" || fail "ip netns add"
ip link add "$HOST" type veth peer name veth0 netns "$NS" || fail "ip link add veth"
ip addr add 10.203.0.1/24 dev "$HOST"
ip link set "$HOST" up
ip -n "$NS" link set lo up
ip -n "$NS" link set veth0 up
ip -n "$NS" addr add 10.203.0.2/24 dev veth0
# A rule that needs conntrack makes the namespace track; a long UDP timeout keeps the entry.
ip netns exec "$NS" nft add table inet track
ip netns exec "$NS" nft add chain inet track input "{ type filter hook input priority 0; policy accept; }"
ip netns exec "$NS" nft add rule inet track input ct state new counter
ip netns exec "$NS" sh -c 'echo 600 >/proc/sys/net/netfilter/nf_conntrack_udp_timeout'
READY=$WORK/ct.ready RESULT=$WORK/ct.result
setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" connect=10.203.0.1:9 \
  </dev/null >>"$WORK/ct.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
ip netns del "$NS"
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.203.0.1", 7001))
s.sendto(b"x", ("10.203.0.2", 7000))'
before=$(flow)
[[ -n $before ]] || fail "no tracked UDP flow before the dump: $(inside cat /proc/net/nf_conntrack)"

checkpoint "$WORK/img"
ct=$(ls "$WORK"/img/netns-ct-*.img) || fail "no netns-ct image"
[[ -s $ct ]] || fail "netns-ct image is empty"
ls "$WORK"/img/netns-exp-*.img >/dev/null || fail "no netns-exp image"
grep -q "Dumped [1-9][0-9]* conntrack entry(s)" "$WORK/img/dump.log" || fail "dump.log does not count entries"
reap_target
wait_gone "$HOST"

restore_detached "$WORK/img" --external "veth[veth0]:$HOST"
grep -q "Restored [1-9][0-9]* conntrack entry(s) of netns-ct-" "$WORK/img/restore.log" ||
  fail "restore.log: $(grep -i conntrack "$WORK/img/restore.log")"
after=$(flow)
[[ -n $after ]] || fail "the UDP flow is not tracked after restore: $(inside cat /proc/net/nf_conntrack)"
ip addr add 10.203.0.1/24 dev "$HOST"
ip link set "$HOST" up
finish_and_check
echo "ok: a tracked UDP flow is dumped to netns-ct and tracked again after restore"
