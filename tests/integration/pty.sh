#!/bin/bash
# A pty pair survives dump/restore: master and slave in one process, a session whose controlling
# terminal is the slave with a foreground group in another process, raw termios with VMIN 7, a 33x101
# window, packet mode, an exclusive slave and bytes queued in both directions (tp_pty checks it all
# after restore).
source "$(dirname "$0")/lib.sh"

# The image: TTY files, both sides' tty_info with the session and foreground group, the queued bytes.
on_checkpointed() {
  local dir=$1
  [[ -f "$dir/tty-info.img" ]] || fail "no tty-info.img in $dir"
  crit decode -i "$dir/tty-info.img" >"$WORK/tty-info.json" || fail "crit cannot decode tty-info.img"
  python3 - "$WORK/tty-info.json" "$dir/tty-data.img" <<'PY' || fail "tty images do not hold what tp_pty set up"
import json, subprocess, sys
infos = json.load(open(sys.argv[1]))["entries"]
sides = {e["id"] & 1: e for e in infos}
assert set(sides) == {0, 1}, "expected a master and a slave tty_info, got %r" % [e["id"] for e in infos]
s = sides[0]
assert s["type"] == "PTY" and s["winsize"]["ws_row"] == 33 and s["winsize"]["ws_col"] == 101, s
assert s["termios"]["c_cc"][6] == 7, "VMIN %r" % s["termios"]["c_cc"][6]
assert sides[1]["packet_mode"] and s["exclusive"] and not sides[1]["exclusive"], "modes %r" % infos
assert s["sid"] != 0 and s["pgrp"] not in (0, s["sid"]), "sid %r pgrp %r" % (s["sid"], s["pgrp"])
data = json.loads(subprocess.check_output(["crit", "decode", "-i", sys.argv[2]]))["entries"]
got = {e["tty_id"] & 1: e["data"] for e in data}
assert set(got) == {0, 1}, "tty-data holds %r" % got
PY
}

cycle tp_pty
