# Two "hosts" for live-migration tests, each a network namespace joined to this one by a veth (this
# namespace is the client's network): A (the source) holds the service address S, routed there from
# here; B is the destination. A client script streams patterned data to S and checks every echoed byte.
# Source after lib.sh. Sets NSA NSB IFA IFB A_HOST A_IP B_HOST B_IP S SPORT PSPORT MIB HA HB ino_a ino_b,
# CLIENT_PID SERVER_PID DAEMON_PID (killed at exit), CST (the client's state dir).
command -v ip >/dev/null || fail "ip(8) is needed (package iproute2)"
command -v nsenter >/dev/null || fail "nsenter(1) is needed (package util-linux)"
command -v iptables-save >/dev/null || fail "iptables is needed"

N=$((($$ % 200) + 20))
NSA=crmig-a-$$
NSB=crmig-b-$$
IFA=cma$$
IFB=cmb$$
A_HOST=10.238.$N.1 A_IP=10.238.$N.2
B_HOST=10.237.$N.1 B_IP=10.237.$N.2
S=10.239.$N.10
SPORT=7707
PSPORT=27107
MIB=64
HA=$WORK/hostA  # the source's disk: what the dumps keep locally
HB=$WORK/hostB  # the destination's disk: what its page servers receive
CLIENT_PID='' SERVER_PID='' DAEMON_PID=''

mig_cleanup() {
  local p
  for p in $CLIENT_PID $SERVER_PID $DAEMON_PID; do kill -9 "$p" 2>/dev/null; done
  for p in $(ip netns pids "$NSA" 2>/dev/null) $(ip netns pids "$NSB" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip route del "$S/32" 2>/dev/null
  ip link del "$IFA" 2>/dev/null
  ip link del "$IFB" 2>/dev/null
  ip netns del "$NSA" 2>/dev/null
  ip netns del "$NSB" 2>/dev/null
}
at_exit mig_cleanup

# host NS IF HOST_IP IP: a namespace with a veth to this one and a default route back here.
host() {
  ip netns add "$1" || fail "ip netns add $1"
  ip link add "$2" type veth peer name eth0 netns "$1" || fail "ip link add $2"
  ip addr add "$3/24" dev "$2"
  ip link set "$2" up
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$4/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" route add default via "$3"
}
host "$NSA" "$IFA" "$A_HOST" "$A_IP"
host "$NSB" "$IFB" "$B_HOST" "$B_IP"
ip -n "$NSA" addr add "$S/32" dev lo
ip route add "$S/32" via "$A_IP"
ino_a=$(stat -L -c %i "/run/netns/$NSA")
ino_b=$(stat -L -c %i "/run/netns/$NSB")

stat_field() {  # DIR NAME: a field of the dump statistics
  crit decode -i "$1/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('$2', 0))"
}

calc() { awk "BEGIN {print $1}"; }

# timed LOG CMD...: runs CMD, appending "real user sys" seconds to LOG.
timed() {
  local log=$1 t0 rc=0
  shift
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$log.cpu" "$@" || rc=$?
  echo "$(calc "$(date +%s.%N) - $t0") $(cat "$log.cpu")" >>"$log"
  return $rc
}

# ---- the client: streams the pattern to S, checks the echo, records progress.
cat >"$WORK/client.py" <<'EOF'
import os, socket, sys, threading, time
addr, port, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PERIOD, CHUNK = 65521, 2000
table = bytes((((i * 2654435761) & 0xFFFFFFFF) >> 13) & 0xFF for i in range(PERIOD)) * 2
def pattern(off, n):  # n <= PERIOD
    s = off % PERIOD
    return table[s:s + n]
def put(name, text):
    with open(f"{state}/{name}.tmp", "w") as f:
        f.write(text)
    os.rename(f"{state}/{name}.tmp", f"{state}/{name}")
s = socket.create_connection((addr, port), timeout=10)
s.settimeout(None)
put("local", "%s %d\n" % s.getsockname())
sent, err = 0, []
def sender():
    global sent
    try:
        while not os.path.exists(state + "/stop"):
            s.sendall(pattern(sent, CHUNK))
            sent += CHUNK
            time.sleep(0.01)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        err.append("send after %d bytes: %s" % (sent, e))
t = threading.Thread(target=sender)
t.start()
got, last, gap, written = 0, time.monotonic(), 0.0, 0.0
try:
    while True:
        d = s.recv(65536)
        now = time.monotonic()
        gap, last = max(gap, now - last), now
        if not d:
            break
        if d != pattern(got, len(d)):
            err.append("echoed bytes %d..%d differ from what was sent" % (got, got + len(d)))
            break
        got += len(d)
        if now - written > 0.05:
            put("progress", "%d\n" % got)
            written = now
except OSError as e:
    err.append("recv after %d bytes: %s" % (got, e))
t.join()
put("progress", "%d\n" % got)
if not err and got != sent:
    err.append("sent %d bytes, %d came back" % (sent, got))
put("result", ("FAIL: " + "; ".join(err) if err else "PASS sent=%d echoed=%d max_gap=%.2f" % (sent, got, gap)) + "\n")
EOF
CST=$WORK/client
mkdir -p "$CST"
progress() { cat "$CST/progress" 2>/dev/null || echo 0; }
# wait_progress BYTES SECONDS WHAT: until the client has BYTES echoed.
wait_progress() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    (($(progress) >= $1)) && return 0
    [[ ! -e $CST/result ]] || fail "$3: the client ended: $(cat "$CST/result")"
    sleep 0.05
  done
  fail "$3: the client has $(progress) bytes echoed, waited for $1"
}


# start_client: the client streams to S:SPORT from here; returns once 20000 bytes came back. Sets
# CLIENT_PID, C_IP and C_PORT (its end of the connection).
start_client() {
  python3 "$WORK/client.py" "$S" "$SPORT" "$CST" 2>"$WORK/client.err" &
  CLIENT_PID=$!
  wait_for_file "$CST/local"
  read -r C_IP C_PORT <"$CST/local"
  wait_progress 20000 10 "before the dumps"
}

# finish_client LINE: the client closes; every byte it sent came back in order, and line LINE of the
# server's log ($SRVLOG, one line per connection closed) counts as many. Sets sent and gap (the
# longest time without an echo, seconds).
finish_client() {
  local result i
  touch "$CST/stop"
  wait_for_file "$CST/result" 30
  wait "$CLIENT_PID" || true
  CLIENT_PID=
  result=$(cat "$CST/result")
  [[ $result == PASS* ]] || fail "client: $result"
  sent=$(sed -E 's/.*sent=([0-9]+).*/\1/' <<<"$result")
  gap=$(sed -E 's/.*max_gap=([0-9.]+).*/\1/' <<<"$result")
  for ((i = 0; i < 100; i++)); do (($(wc -l <"$SRVLOG") >= $1)) && break; sleep 0.05; done
  [[ $(sed -n "$1p" "$SRVLOG") == "bytes $sent" ]] || fail "the server logged '$(sed -n "$1p" "$SRVLOG")', the client sent $sent"
}
