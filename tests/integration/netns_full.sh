#!/bin/bash
# A tree with a network namespace of its own, dumped in full (no --external net / --empty-ns net):
#  1. lo only (up, an extra address, sysctls): the standard cycle, images decoded by crit;
#  2. a veth whose peer is on the host, with IPv4/IPv6 addresses, default routes and an iptables rule:
#     restored with --external veth[veth0]:HOST (then into a bridge with @BRIDGE), the restored task
#     reaches the host through it;
#  3. refusals: a link of another kind (a bridge inside) before freezing (target untouched); a restore without the veth
#     mapping, and one failing after the veth was made, leave no task and no veth behind.
source "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"
command -v nsenter >/dev/null || fail "nsenter(1) is needed (package util-linux)"

NS=crfull-$$
HOST=crv$$
BR=crb$$
cleanup_net() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST" 2>/dev/null || true
  ip link del "$BR" 2>/dev/null || true
}
at_exit cleanup_net

# ---- 1. lo only: the program runs in a namespace of its own made by unshare (it keeps the pid).
REAL_PROGRAMS=$PROGRAMS
PROGRAMS=$WORK/programs
mkdir -p "$PROGRAMS"
cat >"$PROGRAMS/tp_netns" <<EOF
#!/bin/sh
exec unshare --net sh -c 'ip link set lo up && ip addr add 127.0.0.2/8 dev lo &&
  echo 2 >/proc/sys/net/ipv4/conf/lo/arp_ignore && echo 1 >/proc/sys/net/ipv4/conf/all/forwarding &&
  echo 2 >/proc/sys/net/ipv4/conf/default/rp_filter && echo 33 >/proc/sys/net/ipv6/conf/all/hop_limit &&
  echo 37 >/proc/sys/net/unix/max_dgram_qlen && exec "\$0" "\$@"' "$REAL_PROGRAMS/tp_netns" "\$@"
EOF
chmod +x "$PROGRAMS/tp_netns"
on_checkpointed() {
  local dir=$1
  decode_all "$dir"
  local netdev netns
  netdev=$(crit decode -i "$dir"/netdev-*.img --pretty)
  grep -q '"name": "lo"' <<<"$netdev" || fail "netdev image lacks lo: $netdev"
  grep -q '"type": "LOOPBACK"' <<<"$netdev" || fail "lo is not LOOPBACK: $netdev"
  [[ -s $(ls "$dir"/ifaddr-*.img) ]] || fail "no ifaddr image"
  # netns-N.img only (not netns-ct/exp-N.img); decoded whole first: grep -q would cut crit's pipe.
  netns=$(crit decode -i "$dir"/netns-[0-9]*.img --pretty)
  grep -q '"iarg": 37' <<<"$netns" || fail "netns image lacks max_dgram_qlen 37"
}
cycle tp_netns
on_checkpointed() { :; }
PROGRAMS=$REAL_PROGRAMS
echo "ok: netns with lo only (up, 127.0.0.2/8, sysctls) dumped in full and rebuilt"

# ---- 2. veth to the host.
ipt=
command -v iptables >/dev/null && ipt=1
start_veth_target() {
  ip netns add "$NS" || fail "ip netns add"
  ip link add "$HOST" type veth peer name veth0 netns "$NS" || fail "ip link add veth"
  ip addr add 10.200.0.1/24 dev "$HOST"
  ip -6 addr add fd00:200::1/64 dev "$HOST" nodad
  ip link set "$HOST" up
  ip -n "$NS" link set lo up
  ip -n "$NS" link set veth0 mtu 1400 up
  ip -n "$NS" addr add 10.200.0.2/24 dev veth0
  ip -n "$NS" -6 addr add fd00:200::2/64 dev veth0 nodad
  ip -n "$NS" route add default via 10.200.0.1
  ip -n "$NS" -6 route add default via fd00:200::1
  ip -n "$NS" route add 10.77.0.0/16 via 10.200.0.1 metric 50
  nsenter --net="/run/netns/$NS" sh -c 'echo 2 >/proc/sys/net/ipv4/conf/veth0/rp_filter'
  if [[ -n $ipt ]]; then nsenter --net="/run/netns/$NS" iptables -A INPUT -p tcp --dport 4444 -j DROP || ipt=; fi
  READY=$WORK/veth.ready RESULT=$WORK/veth.result
  rm -f "$READY" "$RESULT"
  setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" connect=10.200.0.1:9 \
    </dev/null >>"$WORK/veth.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  # The namespace now lives on through the program alone: killing it takes the veth pair away.
  ip netns del "$NS"
}


# check_restored_net: what the host and `ip` inside see after a restore.
check_restored_net() {
  local addrs routes routes6 veth
  veth=$(nsenter -t "$TARGET_PID" -n ip -o link show veth0) || fail "no veth0 in the restored namespace"
  grep -q "mtu 1400" <<<"$veth" || fail "veth0 MTU: $veth"
  grep -q "state UP" <<<"$veth" || fail "veth0 not up: $veth"
  addrs=$(nsenter -t "$TARGET_PID" -n ip -o addr show dev veth0)
  grep -q "inet 10.200.0.2/24" <<<"$addrs" || fail "veth0 IPv4 address: $addrs"
  grep -q "inet6 fd00:200::2/64" <<<"$addrs" || fail "veth0 IPv6 address: $addrs"
  routes=$(nsenter -t "$TARGET_PID" -n ip route show)
  grep -q "^default via 10.200.0.1 dev veth0" <<<"$routes" || fail "IPv4 default route: $routes"
  grep -q "^10.77.0.0/16 via 10.200.0.1 dev veth0 metric 50" <<<"$routes" || fail "IPv4 route: $routes"
  routes6=$(nsenter -t "$TARGET_PID" -n ip -6 route show)
  grep -q "^default via fd00:200::1 dev veth0" <<<"$routes6" || fail "IPv6 default route: $routes6"
  [[ $(nsenter -t "$TARGET_PID" -n cat /proc/sys/net/ipv4/conf/veth0/rp_filter) == 2 ]] || fail "veth0 rp_filter"
  if [[ -n $ipt ]]; then
    nsenter -t "$TARGET_PID" -n iptables-save | grep -q -- "-A INPUT -p tcp -m tcp --dport 4444 -j DROP" ||
      fail "iptables rule missing: $(nsenter -t "$TARGET_PID" -n iptables-save)"
  fi
  [[ $(nsenter -t "$TARGET_PID" -n ip rule show | wc -l) == 3 ]] || fail "rules: $(nsenter -t "$TARGET_PID" -n ip rule show)"
}

start_veth_target
checkpoint "$WORK/veth1"
decode_all "$WORK/veth1"
netdev=$(crit decode -i "$WORK"/veth1/netdev-*.img --pretty)
grep -q '"type": "VETH"' <<<"$netdev" || fail "no VETH in netdev image: $netdev"
grep -q '"name": "veth0"' <<<"$netdev" || fail "no veth0 in netdev image: $netdev"
grep -q '"mtu": 1400' <<<"$netdev" || fail "veth0 MTU not recorded: $netdev"
[[ -z $ipt ]] || grep -q "dport 4444" "$WORK"/veth1/iptables-*.img || fail "iptables image lacks the rule"
reap_target
wait_gone "$HOST"

# Without the mapping: refused with a hint, no task and no veth left.
if "$CRSHIM" restore -D "$WORK/veth1" -d -o restore-nomap.log 2>"$WORK/err"; then fail "restored a veth without its host name"; fi
grep -q -- "--external veth\[veth0\]:HOSTNAME" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "a task was left behind by the refused restore"; fi
[[ $(ip -o link show type veth | grep -c "veth0@") == 0 ]] || fail "a veth was left behind"

# A failure after the veth was made: the pair goes again.
if CRSHIM_FAULT=restore:task-created "$CRSHIM" restore -D "$WORK/veth1" -d -v4 -o restore-fault.log \
  --external "veth[veth0]:$HOST" 2>"$WORK/err"; then
  fail "the fault point did not fail the restore"
fi
grep -q "Created veth veth0" "$WORK/veth1/restore-fault.log" || fail "the failed restore never made the veth"
ip link show "$HOST" >/dev/null 2>&1 && fail "the failed restore left $HOST behind"
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "a task was left behind by the failed restore"; fi
echo "ok: refused and failed restores leave neither tasks nor veths"

restore_detached "$WORK/veth1" --external "veth[veth0]:$HOST"
ip link show "$HOST" >/dev/null || fail "no host end $HOST after restore"
# The host end comes back bare, as with CRIU: its configuration is the caller's.
ip addr add 10.200.0.1/24 dev "$HOST"
ip -6 addr add fd00:200::1/64 dev "$HOST" nodad
ip link set "$HOST" up
check_restored_net
finish_and_check
echo "ok: veth (v4+v6 addresses, routes, sysctl${ipt:+, iptables}) restored; the restored task reaches the host"

# Again, restored into a bridge: restore -> dump the restored tree -> restore into $BR.
wait_gone "$HOST"  # the finished program's namespace, and its veth, go asynchronously
start_veth_target
checkpoint "$WORK/veth2"
reap_target
wait_gone "$HOST"
restore_detached "$WORK/veth2" --external "veth[veth0]:$HOST"
checkpoint "$WORK/veth3"
reap_target
wait_gone "$HOST"
ip link add "$BR" type bridge || fail "ip link add bridge"
ip addr add 10.200.0.1/24 dev "$BR"
ip link set "$BR" up
restore_detached "$WORK/veth3" --veth-pair "veth0=$HOST@$BR"
link=$(ip -o link show "$HOST")
grep -q "master $BR" <<<"$link" || fail "$HOST is not in $BR: $link"
grep -Eq "<([A-Z_]+,)*UP[,>]" <<<"$link" || fail "$HOST is not up: $link"
ip -6 addr add fd00:200::1/64 dev "$BR" nodad
check_restored_net
finish_and_check
echo "ok: a restored tree dumped again, restored with its host end in bridge $BR (--veth-pair)"

# ---- 3. A link of another kind: refused before freezing, naming it; the target runs on.
ip netns add "$NS"
ip -n "$NS" link add br7 type bridge || fail "ip link add bridge in $NS"
READY=$WORK/bridge.ready RESULT=$WORK/bridge.result
setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" </dev/null >>"$WORK/bridge.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" 2>"$WORK/err"; then fail "a netns with a bridge was dumped"; fi
grep -q "link br7 (kind bridge) is not supported" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
finish_and_check
reap_target
echo "ok: a bridge inside is refused before freezing, naming it; the program ran on"
