#!/bin/bash
# Established TCP connections with --tcp-established: a connection to an echo server outside the tree
# and a connection with both ends inside, each with unread data queued, survive dump -> kill -> restore
# (twice) and --leave-running. Without the option such a process is refused before it is frozen.
source "$(dirname "$0")/lib.sh"

python3 "$(dirname "$0")/tcp_echo_server.py" "$WORK/echo.port" "$WORK/echo.errors" &
ECHO=$!
at_exit 'kill $ECHO 2>/dev/null'
wait_for_file "$WORK/echo.port"
PORT=$(cat "$WORK/echo.port")

# Refused without the option, before freezing: the error names the connection and the option.
start_program tp_tcp_est "$PORT"
mkdir -p "$WORK/refused"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/refused" -o dump.log -v4 2>"$WORK/refused.err"; then
  fail "dump of established connections without --tcp-established succeeded"
fi
grep -q "established TCP connection 127.0.0.1:[0-9]* -> 127.0.0.1:$PORT" "$WORK/refused.err" || fail "unclear error: $(cat "$WORK/refused.err")"
grep -q -- "--tcp-established" "$WORK/refused.err" || fail "no hint: $(cat "$WORK/refused.err")"
grep -q "pid $TARGET_PID" "$WORK/refused.err" || fail "no pid: $(cat "$WORK/refused.err")"
kill -0 "$TARGET_PID" || fail "the refused target died"
[[ "$(awk '{print $3}' /proc/$TARGET_PID/stat)" != t ]] || fail "the refused target is left stopped"
finish_and_check
reap_target
echo "ok: refused without --tcp-established, and the connections still work"

# dump -> kill -> restore, then again from the restored process.
start_program tp_tcp_est "$PORT"
checkpoint "$WORK/img1" --tcp-established
decode_all "$WORK/img1"
reap_target
restore_detached "$WORK/img1" --tcp-established
checkpoint "$WORK/img2" --tcp-established
decode_all "$WORK/img2"
sleep 0.2
restore_detached "$WORK/img2" --tcp-established
finish_and_check
echo "ok: dump -> kill -> restore -> dump -> restore, connections continue"

ls "$WORK/img1"/tcp-stream-*.img >/dev/null || fail "no tcp-stream images"
[[ $(ls "$WORK/img1"/tcp-stream-*.img | wc -l) == 3 ]] || fail "want 3 tcp-stream images: $(ls "$WORK/img1")"
for img in "$WORK/img1"/tcp-stream-*.img; do
  crit decode -i "$img" --pretty >"$img.json" || fail "crit $img"
done
python3 - "$WORK/img1" <<'PY' || fail "tcp-stream content"
import glob, json, sys
lens = sorted(json.load(open(f))["entries"][0]["inq_len"] for f in glob.glob(sys.argv[1] + "/tcp-stream-*.json"))
assert lens == [11, 23, 23], lens
for f in glob.glob(sys.argv[1] + "/tcp-stream-*.json"):
    e = json.load(open(f))["entries"][0]
    assert e["mss_clamp"] > 0 and e["outq_len"] == 0 and e["snd_wnd"] > 0, e
PY
echo "ok: tcp-stream images hold the queued bytes"

# --leave-running: the original keeps its connections.
start_program tp_tcp_est "$PORT"
checkpoint "$WORK/img3" --tcp-established --leave-running
finish_and_check
reap_target
echo "ok: --leave-running keeps the connections working"
# A dump that fails after the sockets were repaired resumes the tree with working connections.
start_program tp_tcp_est "$PORT"
mkdir -p "$WORK/img4"
if CRSHIM_FAULT=dump:images "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img4" -o dump.log -v4 --tcp-established 2>"$WORK/fault.err"; then
  fail "the dump with an injected fault succeeded"
fi
ls "$WORK/img4"/tcp-stream-*.img >/dev/null 2>&1 || fail "the fault came before the sockets were dumped"
finish_and_check
reap_target
echo "ok: a failed dump leaves the connections working"
[[ ! -s "$WORK/echo.errors" ]] || fail "the echo server saw errors: $(cat "$WORK/echo.errors")"
