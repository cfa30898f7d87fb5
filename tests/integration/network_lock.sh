#!/bin/bash
# --network-lock: the network of a dumped tree is quiet from before its sockets are dumped until the
# restored tree has them back, and every path removes exactly the rules it added.
#  1. a tree with its own network namespace (veth to the host), dumped in full: while the dump runs
#     (post-dump script) the namespace drops all but loopback (iptables CRIU chain, then an nftables
#     table); after restore the lock is gone and UDP reaches the host; a failed dump leaves no lock;
#  2. established TCP connections in the host's namespace (--tcp-established): one DROP rule pair
#     per connection after the dump, gone after the restore, other rules untouched; --leave-running
#     and a failed dump leave none; a failed restore removes only what it added;
#  3. nftables (a CRIU-<run id> table) and skip (no rules at all), recorded in the inventory.
source "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"
command -v nsenter >/dev/null || fail "nsenter(1) is needed (package util-linux)"
command -v iptables-save >/dev/null || fail "iptables is needed"
command -v nft >/dev/null || fail "nft is needed (package nftables)"

NS=crlock-$$
HOST=crl$$
MARKER="192.0.2.$(($$ % 250 + 1))"
ECHO=
cleanup_net() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST" 2>/dev/null || true
  while iptables -D INPUT -s "$MARKER/32" -p udp -m udp --dport 9 -j DROP 2>/dev/null; do :; done
  [[ -z $ECHO ]] || kill "$ECHO" 2>/dev/null || true
  # What a failed check left locked in the host's namespace: this test's rules and tables only.
  local r saved
  saved=$(iptables-save -t filter 2>/dev/null || true)
  while IFS= read -r r; do
    [[ -n $r ]] && grep -qxF -- "$r" <<<"$saved" && { iptables -D ${r#-A } 2>/dev/null || true; }
  done <<<"${ALL_RULES:-}"
  for r in ${RUN_IDS:-}; do nft delete table inet "CRIU-$r" 2>/dev/null || true; done
}
at_exit cleanup_net

# The run id names the nftables table; Debian's crit does not know the field, so it is read raw.
run_id_of() {  # DIR
  grep -ao 'crshim-[0-9.]*-[0-9a-f]\{16\}' "$1/inventory.img" | head -1
}
inventory_field() {  # DIR FIELD
  crit decode -i "$1/inventory.img" --pretty | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0].get(sys.argv[1], ""))' "$2"
}

# udp_send NETNS-PID ADDR PORT: one datagram from inside that namespace; prints "sent" or the error.
udp_send() {
  nsenter --net="/proc/$1/ns/net" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    print("sent")
except OSError as e:
    print("error", e.errno)
' "$2" "$3"
}

# ---- 1. a namespace of its own, dumped in full.
start_netns_target() {
  ip netns add "$NS" || fail "ip netns add"
  ip link add "$HOST" type veth peer name veth0 netns "$NS" || fail "ip link add veth"
  ip addr add 10.201.0.1/24 dev "$HOST"
  ip link set "$HOST" up
  ip -n "$NS" link set lo up
  ip -n "$NS" link set veth0 up
  ip -n "$NS" addr add 10.201.0.2/24 dev veth0
  nsenter --net="/run/netns/$NS" iptables -A INPUT -p tcp --dport 4444 -j DROP || fail "iptables in $NS"
  READY=$WORK/netns.ready RESULT=$WORK/netns.result
  rm -f "$READY" "$RESULT"
  setsid nsenter --net="/run/netns/$NS" "$PROGRAMS/tp_netns" "$READY" "$RESULT" </dev/null >>"$WORK/netns.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  ip netns del "$NS"
  [[ $(udp_send "$TARGET_PID" 10.201.0.1 9) == sent ]] || fail "UDP to the host fails before the dump"
}

# The script records, at each action, the namespace's rules and what a datagram out of it meets.
SCRIPT=$WORK/lock-script.sh
cat >"$SCRIPT" <<'EOF'
#!/bin/bash
pid=${CRTOOLS_INIT_PID:-$LOCK_PID}
[[ -n $pid ]] || exit 0
out=$LOCK_OUT/$CRTOOLS_SCRIPT_ACTION
nsenter --net="/proc/$pid/ns/net" iptables-save >"$out.iptables" 2>&1
nsenter --net="/proc/$pid/ns/net" nft list ruleset >"$out.nft" 2>&1
nsenter --net="/proc/$pid/ns/net" python3 -c '
import socket
for addr in ("10.201.0.1", "127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", (addr, 9))
        print(addr, "sent")
    except OSError as e:
        print(addr, "error", e.errno)
' >"$out.udp" 2>&1
exit 0
EOF
chmod +x "$SCRIPT"
export LOCK_OUT=$WORK/actions
mkdir -p "$LOCK_OUT"

for mode in iptables nftables; do
  rm -f "$LOCK_OUT"/*
  start_netns_target
  export LOCK_PID=$TARGET_PID
  checkpoint "$WORK/ns-$mode" --network-lock "$mode" --action-script "$SCRIPT"
  [[ $(inventory_field "$WORK/ns-$mode" network_lock_method) == $([[ $mode == iptables ]] && echo 0 || echo 1) ]] ||
    fail "inventory network_lock_method for $mode: $(inventory_field "$WORK/ns-$mode" network_lock_method)"
  # As CRIU, the network-lock script runs before crshim's own lock; post-dump sees it in place.
  [[ -f $LOCK_OUT/network-lock.udp && -f $LOCK_OUT/post-dump.udp ]] || fail "the scripts did not run: $(ls "$LOCK_OUT")"
  grep -q "10.201.0.1 sent" "$LOCK_OUT/network-lock.udp" || fail "locked before network-lock: $(cat "$LOCK_OUT/network-lock.udp")"
  grep -q "10.201.0.1 error 1$" "$LOCK_OUT/post-dump.udp" || fail "$mode: UDP left the locked namespace: $(cat "$LOCK_OUT/post-dump.udp")"
  grep -q "127.0.0.1 sent" "$LOCK_OUT/post-dump.udp" || fail "$mode: loopback is locked too: $(cat "$LOCK_OUT/post-dump.udp")"
  if [[ $mode == iptables ]]; then
    grep -qx -- "-A INPUT -j CRIU" "$LOCK_OUT/post-dump.iptables" || fail "no INPUT jump: $(cat "$LOCK_OUT/post-dump.iptables")"
    grep -qx -- "-A OUTPUT -j CRIU" "$LOCK_OUT/post-dump.iptables" || fail "no OUTPUT jump"
    grep -qx -- "-A CRIU -j DROP" "$LOCK_OUT/post-dump.iptables" || fail "no DROP in the CRIU chain"
  else
    run_id=$(run_id_of "$WORK/ns-$mode")
    [[ -n $run_id ]] || fail "no run id in the inventory"
    grep -q "table inet CRIU-$run_id" "$LOCK_OUT/post-dump.nft" || fail "no nft table CRIU-$run_id: $(cat "$LOCK_OUT/post-dump.nft")"
    grep -q "policy drop" "$LOCK_OUT/post-dump.nft" || fail "the nft lock does not drop"
    ! grep -q CRIU "$LOCK_OUT/post-dump.iptables" || fail "nftables mode made iptables rules"
  fi
  grep -q -- "--dport 4444 -j DROP" "$LOCK_OUT/post-dump.iptables" || fail "the namespace's own rule is gone"
  reap_target
  wait_gone "$HOST"
  rm -f "$LOCK_OUT"/*
  restore_detached "$WORK/ns-$mode" --external "veth[veth0]:$HOST" --action-script "$SCRIPT"
  # While restoring (network-unlock script, before crshim's unlock) the restored namespace is locked.
  grep -q "10.201.0.1 error 1$" "$LOCK_OUT/network-unlock.udp" || fail "$mode: restored namespace not locked: $(cat "$LOCK_OUT/network-unlock.udp")"
  saved=$(nsenter -t "$TARGET_PID" -n iptables-save)
  ! grep -q CRIU <<<"$saved" || fail "$mode: the lock is left after restore: $saved"
  grep -q -- "--dport 4444 -j DROP" <<<"$saved" || fail "the namespace's own rule was not restored: $saved"
  ! nsenter -t "$TARGET_PID" -n nft list ruleset | grep -q CRIU || fail "$mode: an nft lock is left after restore"
  ip addr add 10.201.0.1/24 dev "$HOST"
  ip link set "$HOST" up
  [[ $(udp_send "$TARGET_PID" 10.201.0.1 9) == sent ]] || fail "$mode: UDP to the host fails after restore"
  finish_and_check
  wait_gone "$HOST"
  echo "ok: $mode: own namespace locked during the dump (UDP out fails, lo works), unlocked after restore"
done

# A dump failing after the lock: the namespace runs on unlocked.
start_netns_target
mkdir -p "$WORK/ns-fault"
if CRSHIM_FAULT=dump:images "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/ns-fault" -o dump.log -v4 2>"$WORK/fault.err"; then
  fail "the dump with an injected fault succeeded"
fi
grep -q "Network namespace locked" "$WORK/ns-fault/dump.log" || fail "the fault came before the lock"
saved=$(nsenter -t "$TARGET_PID" -n iptables-save)
! grep -q CRIU <<<"$saved" || fail "the failed dump left the lock: $saved"
[[ $(udp_send "$TARGET_PID" 10.201.0.1 9) == sent ]] || fail "UDP to the host fails after the failed dump"
finish_and_check
reap_target
wait_gone "$HOST"
echo "ok: a failed dump of a namespace leaves it unlocked"

# ---- 2. established connections in the host's namespace.
python3 "$(dirname "$0")/tcp_echo_server.py" "$WORK/echo.port" &
ECHO=$!
wait_for_file "$WORK/echo.port"
PORT=$(cat "$WORK/echo.port")
# Someone else's rule in the same table: never touched.
iptables -A INPUT -s "$MARKER/32" -p udp -m udp --dport 9 -j DROP
OTHER="-A INPUT -s $MARKER/32 -p udp -m udp --dport 9 -j DROP"

# conn_rules DIR: the rules the dump's connections get, from the images.
conn_rules() {
  crit decode -i "$1/files.img" | python3 -c '
import json, socket, struct, sys
for f in json.load(sys.stdin)["entries"]:
    sk = f.get("isk")
    if not sk or sk["proto"] not in ("TCP", 6) or sk["state"] not in ("ESTABLISHED", 1):
        continue
    def a(w):
        return socket.inet_ntoa(struct.pack("<I", w[0])) if isinstance(w[0], int) else w[0]
    src, dst = a(sk["src_addr"]), a(sk["dst_addr"])
    sp, dp = sk["src_port"], sk["dst_port"]
    m = "-p tcp -m mark ! --mark 0xc114 -m tcp"
    print("-A INPUT -s %s/32 -d %s/32 %s --sport %d --dport %d -j DROP" % (dst, src, m, dp, sp))
    print("-A OUTPUT -s %s/32 -d %s/32 %s --sport %d --dport %d -j DROP" % (src, dst, m, sp, dp))
'
}
# count_rules RULES: how many of these lines iptables-save prints (each counted as often as it is there).
count_rules() {
  local saved n=0 r
  saved=$(iptables-save -t filter)
  while IFS= read -r r; do
    [[ -n $r ]] || continue
    n=$((n + $(grep -cxF -- "$r" <<<"$saved" || true)))
  done <<<"$1"
  echo "$n"
}
other_once() {
  [[ $(iptables-save -t filter | grep -cxF -- "$OTHER") == 1 ]] || fail "the unrelated rule changed: $(iptables-save -t filter | grep -F "$MARKER")"
}

start_program tp_tcp_est "$PORT"
checkpoint "$WORK/tcp1" --tcp-established
reap_target
RULES=$(conn_rules "$WORK/tcp1")
ALL_RULES=$RULES
[[ $(wc -l <<<"$RULES") == 6 ]] || fail "want 3 connections (6 rules) in the images: $RULES"
[[ $(count_rules "$RULES") == 6 ]] || fail "after the dump: $(count_rules "$RULES") of 6 rules: $(iptables-save -t filter)"
[[ $(inventory_field "$WORK/tcp1" network_lock_method) == 0 ]] || fail "inventory network_lock_method"
other_once
# A failed restore finds the dump's rules, adds none, and leaves them for the next try.
if CRSHIM_FAULT=restore:task-created "$CRSHIM" restore -D "$WORK/tcp1" -d -o restore-fault.log -v4 --tcp-established 2>"$WORK/err"; then
  fail "the restore with an injected fault succeeded"
fi
[[ $(count_rules "$RULES") == 6 ]] || fail "the failed restore changed the dump's rules: $(count_rules "$RULES") of 6"
# Without them (removed by hand), the failed restore adds them and removes them again.
printf '*filter\n%s\nCOMMIT\n' "$(sed 's/^-A /-D /' <<<"$RULES")" | iptables-restore -w --noflush || fail "removing the rules by hand"
if CRSHIM_FAULT=restore:task-created "$CRSHIM" restore -D "$WORK/tcp1" -d -o restore-fault2.log -v4 --tcp-established 2>"$WORK/err"; then
  fail "the restore with an injected fault succeeded"
fi
grep -q "TCP connection .* locked (iptables)" "$WORK/tcp1/restore-fault2.log" || fail "the failed restore never locked"
[[ $(count_rules "$RULES") == 0 ]] || fail "the failed restore left $(count_rules "$RULES") rules it added"
other_once
restore_detached "$WORK/tcp1" --tcp-established
[[ $(count_rules "$RULES") == 0 ]] || fail "after restore: $(count_rules "$RULES") lock rules left"
other_once
finish_and_check
reap_target
echo "ok: iptables: per-connection rules after the dump, none after a failed or good restore, other rules untouched"

start_program tp_tcp_est "$PORT"
checkpoint "$WORK/tcp2" --tcp-established --leave-running
ALL_RULES+=$'\n'$(conn_rules "$WORK/tcp2")
grep -q "TCP connection .* locked (iptables)" "$WORK/tcp2/dump.log" || fail "the --leave-running dump never locked"
[[ $(count_rules "$(conn_rules "$WORK/tcp2")") == 0 ]] || fail "--leave-running left lock rules"
finish_and_check
reap_target
start_program tp_tcp_est "$PORT"
mkdir -p "$WORK/tcp3"
if CRSHIM_FAULT=dump:images "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/tcp3" -o dump.log -v4 --tcp-established 2>"$WORK/err"; then
  fail "the dump with an injected fault succeeded"
fi
grep -q "TCP connection .* locked (iptables)" "$WORK/tcp3/dump.log" || fail "the failed dump never locked"
[[ $(iptables-save -t filter | grep -c -- "--sport $PORT \|--dport $PORT ") == 0 ]] || fail "the failed dump left rules: $(iptables-save -t filter)"
finish_and_check
reap_target
other_once
echo "ok: --leave-running and a failed dump leave no rules"

# ---- 3. nftables and skip.
start_program tp_tcp_est "$PORT"
checkpoint "$WORK/tcp4" --tcp-established --network-lock nftables
reap_target
[[ $(inventory_field "$WORK/tcp4" network_lock_method) == 1 ]] || fail "inventory network_lock_method for nftables"
run_id=$(run_id_of "$WORK/tcp4")
RUN_IDS=$run_id
[[ -n $run_id ]] || fail "no run id in the inventory"
table=$(nft list table inet "CRIU-$run_id") || fail "no nft table CRIU-$run_id after the dump"
[[ $(grep -c "meta mark != 0x0000c114 drop" <<<"$table") == 6 ]] || fail "want 6 nft rules: $table"
grep -q "tcp dport $PORT " <<<"$table" || fail "the echo connection is not locked: $table"
[[ $(count_rules "$(conn_rules "$WORK/tcp4")") == 0 ]] || fail "nftables mode made iptables rules"
restore_detached "$WORK/tcp4" --tcp-established
! nft list table inet "CRIU-$run_id" >/dev/null 2>&1 || fail "the nft table is left after restore"
finish_and_check
reap_target
echo "ok: nftables: a CRIU-<run id> table with the connections' rules after the dump, gone after restore"

start_program tp_tcp_est "$PORT"
checkpoint "$WORK/tcp5" --tcp-established --network-lock skip
reap_target
[[ $(inventory_field "$WORK/tcp5" network_lock_method) == 2 ]] || fail "inventory network_lock_method for skip"
run_id=$(run_id_of "$WORK/tcp5")
[[ -n $run_id ]] || fail "no run id in the inventory"
[[ $(count_rules "$(conn_rules "$WORK/tcp5")") == 0 ]] || fail "skip made iptables rules"
! nft list table inet "CRIU-$run_id" >/dev/null 2>&1 || fail "skip made an nft table"
! grep -q "locked" "$WORK/tcp5/dump.log" || fail "skip locked something: $(grep locked "$WORK/tcp5/dump.log")"
restore_detached "$WORK/tcp5" --tcp-established
! grep -q "locked" "$WORK/tcp5/restore.log" || fail "the restore of a skip dump locked something"
finish_and_check
reap_target
other_once
echo "ok: skip: no rules at all, recorded in the inventory"
