#!/bin/bash
# Live migration of a TCP server between two "hosts", each a network namespace joined to this one by
# a veth; this namespace is the client's network. A (the source) runs tp_echo_srv on the service
# address S; a client here streams patterned data to S and checks every echoed byte.
#  - a plain full dump (--leave-running) of the same server, through a page server in B: the baseline
#  - pre-dump, pre-dump (--prev-images-dir), dump --track-mem --tcp-established --network-lock
#    iptables, each through a page server in B, whose directories are B's disk; the tree lives in A,
#    an external namespace (--external net[INO]:KEY), the source is killed by the dump
#  - S is added in B, the dump's other images are copied to B, `crshim lazy-pages` serves them, the
#    restore (--lazy-pages, --inherit-fd of B's namespace) brings the server up in B, the route to S
#    is switched to B's veth and S is removed from A
#  - the client's connection goes on: every byte is echoed in order, none lost (both ends count);
#    the listener came along (a new connection is served in B); the server has its pid and memory
# Asserts also: pages moved (full, pre-dumps, final), A locked after the dump, B and this namespace
# free of lock rules at the end, every lazy page delivered. Prints both frozen times on one line.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_migration.sh"
mkdir -p "$HA"/{full,pre1,pre2,final} "$HB"

# start_page_server DIR [OPTIONS...]: a page server in B writing into DIR; returns once it listens.
start_page_server() {
  local dir=$1
  shift
  mkdir -p "$dir"
  rm -f "$WORK/ps.status"
  ip netns exec "$NSB" "$CRSHIM" page-server -D "$dir" --address "$B_IP" --port "$PSPORT" --status-fd 3 -o ps.log -v4 "$@" \
    3>"$WORK/ps.status" 2>>"$WORK/ps.err" &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -s "$WORK/ps.status" ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the page server did not start: $(tail -2 "$WORK/ps.err")"
    sleep 0.05
  done
  fail "the page server did not report ready"
}
# page_server_done DIR: the page server of DIR exited 0 having received a complete dump.
page_server_done() {
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=
  ((rc == 0)) || fail "the page server of $1 exited $rc: $(tail -3 "$1/ps.log")"
}

# ---- the server in A.
READY=$WORK/srv.ready RESULT=$WORK/srv.result SRVLOG=$WORK/srv.log
setsid nsenter --net="/run/netns/$NSA" "$PROGRAMS/tp_echo_srv" "$READY" "$RESULT" "$S" "$SPORT" "$MIB" "$SRVLOG" \
  </dev/null >"$WORK/srv.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
[[ $(stat -L -c %i "/proc/$TARGET_PID/ns/net") == "$ino_a" ]] || fail "the server is not in $NSA"

start_client
echo "ok: the client $C_IP:$C_PORT streams to $S:$SPORT in $NSA ($(progress) bytes echoed)"

# pre-dump refuses --external net[...] (it dumps no namespace) but wants --tcp-established.
common=(--page-server --address "$B_IP" --port "$PSPORT" --tcp-established)
dump_opts=(--external "net[$ino_a]:hostnet" --network-lock iptables)

# ---- baseline: a plain full dump of the same server (left running), through a page server in B.
start_page_server "$HB/full"
timed "$WORK/full.time" "$CRSHIM" dump -t "$TARGET_PID" -D "$HA/full" -o dump.log -v4 "${common[@]}" "${dump_opts[@]}" \
  --leave-running || fail "full dump: $(tail -3 "$HA/full/dump.log")"
page_server_done "$HB/full"
kill -0 "$TARGET_PID" || fail "the server did not run on after the --leave-running dump"
full_pages=$(stat_field "$HA/full" pages_written)
full_frozen=$(stat_field "$HA/full" frozen_time)
((full_pages >= MIB * 256)) || fail "the full dump moved $full_pages pages for $MIB MiB"
[[ -z "$(nsenter --net="/run/netns/$NSA" iptables-save | grep -- "--dport $SPORT")" ]] || fail "the --leave-running dump left lock rules in A"
mark=$(progress)
wait_progress $((mark + 20000)) 30 "after the full dump"
echo "ok: full dump (left running) moved $full_pages pages; the stream goes on ($(progress) bytes)"

# ---- pre-dump, pre-dump, dump: pages to B, everything else stays on A's disk.
start_page_server "$HB/pre1"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$HA/pre1" -o pre.log -v4 "${common[@]}" || fail "pre-dump 1: $(tail -3 "$HA/pre1/pre.log")"
page_server_done "$HB/pre1"
mark=$(progress)
wait_progress $((mark + 20000)) 30 "after pre-dump 1"
start_page_server "$HB/pre2" --prev-images-dir ../pre1
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$HA/pre2" --prev-images-dir ../pre1 -o pre.log -v4 "${common[@]}" ||
  fail "pre-dump 2: $(tail -3 "$HA/pre2/pre.log")"
page_server_done "$HB/pre2"
mark=$(progress)
wait_progress $((mark + 20000)) 30 "after pre-dump 2"
first=$(stat_field "$HA/pre1" pages_written)
second=$(stat_field "$HA/pre2" pages_written)
((first >= MIB * 256)) || fail "pre-dump 1 moved $first pages for $MIB MiB"
echo "ok: pre-dumps moved $first, then $second pages to B; the stream goes on ($(progress) bytes)"

start_page_server "$HB/final" --prev-images-dir ../pre2
t_dump=$(date +%s.%N)
timed "$WORK/final.time" "$CRSHIM" dump -t "$TARGET_PID" -D "$HA/final" --prev-images-dir ../pre2 --track-mem -o dump.log -v4 \
  "${common[@]}" "${dump_opts[@]}" || fail "final dump: $(tail -3 "$HA/final/dump.log")"
page_server_done "$HB/final"
reap_target
! kill -0 "$TARGET_PID" 2>/dev/null || fail "the source server $TARGET_PID still runs after the dump"
ls "$HA"/final/pages-*.img >/dev/null 2>&1 && fail "the final dump wrote pages on A's disk"
# A's lock: the connection's two rules (the source is dead; its peer's packets must meet no RST).
RULES="-A INPUT -s $C_IP/32 -d $S/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport $C_PORT --dport $SPORT -j DROP
-A OUTPUT -s $S/32 -d $C_IP/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport $SPORT --dport $C_PORT -j DROP"
saved_a=$(nsenter --net="/run/netns/$NSA" iptables-save -t filter)
[[ $(grep -cxF -- "$RULES" <<<"$saved_a") == 2 ]] || fail "A is not locked as expected: $saved_a"
ls "$HA"/final/tcp-stream-*.img >/dev/null || fail "no tcp-stream image"
echo "ok: final dump done; A drops the connection's packets"

# ---- B takes over: S, the images, the lazy-pages daemon, the restore in B's namespace.
ip -n "$NSB" addr add "$S/32" dev lo
for img in "$HA"/final/*.img "$HA"/final/stats-dump; do
  [[ ! -e "$HB/final/$(basename "$img")" ]] || fail "$(basename "$img") is on both disks"
  cp "$img" "$HB/final/"
done
rm -f "$WORK/lazy.fifo"
mkfifo "$WORK/lazy.fifo"
ip netns exec "$NSB" "$CRSHIM" lazy-pages -D "$HB/final" -o lazy-pages.log -v4 --status-fd 3 3>"$WORK/lazy.fifo" &
DAEMON_PID=$!
byte=$(timeout 20 head -c1 "$WORK/lazy.fifo" | od -An -tx1 | tr -d ' ')
[[ $byte == 00 ]] || fail "no readiness byte from the lazy-pages daemon: $(tail -3 "$HB/final/lazy-pages.log")"
exec 7<"/run/netns/$NSB"
timed "$WORK/restore.time" "$CRSHIM" restore -D "$HB/final" -o restore.log -v4 -d --lazy-pages --tcp-established \
  --inherit-fd "fd[7]:hostnet" || fail "restore in B: $(tail -3 "$HB/final/restore.log")"
exec 7<&-
# Only now the clients reach S in B (before the restore B would answer them with a reset); A forgets it.
ip route replace "$S/32" via "$B_IP"
ip -n "$NSA" addr del "$S/32" dev lo
t_up=$(date +%s.%N)
# The source's pid, free since the dump, is the restored server's again (restored with that very pid).
kill -0 "$TARGET_PID" 2>/dev/null || fail "no task with the server's pid $TARGET_PID after the restore"
[[ $(tr '\0' ' ' <"/proc/$TARGET_PID/cmdline") == "$PROGRAMS/tp_echo_srv "* ]] || fail "pid $TARGET_PID is not the server"
[[ $(stat -L -c %i "/proc/$TARGET_PID/ns/net") == "$ino_b" ]] || fail "the restored server is not in $NSB"
grep -q "TCP connection $S:$SPORT -> $C_IP:$C_PORT locked (iptables)" "$HB/final/restore.log" ||
  fail "the restore did not lock the connection in B"
grep -q 'left to the lazy-pages daemon' "$HB/final/restore.log" || fail "the restore wrote every page itself"
echo "ok: restored in $NSB as pid $TARGET_PID (the same), lazily; the route to $S goes to B"
# (the final dump's statistics are read now: crit takes a while, the service is down meanwhile)
final=$(stat_field "$HA/final" pages_written)
final_frozen=$(stat_field "$HA/final" frozen_time)
skipped=$(stat_field "$HA/final" pages_skipped_parent)
((final * 20 < first)) || fail "the final dump moved $final pages, the first pre-dump $first"
((skipped >= MIB * 256 - 256)) || fail "the final dump left only $skipped pages to the pre-dumps"
echo "ok: the final dump moved $final pages ($skipped left to the pre-dumps)"

mark=$(progress)
wait_progress $((mark + 200000)) 60 "after the migration"
echo "ok: the stream goes on through B ($(progress) bytes echoed)"

# The listening socket came along: a new connection to S is served in B.
python3 - "$S" "$SPORT" <<'EOF' || fail "a new connection to the migrated server failed"
import socket, sys
table = bytes((((i * 2654435761) & 0xFFFFFFFF) >> 13) & 0xFF for i in range(5000))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(table)
got = b""
while len(got) < len(table):
    d = s.recv(65536)
    assert d, "EOF after %d bytes" % len(got)
    got += d
assert got == table, "echo differs"
s.close()
EOF
for ((i = 0; i < 100; i++)); do [[ -s $SRVLOG ]] && break; sleep 0.05; done
[[ $(cat "$SRVLOG" 2>/dev/null) == "bytes 5000" ]] || fail "the server logged '$(cat "$SRVLOG" 2>/dev/null)' for a new connection"
echo "ok: a new connection to $S is accepted and echoed by the migrated server"

# ---- the end: the client closes, both sides count; the server checks its memory.
finish_client 2
finish_and_check
for ((i = 0; i < 600; i++)); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.05; done
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
((rc == 0)) || fail "the lazy-pages daemon exited $rc: $(tail -3 "$HB/final/lazy-pages.log")"
grep -q 'every page delivered' "$HB/final/lazy-pages.log" || fail "the daemon did not deliver every page"
lazy_line=$(grep 'lazy-pages: .* tasks' "$HB/final/lazy-pages.log" | tail -1)
lazy_total=$(sed -E 's/.* ([0-9]+) lazy pages.*/\1/' <<<"$lazy_line")
lazy_faults=$(sed -E 's/.*faults served \(([0-9]+) pages\).*/\1/' <<<"$lazy_line")
lazy_pushed=$(sed -E 's/.* ([0-9]+) pages pushed.*/\1/' <<<"$lazy_line")
((lazy_total >= MIB * 256 && lazy_faults + lazy_pushed == lazy_total)) ||
  fail "the daemon delivered $lazy_faults + $lazy_pushed of $lazy_total pages"
lazy_line=${lazy_line#*lazy-pages: }
echo "ok: $sent bytes sent, all echoed in order and counted by the server; its $MIB MiB intact ($lazy_line)"

# Lock rules: none in B (the restore removed its own), none here; A keeps the two its dump left.
[[ -z "$(nsenter --net="/run/netns/$NSB" iptables-save -t filter | grep -F -- "--dport $C_PORT")" ]] ||
  fail "lock rules left in B: $(nsenter --net="/run/netns/$NSB" iptables-save -t filter)"
[[ -z "$(iptables-save -t filter | grep -F -- "-s $S/32 -d $C_IP/32")" ]] || fail "lock rules in the client's namespace"
[[ $(nsenter --net="/run/netns/$NSA" iptables-save -t filter | grep -cxF -- "$RULES") == 2 ]] ||
  fail "A's lock changed after the restore"
# Nothing on the destination can reach the source's rules: they are the only thing left, removed by hand.
printf '*filter\n%s\nCOMMIT\n' "$(sed 's/^-A /-D /' <<<"$RULES")" | nsenter --net="/run/netns/$NSA" iptables-restore -w --noflush ||
  fail "removing A's lock rules"
saved_a=$(nsenter --net="/run/netns/$NSA" iptables-save -t filter)
! grep -q -- "-j DROP" <<<"$saved_a" || fail "A has other lock rules: $saved_a"
echo "ok: no lock rules in B or here; A (the source) kept exactly the dump's two until removed"

read -r _ full_user full_sys <"$WORK/full.time"
read -r _ final_user final_sys <"$WORK/final.time"
read -r restore_real _ <"$WORK/restore.time"
printf 'frozen time: full dump %d us (%d pages, cpu %ss), pre-dumped dump %d us (%d pages, cpu %ss); dump start to service in B %.2fs (restore %ss), longest client stall %ss\n' \
  "$full_frozen" "$full_pages" "$(calc "$full_user + $full_sys")" "$final_frozen" "$final" \
  "$(calc "$final_user + $final_sys")" "$(calc "$t_up - $t_dump")" "$restore_real" "$gap"
