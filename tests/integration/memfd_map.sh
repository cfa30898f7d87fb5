#!/bin/bash
# Mapped memfds (shared with the fd open, shared with the fd closed, private, shared across fork) survive
# dump/restore; each inode is in memfd.img once and the VMAs refer to MEMFD file entries.
source "$(dirname "$0")/lib.sh"
on_checkpointed() {
  local dir=$1
  [[ -f "$dir/memfd.img" ]] || fail "no memfd.img in $dir"
  python3 - "$dir" <<'PY' || fail "memfd mapping images in $dir are wrong"
import glob, json, subprocess, sys
d = sys.argv[1]
dec = lambda f: json.loads(subprocess.check_output(["crit", "decode", "-i", f]))["entries"]
names = sorted(e["name"] for e in dec(d + "/memfd.img"))
assert names == ["map-fork", "map-only", "map-open", "map-private"], names
files = {e["id"]: e for e in dec(d + "/files.img")}
memfd_vmas = 0
for mm in glob.glob(d + "/mm-*.img"):
    for v in dec(mm)[0]["vmas"]:
        st = v["status"] if isinstance(v["status"], int) else 0
        if "MEMFD" in str(v["status"]) or st & 0x4000:
            memfd_vmas += 1
            assert files[int(v["shmid"])]["type"] == "MEMFD", v
assert memfd_vmas == 8, memfd_vmas  # A, B, C, D in the parent and its forked child
PY
}
cycle tp_memfd_map
