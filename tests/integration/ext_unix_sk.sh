#!/bin/bash
# Unix sockets whose peers are outside the dumped tree: refused by default; with --ext-unix-sk a
# datagram socket connected to a bound server is recorded with an external peer entry and connected
# to the server's path again at restore, and a stream connection comes back from --inherit-fd.
source "$(dirname "$0")/lib.sh"

DG=$WORK/dg.sock
ST=$WORK/st.sock
# The outside servers: every datagram and every line of every stream connection goes to a log.
python3 - "$DG" "$ST" "$WORK/server.log" "$WORK/server.ready" <<'PY' &
import os, select, socket, sys
dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); dg.bind(sys.argv[1])
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); ls.bind(sys.argv[2]); ls.listen(8)
log = open(sys.argv[3], "a", buffering=1)
open(sys.argv[4], "w").write("ready")
conns, n = {}, 0
while True:
    r, _, _ = select.select([dg, ls] + list(conns), [], [], 60)
    if not r: break
    for s in r:
        if s is dg: log.write("dgram %s\n" % dg.recv(4096).decode())
        elif s is ls:
            c, _ = ls.accept(); n += 1; conns[c] = n
        else:
            data = s.recv(4096)
            if not data: del conns[s]; continue
            for line in data.decode().split():
                log.write("stream%d %s\n" % (conns[s], line))
PY
SERVER=$!
at_exit 'kill $SERVER 2>/dev/null'
wait_for_file "$WORK/server.ready"

start_program tp_ext_unix "$DG" "$ST"
ino_of() { readlink "/proc/$TARGET_PID/fd/$1" | tr -dc 0-9; }
DG_INO=$(ino_of 10)
ST_INO=$(ino_of 11)

# 1. Without the option: refused, naming the way out; the target lives on.
mkdir -p "$WORK/refused"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump.log -v4 2>"$WORK/refused.err"; then
  fail "dump of sockets with outside peers succeeded without --ext-unix-sk"
fi
grep -q -- "--ext-unix-sk" "$WORK/refused.err" || fail "unclear error: $(cat "$WORK/refused.err")"
kill -0 "$TARGET_PID" || fail "the refused target died"
# Naming only the stream socket still refuses the datagram one.
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump2.log -v4 --external "unix[$ST_INO]" 2>"$WORK/refused2.err"; then
  fail "dump succeeded with only unix[$ST_INO] external"
fi
grep -q "unix socket $DG_INO" "$WORK/refused2.err" || fail "the datagram socket is not named: $(cat "$WORK/refused2.err")"
echo "ok: outside peers refused by default"

# 2. Dump with --ext-unix-sk: the stream socket is external itself, the datagram one keeps its peer,
#    which is recorded as an external entry with the server's name.
checkpoint "$WORK/img" --ext-unix-sk
decode_all "$WORK/img"
python3 - "$WORK/img" "$DG_INO" "$ST_INO" "$DG" <<'PY' || fail "files.img does not describe the outside peers"
import base64, json, subprocess, sys
d, dg, st, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
files = json.loads(subprocess.check_output(["crit", "decode", "-i", d + "/files.img"]))["entries"]
usk = {e["usk"]["ino"]: e["usk"] for e in files if e["type"] == "UNIXSK"}
s = usk[st]
assert s["uflags"] == 1 and s["peer"] == 0, s
g = usk[dg]
assert g["uflags"] == 0 and g["peer"] != 0, g
p = usk[g["peer"]]
assert p["uflags"] == 1, p
name = p["name"]
assert path in name or path in base64.b64decode(name + "==").decode(errors="replace"), name
PY
reap_target
grep -q "dgram dgram-before" "$WORK/server.log" || fail "the server never heard the target"

# 3. Restore without the stream socket: refused with the key to pass.
if "$CRSHIM" restore -D "$WORK/img" -o restore-noinherit.log -v4 -d 2>"$WORK/noinherit.err"; then
  fail "restore without --inherit-fd for the external stream socket succeeded"
fi
grep -qF "its peer was outside the dumped tree and no inherited fd stands in for it; hint: pass --inherit-fd fd[N]:socket:[$ST_INO] with a connected socket N" \
  "$WORK/noinherit.err" || fail "unclear error: $(cat "$WORK/noinherit.err")"

# 4. Restore with a fresh connection to the stream server as socket:[ST_INO].
python3 - "$CRSHIM" "$WORK/img" "$ST" "$ST_INO" <<'PY' || fail "restore failed: $(tail -3 "$WORK/img/restore.log")"
import os, socket, sys
crshim, img, path, ino = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
fd = s.fileno()
os.set_inheritable(fd, True)
os.execv(crshim, [crshim, "restore", "-D", img, "-o", "restore.log", "-v4", "-d",
                  "--inherit-fd", "fd[%d]:socket:[%s]" % (fd, ino)])
PY
kill -0 "$TARGET_PID" || fail "no restored target (pid $TARGET_PID)"
finish_and_check
for want in "dgram dgram-after" "stream1 stream-before" "stream2 stream-after"; do
  for ((i = 0; i < 100; i++)); do grep -q "$want" "$WORK/server.log" && break; sleep 0.05; done
  grep -q "$want" "$WORK/server.log" || fail "the server did not get '$want': $(cat "$WORK/server.log")"
done
echo "ok: --ext-unix-sk dump, restore reconnecting the datagram socket and inheriting the stream one"
