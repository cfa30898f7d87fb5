#!/bin/bash
# FIFOs keep queued data and each open file's access mode across dump/restore.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/fifo"
cycle tp_fifo "$WORK/fifo"
crit decode -i "$WORK/img1/files.img" --pretty >"$WORK/files.json" || fail "crit files"
crit decode -i "$WORK/img1/fifo-data.img" --pretty >"$WORK/fifo-data.json" || fail "crit fifo-data"
python3 - "$WORK/files.json" "$WORK/fifo-data.json" <<'PY' || fail "FIFO entries"
import json, sys
files = json.load(open(sys.argv[1]))["entries"]
data = json.load(open(sys.argv[2]))["entries"]
by_id = {f["id"]: f for f in files}
fifos = [f for f in files if f["type"] == "FIFO"]
assert len(fifos) == 4, fifos
for f in fifos:
    reg = by_id[f["fifo"]["regf_id"]]
    assert reg["type"] == "REG" and reg["reg"]["name"].endswith(".fifo"), reg
assert sorted(d["bytes"] for d in data) == [11, 20000], data
PY
echo "ok: FIFO entries point at their path entries"
