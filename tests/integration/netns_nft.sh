#!/bin/bash
# nftables in a network namespace dumped in full: tables made with nft (family inet and ip6, a set,
# chains with hooks, an ip nat table iptables-save prints only in part) next to iptables rules (in
# iptables-nft's tables). After restore the ruleset inside is the one before (each rule once), the
# dropped ports still drop, the network lock's own table is neither dumped nor left behind
# (--network-lock nftables and iptables), and an image that holds iptables' tables in
# nftables-N.img too (as CRIU's may) restores them once.
source "$(dirname "$0")/lib.sh"
for tool in ip nsenter nft iptables python3; do command -v "$tool" >/dev/null || fail "$tool is needed"; done

NS=crnft-$$
HOST=crn$$
cleanup_net() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST" 2>/dev/null || true
}
at_exit cleanup_net

# probe PORT: what a TCP connect from the host to the inner address meets: open, refused or dropped.
probe() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1.5)
try:
    s.connect(("10.201.0.2", int(sys.argv[1])))
    print("open")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("dropped")
PY
}

host_end_up() {
  ip addr add 10.201.0.1/24 dev "$HOST"
  ip link set "$HOST" up
}

inside() { nsenter -t "$TARGET_PID" -n "$@"; }
# What must come back: the tables nft made (without counters), iptables' rules, the list of tables.
# (iptables-restore makes every base chain iptables-save lists, so iptables' tables are compared by
# iptables-save.)
ruleset() {
  local t
  # shellcheck disable=SC2086 # "FAMILY NAME" are two words
  for t in "inet t" "ip6 t6" "ip nat"; do inside nft -s list table $t 2>/dev/null || echo "(no table $t)"; done
  inside iptables-save | grep "^-A"
  inside nft list tables | sort
  inside ip6tables-save | grep "^-A"
}

start_target() {
  ip netns add "$NS" || fail "ip netns add"
  ip link add "$HOST" type veth peer name veth0 netns "$NS" || fail "ip link add veth"
  host_end_up
  ip -n "$NS" link set lo up
  ip -n "$NS" link set veth0 up
  ip -n "$NS" addr add 10.201.0.2/24 dev veth0
  nsenter --net="/run/netns/$NS" sh -e -c '
    iptables -A INPUT -p tcp --dport 4444 -j DROP
    iptables -A INPUT -p tcp --dport 4446 -m comment --comment keep -m recent --name r --set
    ip6tables -A INPUT -p tcp --dport 4445 -j DROP
    nft add table inet t
    nft add set inet t blocked "{ type ipv4_addr; elements = { 10.9.9.9 } }"
    nft add chain inet t input "{ type filter hook input priority 0; policy accept; }"
    nft add rule inet t input tcp dport 5555 drop
    nft add rule inet t input ip saddr @blocked drop
    nft add table ip6 t6
    nft add chain ip6 t6 out "{ type filter hook output priority 10; }"
    nft add rule ip6 t6 out ip6 daddr fd00:99::1 reject
    nft add table ip nat
    nft add chain ip nat pre "{ type nat hook prerouting priority -100; }"
    nft add rule ip nat pre tcp dport 7777 dnat to 10.201.0.2:5555
  ' || fail "setting up the rules"
  READY=$WORK/nft.ready RESULT=$WORK/nft.result
  rm -f "$READY" "$RESULT"
  setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" connect=10.201.0.1:9 \
    </dev/null >>"$WORK/nft.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  ip netns del "$NS"
}

# check_ports: 4444 (iptables), 5555 and 7777 (nft, the latter by dnat to 5555) drop; 5556 answers.
check_ports() {
  local what=$1
  [[ $(probe 5556) == refused ]] || fail "$what: port 5556 of 10.201.0.2 does not answer: $(probe 5556)"
  [[ $(probe 4444) == dropped ]] || fail "$what: port 4444 (iptables rule) is not dropped"
  [[ $(probe 5555) == dropped ]] || fail "$what: port 5555 (nft rule in inet t) is not dropped"
  [[ $(probe 7777) == dropped ]] || fail "$what: port 7777 (nft dnat in ip nat to 5555) is not dropped"
}

# cycle_lock METHOD: dump with --network-lock METHOD, restore, compare.
cycle_lock() {
  local method=$1 dir=$WORK/img-$1 before after
  start_target
  PID_OF[$method]=$TARGET_PID
  check_ports "before the dump"
  before=$(ruleset)
  grep -q "table inet t" <<<"$before" || fail "no table inet t before the dump: $before"
  checkpoint "$dir" --network-lock "$method"
  local img
  img=$(cat "$dir"/nftables-*.img)
  grep -q "^table inet t {" <<<"$img" || fail "nftables image lacks table inet t: $img"
  grep -q "^table ip6 t6 {" <<<"$img" || fail "nftables image lacks table ip6 t6: $img"
  grep -q "elements = { 10.9.9.9 }" <<<"$img" || fail "nftables image lacks the set: $img"
  grep -q "^table ip nat {" <<<"$img" || fail "nftables image lacks the ip nat table iptables-save prints in part: $img"
  grep -q "CRIU-" <<<"$img" && fail "nftables image holds the network lock's table: $img"
  grep -q "^table ip filter {" <<<"$img" && fail "nftables image holds iptables' table ip filter: $img"
  grep -q -- "--dport 4444 -j DROP" "$dir"/iptables-*.img || fail "iptables image lacks the rule"
  if [[ $method == nftables ]]; then
    grep -q "nftables table inet CRIU-.*network lock, not dumped" "$dir/dump.log" || fail "the lock table was not seen at dump"
  fi
  reap_target
  wait_gone "$HOST"
  restore_detached "$dir" --external "veth[veth0]:$HOST" --network-lock "$method"
  host_end_up
  after=$(ruleset)
  [[ "$after" == "$before" ]] || fail "$method: the ruleset differs after restore:
--- before
$before
--- after
$after"
  inside nft list tables | grep -q CRIU- && fail "$method: the lock table is left: $(inside nft list tables)"
  [[ $(inside iptables-save | grep -c -- "--dport 4444 -j DROP") == 1 ]] || fail "$method: the iptables rule is not there once"
  [[ $(inside ip6tables-save | grep -c -- "--dport 4445 -j DROP") == 1 ]] || fail "$method: the ip6tables rule is not there once"
  check_ports "after restore ($method lock)"
  finish_and_check
  reap_target
  wait_gone "$HOST"
  echo "ok: nft tables (inet with a set, ip6, ip nat) and iptables rules restored once, lock $method"
}

declare -A PID_OF
cycle_lock nftables
cycle_lock iptables

# An image whose nftables-N.img holds iptables-nft's table too (CRIU writes the whole ruleset):
# ip filter comes from it alone, not doubled by iptables-restore.
dir=$WORK/img-nftables
{ cat "$dir"/nftables-*.img
  printf 'table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n'
  printf '\t\ttcp dport 4444 counter packets 0 bytes 0 drop\n\t}\n}\n'
} >"$WORK/full.nft"
cp "$WORK/full.nft" "$dir"/nftables-*.img
TARGET_PID=${PID_OF[nftables]} RESULT=$WORK/nft.result
rm -f "$RESULT"
restore_detached "$dir" --external "veth[veth0]:$HOST"
host_end_up
[[ $(inside nft -s list ruleset | grep -c "tcp dport 4444") == 1 ]] || fail "ip filter doubled or lost: $(inside nft -s list ruleset)"
[[ $(probe 4444) == dropped ]] || fail "port 4444 is not dropped after restoring ip filter from nftables"
finish_and_check
echo "ok: a table in both the iptables and the nftables image is restored once (from nftables)"
