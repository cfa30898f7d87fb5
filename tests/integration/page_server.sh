#!/bin/bash
# Live migration through a page server: the server runs in another network namespace (the "other
# host", reached over a veth), dumps stream their pages to it with CRIU's page-server protocol and
# keep every other image local; the images are put together on the server's side and restored.
#  1. dump --page-server over IPv4, restore from the server's directory
#  2. pre-dump, pre-dump, dump through successive page servers (IPv6) with a --prev-images-dir chain
#  3. a page server that dies mid-dump fails the dump; the target runs on and dumps fine later;
#     a dumper that dies mid-dump makes the server fail and remove what it wrote
#  5. RPC: PAGE_SERVER_CHLD starts one (ps{pid, port}), a DUMP with opts.ps sends to it
#  4. Debian's `criu page-server` as the receiving end (compatibility oracle), when it runs here
#     (criu 3.17 cannot start on this kernel: its vDSO probe fails, so this part reports a skip)
source "$(dirname "$0")/lib.sh"

NET=$((($$ % 200) + 20))
NS=crshim-ps-$$
HOST_IF=cps$$h
SRV_IP=10.231.$NET.2
SRV_IP6=fd00:231:$NET::2
PORT=27027

stat_field() {
  crit decode -i "$1/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('$2', 0))"
}

# Removes the namespace, the veth and what still runs in there.
net_cleanup() {
  [[ -n "${SERVER_PID:-}" ]] && kill -9 "$SERVER_PID" 2>/dev/null
  local pid
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  ip link del "$HOST_IF" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
}
at_exit net_cleanup

ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
ip addr add "10.231.$NET.1/24" dev "$HOST_IF"
ip -6 addr add "fd00:231:$NET::1/64" dev "$HOST_IF" nodad
ip link set "$HOST_IF" up
ip -n "$NS" addr add "$SRV_IP/24" dev eth0
ip -n "$NS" -6 addr add "$SRV_IP6/64" dev eth0 nodad
ip -n "$NS" link set eth0 up
ip -n "$NS" link set lo up

# start_server DIR [OPTIONS...]: a page server in the other namespace, writing into DIR; returns once
# it listens (its status fd says so). Sets SERVER_PID.
start_server() {
  local dir=$1
  shift
  mkdir -p "$dir"
  rm -f "$WORK/status"
  # shellcheck disable=SC2086 # SERVER_ENV: NAME=VALUE words for env
  env ${SERVER_ENV:-} ip netns exec "$NS" "$CRSHIM" page-server -D "$dir" --port "$PORT" --status-fd 3 -o ps.log -v4 "$@" \
    3>"$WORK/status" 2>>"$WORK/server.err" &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -s "$WORK/status" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the page server did not start: $(tail -2 "$WORK/server.err")"
    sleep 0.05
  done
  [[ "$(od -An -tx1 "$WORK/status" | tr -d ' ')" == 00 ]] || fail "no NUL byte on the page server's status fd"
}

# server_result: waits for the page server; its exit code in RC (no subshell: only we can wait for it).
server_result() {
  RC=0
  wait "$SERVER_PID" || RC=$?
  SERVER_PID=
}

# join LOCAL REMOTE: the images the dump kept go next to the pages the server received.
join_images() {
  local img
  for img in "$1"/*.img; do
    case "$(basename "$img")" in pagemap-[0-9]*) fail "the dump wrote $(basename "$img") locally" ;; esac
    [[ ! -e "$2/$(basename "$img")" ]] || fail "$(basename "$img") is on both sides"
    cp "$img" "$2/"
  done
  cp "$1/stats-dump" "$2/" 2>/dev/null || true
}

# ---- 1. one dump over IPv4 ----
start_program tp_memory
start_server "$WORK/remote1" --address "$SRV_IP"
"$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/local1" -o dump.log -v4 --page-server --address "$SRV_IP" --port "$PORT" ||
  fail "dump to the page server: $(tail -3 "$WORK/local1/dump.log")"
server_result
rc=$RC
((rc == 0)) || fail "the page server exited $rc: $(tail -3 "$WORK/remote1/ps.log")"
[[ -f "$WORK/remote1/pagemap-$TARGET_PID.img" ]] || fail "no pagemap on the server's side"
ls "$WORK"/remote1/pages-*.img >/dev/null || fail "no pages image on the server's side"
written=$(stat_field "$WORK/local1" pages_written)
received=$(($(stat -c %s "$WORK"/remote1/pages-*.img | awk '{s += $1} END {print s}') / 4096))
((written >= 16384 && received == written)) || fail "the dump wrote $written pages, the server received $received"
join_images "$WORK/local1" "$WORK/remote1"
decode_all "$WORK/remote1"
reap_target
restore_detached "$WORK/remote1"
finish_and_check
echo "ok: dump over IPv4 to a page server in another netns ($received pages); restored from its images"

# ---- 2. an incremental chain through successive page servers, over IPv6 ----
rm -f "$RESULT"
start_program tp_predump "$WORK"
R=$WORK/remote2
L=$WORK/local2
mkdir -p "$L/pre1" "$L/pre2" "$L/final"
ps_opts=(--page-server --address "$SRV_IP6" --port "$PORT")
start_server "$R/pre1" --address "$SRV_IP6"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$L/pre1" -o pre.log -v4 "${ps_opts[@]}" || fail "pre-dump 1: $(tail -3 "$L/pre1/pre.log")"
server_result
((RC == 0)) || fail "page server of pre-dump 1 failed: $(tail -3 "$R/pre1/ps.log")"
kill -0 "$TARGET_PID" || fail "the target does not run on after the pre-dump"
start_server "$R/pre2" --address "$SRV_IP6" --prev-images-dir ../pre1
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$L/pre2" --prev-images-dir ../pre1 -o pre.log -v4 "${ps_opts[@]}" ||
  fail "pre-dump 2: $(tail -3 "$L/pre2/pre.log")"
server_result
((RC == 0)) || fail "page server of pre-dump 2 failed: $(tail -3 "$R/pre2/ps.log")"
[[ "$(readlink "$R/pre2/parent")" == ../pre1 ]] || fail "the page server made no parent link"
kill -USR1 "$TARGET_PID"
wait_for_file "$WORK/changed"
start_server "$R/final" --address "$SRV_IP6" --prev-images-dir ../pre2
"$CRSHIM" dump -t "$TARGET_PID" -D "$L/final" --prev-images-dir ../pre2 --track-mem -o dump.log -v4 "${ps_opts[@]}" ||
  fail "final dump: $(tail -3 "$L/final/dump.log")"
server_result
((RC == 0)) || fail "page server of the final dump failed: $(tail -3 "$R/final/ps.log")"
first=$(stat_field "$L/pre1" pages_written)
second=$(stat_field "$L/pre2" pages_written)
final=$(stat_field "$L/final" pages_written)
skipped=$(stat_field "$L/final" pages_skipped_parent)
final_bytes=$(stat -c %s "$R"/final/pages-*.img | awk '{s += $1} END {print s}')
((first >= 16384)) || fail "the first pre-dump wrote $first pages"
((second < 1000)) || fail "the second pre-dump wrote $second pages of an idle program"
((final >= 1000 && final < 1300 && final_bytes == final * 4096)) ||
  fail "the final dump wrote $final pages ($final_bytes bytes on the server); 1000 were changed"
((skipped >= 15000)) || fail "only $skipped pages were left to the parent images"
parents=$(crit decode -i "$R/final/pagemap-$TARGET_PID.img" |
  python3 -c "import json,sys; print(sum(1 for e in json.load(sys.stdin)['entries'][1:] if e.get('flags') in (1, 'PE_PARENT')))")
((parents > 0)) || fail "no PE_PARENT entries in the server's pagemap"
join_images "$L/final" "$R/final"
decode_all "$R/final"
reap_target
restore_detached "$R/final"
finish_and_check
echo "ok: pre-dump, pre-dump, dump through page servers: $first, $second, $final pages moved; restored from the chain"

# ---- 3. a page server that dies mid-dump; a dumper that dies mid-dump ----
rm -f "$RESULT"
start_program tp_memory
# Killed (SIGKILL) after receiving 20 batches, as a crash would; it listens on every address.
SERVER_ENV="CRSHIM_FAULT=page-server:pages:20 CRSHIM_FAULT_KILL=1" start_server "$WORK/remote3"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/local3" -o dump.log -v4 --page-server --address "$SRV_IP" --port "$PORT" \
  2>"$WORK/dump3.err"; then
  fail "the dump succeeded though its page server died"
fi
server_result
rc=$RC
((rc == 137)) || fail "the page server was to be killed mid-dump, it exited $rc"
(($(wc -l <"$WORK/dump3.err") == 1)) || fail "not one line of error: $(cat "$WORK/dump3.err")"
grep -q "page server $SRV_IP:$PORT" "$WORK/dump3.err" || fail "the error does not name the page server: $(cat "$WORK/dump3.err")"
grep -Eq "ECONNRESET|EPIPE" "$WORK/dump3.err" || fail "the error does not say why: $(cat "$WORK/dump3.err")"
grep -q "start the page server again" "$WORK/dump3.err" || fail "no hint: $(cat "$WORK/dump3.err")"
[[ ! -e "$WORK/local3/inventory.img" ]] || fail "the failed dump left an inventory"
kill -0 "$TARGET_PID" || fail "the target died with the page server"
state=$(awk '/^State:/ {print $2}' "/proc/$TARGET_PID/status")
[[ "$state" == S || "$state" == R ]] || fail "the target is left in state $state"
echo "ok: the page server died mid-dump: $(cat "$WORK/dump3.err")"

# The same for a pre-dump: it fails, the target runs on.
SERVER_ENV="CRSHIM_FAULT=page-server:pages:3 CRSHIM_FAULT_KILL=1" start_server "$WORK/remote3p"
if "$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/local3p" -o pre.log -v4 --page-server --address "$SRV_IP" \
  --port "$PORT" 2>"$WORK/pre3.err"; then
  fail "the pre-dump succeeded though its page server died"
fi
server_result
((RC == 137)) || fail "the page server was to be killed mid-pre-dump, it exited $RC"
grep -Eq "page server $SRV_IP:$PORT.*(ECONNRESET|EPIPE)" "$WORK/pre3.err" || fail "pre-dump error: $(cat "$WORK/pre3.err")"
state=$(awk '/^State:/ {print $2}' "/proc/$TARGET_PID/status")
[[ "$state" == S || "$state" == R ]] || fail "the target is left in state $state after the failed pre-dump"
echo "ok: the page server died mid-pre-dump: the pre-dump failed, the target runs on"

# The dumper dies mid-dump (after its 5th batch of pages): the server fails and removes what it wrote.
start_server "$WORK/remote3b" --address "$SRV_IP"
if CRSHIM_FAULT=dump:pages:5 "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/local3b" -o dump.log -v4 --page-server \
  --address "$SRV_IP" --port "$PORT" 2>/dev/null; then
  fail "the dump with an injected fault succeeded"
fi
server_result
rc=$RC
((rc != 0)) || fail "the page server took a cut-off dump as complete"
grep -q "before the dump was complete" "$WORK/remote3b/ps.log" || fail "the page server does not say why it failed"
[[ -z "$(ls "$WORK"/remote3b/page*.img 2>/dev/null)" ]] || fail "the page server left partial images: $(ls "$WORK/remote3b")"
kill -0 "$TARGET_PID" || fail "the target died with the dumper"
echo "ok: the dumper died mid-dump: the page server failed and removed its partial images"

# The target dumps fine later, and what it verifies after restore is what it had all along.
# This time a daemon (-d) on a port it picks (--port 0).
ip netns exec "$NS" "$CRSHIM" page-server -D "$WORK/remote3c" --address "$SRV_IP" --port 0 -d --pidfile "$WORK/ps3c.pid" \
  -o ps.log -v4 >"$WORK/ps3c.out" || fail "page-server -d: $(tail -2 "$WORK/remote3c/ps.log")"
port=$(sed -n 's/^Listening on port \([0-9]*\)$/\1/p' "$WORK/ps3c.out")
daemon=$(cat "$WORK/ps3c.pid")
((port > 0)) && kill -0 "$daemon" || fail "page-server -d --port 0 printed '$(cat "$WORK/ps3c.out")', pid $daemon"
"$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/local3c" -o dump.log -v4 --page-server --address "$SRV_IP" --port "$port" ||
  fail "the dump after the failures: $(tail -3 "$WORK/local3c/dump.log")"
for ((i = 0; i < 100; i++)); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
kill -0 "$daemon" 2>/dev/null && fail "the page server daemon did not exit after the dump"
grep -q "The dump is complete" "$WORK/remote3c/ps.log" || fail "the daemon did not complete: $(tail -3 "$WORK/remote3c/ps.log")"
join_images "$WORK/local3c" "$WORK/remote3c"
reap_target
restore_detached "$WORK/remote3c"
finish_and_check
echo "ok: the target dumped fine after the failed dumps and restored intact"

# ---- 5. over RPC: PAGE_SERVER_CHLD starts a page server (port 0: it picks one), DUMP with opts.ps ----
source "$SRC/tests/rpc/client.sh"
rm -f "$RESULT"
mkdir -p "$WORK/remote5" "$WORK/local5"
ip netns exec "$NS" "$PY" "$SRC/tests/rpc/crpc.py" --crshim "$CRSHIM" --images "$WORK/remote5" --log-file ps.log \
  --opt ps.address="$SRV_IP" --opt ps.port=0 PAGE_SERVER_CHLD >"$WORK/ps5.out"
expect type PAGE_SERVER "$WORK/ps5.out"
expect success 1 "$WORK/ps5.out"
ps_pid=$(field ps_pid "$WORK/ps5.out")
ps_port=$(field ps_port "$WORK/ps5.out")
((ps_pid > 0 && ps_port > 0)) || fail "PAGE_SERVER_CHLD answered pid '$ps_pid' port '$ps_port'"
start_program tp_memory
rpc --images "$WORK/local5" --pid "$TARGET_PID" --log-file dump.log --opt ps.address="$SRV_IP" --opt ps.port="$ps_port" \
  DUMP >"$WORK/dump5.out"
expect success 1 "$WORK/dump5.out"
for ((i = 0; i < 100; i++)); do kill -0 "$ps_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$ps_pid" 2>/dev/null && fail "the RPC page server did not exit after the dump"
grep -q "The dump is complete" "$WORK/remote5/ps.log" || fail "the RPC page server did not complete: $(tail -3 "$WORK/remote5/ps.log")"
join_images "$WORK/local5" "$WORK/remote5"
reap_target
restore_detached "$WORK/remote5"
finish_and_check
echo "ok: RPC PAGE_SERVER_CHLD answered pid $ps_pid port $ps_port; an RPC DUMP with opts.ps went to it; restored"

# ---- 4. Debian's criu page-server receives a crshim dump ----
if ! command -v criu >/dev/null; then
  echo "skip: criu is not installed"
  exit 0
fi
rm -f "$RESULT"
mkdir -p "$WORK/remote4"
rm -f "$WORK/status"
ip netns exec "$NS" criu page-server -D "$WORK/remote4" --address "$SRV_IP" --port "$PORT" --status-fd 3 -o ps.log -v4 \
  3>"$WORK/status" 2>>"$WORK/criu.err" &
SERVER_PID=$!
for ((i = 0; i < 200; i++)); do
  [[ -s "$WORK/status" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.05
done
if [[ ! -s "$WORK/status" ]]; then
  echo "skip: criu page-server does not run here: $(tail -2 "$WORK/remote4/ps.log" 2>/dev/null)"
  exit 0
fi
start_program tp_memory
"$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/local4" -o dump.log -v4 --page-server --address "$SRV_IP" --port "$PORT" ||
  fail "dump to criu page-server: $(tail -3 "$WORK/local4/dump.log")"
server_result
rc=$RC
((rc == 0)) || fail "criu page-server exited $rc: $(grep -i error "$WORK/remote4/ps.log" | tail -3)"
[[ -f "$WORK/remote4/pagemap-$TARGET_PID.img" ]] || fail "criu page-server wrote no pagemap"
join_images "$WORK/local4" "$WORK/remote4"
decode_all "$WORK/remote4"
reap_target
restore_detached "$WORK/remote4"
finish_and_check
echo "ok: Debian's criu page-server received a crshim dump; crit decodes it; restored from its images"
