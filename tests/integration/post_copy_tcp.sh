#!/bin/bash
# Post-copy live migration of a TCP server with an open connection between two "hosts" (network
# namespaces, lib_migration.sh): `dump --lazy-pages --tcp-established --network-lock iptables` in A
# writes the images without the server's 64 MiB and serves them from the frozen server; B gets the
# images, the service address and `lazy-pages --page-server` fetching from A, and restores the server
# with --lazy-pages: it answers the client at once while its memory arrives. The client's connection
# goes on with every byte echoed in order; when the last page has arrived the source goes, leaving
# only its connection's two lock rules in A. The server runs in a pid namespace of its own, so that
# its copy takes its pids while the source still serves. Prints the frozen time next to a plain dump's.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_migration.sh"
command -v unshare >/dev/null || fail "unshare(1) is needed (package util-linux)"
mkdir -p "$HA"/{full,img} "$HB/img"
DUMP_PID=''
at_exit '[[ -n $DUMP_PID ]] && kill -9 $DUMP_PID 2>/dev/null'

READY=$WORK/srv.ready RESULT=$WORK/srv.result SRVLOG=$WORK/srv.log
setsid nsenter --net="/run/netns/$NSA" unshare --pid --fork setsid "$PROGRAMS/tp_echo_srv" "$READY" "$RESULT" "$S" "$SPORT" \
  "$MIB" "$SRVLOG" </dev/null >"$WORK/srv.out" 2>&1 &
UNSHARE=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -P "$UNSHARE")
[[ $(stat -L -c %i "/proc/$TARGET_PID/ns/net") == "$ino_a" ]] || fail "the server is not in $NSA"
start_client
echo "ok: the client $C_IP:$C_PORT streams to $S:$SPORT in $NSA ($(progress) bytes echoed)"

# The baseline: a plain dump of the same server (left running), into A's disk.
"$CRSHIM" dump -t "$TARGET_PID" -D "$HA/full" -o dump.log -v4 --tcp-established --external "net[$ino_a]:hostnet" \
  --leave-running || fail "plain dump: $(tail -3 "$HA/full/dump.log")"
full_frozen=$(stat_field "$HA/full" frozen_time)
mark=$(progress)
wait_progress $((mark + 20000)) 30 "after the plain dump"

# ---- A: the lazy dump, which serves the server's memory once its images are written.
t_dump=$(date +%s.%N)
"$CRSHIM" dump -t "$TARGET_PID" -D "$HA/img" -o dump.log -v4 --lazy-pages --address "$A_HOST" --port "$PSPORT" \
  --status-fd 3 --tcp-established --external "net[$ino_a]:hostnet" --network-lock iptables \
  3>"$HA/img/dump.status" 2>"$HA/img/dump.err" &
DUMP_PID=$!
status_byte "$HA/img/dump.status" "the lazy dump" "$DUMP_PID"
t_serving=$(date +%s.%N)
pages_bytes=$(cat "$HA"/img/pages-*.img | wc -c)
((pages_bytes < 1048576)) || fail "the lazy dump wrote $pages_bytes bytes of pages"

# ---- B takes over: S, the images, the daemon fetching from A, the restore in B's namespace.
ip -n "$NSB" addr add "$S/32" dev lo
cp "$HA"/img/*.img "$HB/img/"
ip netns exec "$NSB" "$CRSHIM" lazy-pages -D "$HB/img" -o lazy-pages.log -v4 --page-server --address "$A_HOST" \
  --port "$PSPORT" --status-fd 3 3>"$HB/daemon.status" &
DAEMON_PID=$!
status_byte "$HB/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
exec 7<"/run/netns/$NSB"
"$CRSHIM" restore -D "$HB/img" -o restore.log -v4 -d --lazy-pages --tcp-established --inherit-fd "fd[7]:hostnet" \
  --pidfile "$HB/pid" || fail "restore in B: $(tail -3 "$HB/img/restore.log")"
exec 7<&-
ip route replace "$S/32" via "$B_IP"
ip -n "$NSA" addr del "$S/32" dev lo
t_up=$(date +%s.%N)
SOURCE_PID=$TARGET_PID
TARGET_PID=$(cat "$HB/pid")
[[ $(stat -L -c %i "/proc/$TARGET_PID/ns/net") == "$ino_b" ]] || fail "the restored server is not in $NSB"
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$TARGET_PID/status" || fail "the restored server is not pid 1 of its namespace"
grep -q 'The lazy-pages daemon connected' "$HA/img/dump.log" || fail "B's daemon did not connect to the lazy dump in A"
echo "ok: restored in $NSB while the source in $NSA serves the memory; the route to $S goes to B"

mark=$(progress)
wait_progress $((mark + 200000)) 60 "after the migration"
echo "ok: the stream goes on through B ($(progress) bytes echoed)"

# ---- The transfer ends: the daemon, then the dump exit 0, and the source is gone.
wait_exit "$DAEMON_PID" "the lazy-pages daemon" 60
DAEMON_PID=
((RC == 0)) || fail "the lazy-pages daemon exited $RC: $(tail -3 "$HB/img/lazy-pages.log")"
wait_exit "$DUMP_PID" "the lazy dump" 30
DUMP_PID=
((RC == 0)) || fail "the lazy dump exited $RC: $(cat "$HA/img/dump.err")"
wait_exit "$UNSHARE" "the source's unshare" 10
! kill -0 "$SOURCE_PID" 2>/dev/null || fail "the source $SOURCE_PID still lives"
lazy_line=$(grep 'lazy-pages: .* tasks' "$HB/img/lazy-pages.log" | tail -1)
fetched=$(sed -E 's/.* ([0-9]+) fetched from the source.*/\1/' <<<"$lazy_line")
((fetched >= MIB * 256)) || fail "only $fetched pages came from A: $lazy_line"

finish_client 1
finish_and_check
echo "ok: $sent bytes sent, all echoed in order and counted by the server; its $MIB MiB intact (${lazy_line#*lazy-pages: })"

# Lock rules: none in B, none here; A keeps the connection's two (its source is gone), removed by hand.
[[ -z "$(nsenter --net="/run/netns/$NSB" iptables-save -t filter | grep -F -- "--dport $C_PORT")" ]] ||
  fail "lock rules left in B: $(nsenter --net="/run/netns/$NSB" iptables-save -t filter)"
[[ -z "$(iptables-save -t filter | grep -F -- "-s $S/32 -d $C_IP/32")" ]] || fail "lock rules in the client's namespace"
RULES="-A INPUT -s $C_IP/32 -d $S/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport $C_PORT --dport $SPORT -j DROP
-A OUTPUT -s $S/32 -d $C_IP/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport $SPORT --dport $C_PORT -j DROP"
[[ $(nsenter --net="/run/netns/$NSA" iptables-save -t filter | grep -cxF -- "$RULES") == 2 ]] ||
  fail "A is not locked as expected: $(nsenter --net="/run/netns/$NSA" iptables-save -t filter)"
printf '*filter\n%s\nCOMMIT\n' "$(sed 's/^-A /-D /' <<<"$RULES")" | nsenter --net="/run/netns/$NSA" iptables-restore -w --noflush ||
  fail "removing A's lock rules"
echo "ok: no lock rules in B or here; A kept exactly the connection's two"

lazy_frozen=$(stat_field "$HA/img" frozen_time)
printf 'frozen time: plain dump %d us; lazy dump serving after %.3fs, the source frozen %d us until its last page left; dump start to service in B %.2fs; longest client stall %ss\n' \
  "$full_frozen" "$(calc "$t_serving - $t_dump")" "$lazy_frozen" "$(calc "$t_up - $t_dump")" "$gap"
