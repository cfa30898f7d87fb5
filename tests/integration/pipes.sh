#!/bin/bash
# Pipes keep queued data, buffer sizes and per-end flags across dump/restore; a --leave-running
# dump leaves the data in place.
source "$(dirname "$0")/lib.sh"
cycle tp_pipes
# The data image holds one entry per pipe inode (four pipes), with the queued bytes.
crit decode -i "$WORK/img1/pipes-data.img" --pretty >"$WORK/pipes-data.json" || fail "crit pipes-data"
python3 - "$WORK/pipes-data.json" <<'PY' || fail "pipes-data.img content"
import json, sys
entries = json.load(open(sys.argv[1]))["entries"]
assert len(entries) == 4, entries
sizes = sorted((e["bytes"], e["size"]) for e in entries)
assert sizes == [(0, 65536), (5, 65536), (65536, 65536), (307200, 1048576)], sizes
PY
echo "ok: pipes-data.img holds the four pipes"
