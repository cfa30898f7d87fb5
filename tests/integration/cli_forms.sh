#!/bin/bash
# CRIU's long option forms, a separate work dir, --pidfile, and a foreground restore that waits for
# the restored task and exits with its status.
source "$(dirname "$0")/lib.sh"

start_program tp_memory
mkdir -p "$WORK/img" "$WORK/work"
"$CRSHIM" dump --tree "$TARGET_PID" --images-dir "$WORK/img" --work-dir "$WORK/work" --log-file d.log -v4 ||
  fail "dump with long options"
[[ -s "$WORK/work/d.log" && -f "$WORK/work/stats-dump" ]] || fail "log and stats-dump belong in the work dir"
[[ ! -e "$WORK/img/d.log" ]] || fail "the log went to the images dir"
reap_target
"$CRSHIM" restore --images-dir "$WORK/img" -W "$WORK/work" -o r.log --pidfile "$WORK/pid" &
RESTORER=$!
wait_for_file "$WORK/pid"
[[ $(cat "$WORK/pid") == "$TARGET_PID" ]] || fail "pidfile says $(cat "$WORK/pid"), expected $TARGET_PID"
kill -TERM "$TARGET_PID"
wait "$RESTORER"
rc=$?
[[ $rc == 0 ]] || fail "foreground restore exited $rc, the task exited 0"
[[ $(cat "$RESULT") == PASS ]] || fail "$(cat "$RESULT")"
if "$CRSHIM" dump --tree 1 --bogus-option 2>"$WORK/err"; then fail "unknown option accepted"; fi
grep -q "bogus-option" "$WORK/err" || fail "unknown option error does not name it: $(cat "$WORK/err")"
if "$CRSHIM" restore -D "$WORK/img" -d --auto-dedup --stream 2>"$WORK/err"; then fail "unsupported options accepted"; fi
grep -q "options: not supported yet: --auto-dedup, --stream; hint: leave them out" "$WORK/err" ||
  fail "unsupported options error: $(cat "$WORK/err")"
echo "ok: long forms, work dir, pidfile, foreground restore exit status, unknown and unsupported options refused"

# --log-format json: every log line is one JSON object, the last one saying the dump finished.
start_program tp_memory
"$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img-json" -o dump.log -v4 --log-format json --leave-running ||
  fail "dump with --log-format json failed"
python3 - "$WORK/img-json/dump.log" <<'PY' || fail "the JSON log does not parse: $(head -3 "$WORK/img-json/dump.log")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) > 5, len(lines)
assert all({"time", "pid", "level", "file", "line", "msg"} <= set(l) for l in lines)
assert any(l["msg"] == "Dumping finished successfully" and l["level"] == "info" for l in lines)
PY
finish_and_check
echo "ok: --log-format json writes one JSON object per line"

# check --feature NAME, with CRIU's names and output: what lazy migration (uffd-noncoop) and pre-dumps
# (mem_dirty_track) need is here; an unknown name is an error naming it.
out=$("$CRSHIM" check --feature uffd-noncoop --feature mem_dirty_track) || fail "check --feature: exit $?: $out"
[[ $out == $'uffd-noncoop is supported\nmem_dirty_track is supported' ]] || fail "check --feature printed: $out"
"$CRSHIM" check --feature list | grep -qx pidfd_store || fail "check --feature list lacks pidfd_store"
if "$CRSHIM" check --feature bogus 2>"$WORK/err"; then fail "check --feature bogus succeeded"; fi
grep -qx "Error: check failed: unknown feature 'bogus'; hint: \`crshim check --feature list\` names them" "$WORK/err" ||
  fail "unclear error: $(cat "$WORK/err")"
echo "ok: check --feature: $(echo $out)"
