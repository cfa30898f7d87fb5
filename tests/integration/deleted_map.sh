#!/bin/bash
# Mappings of deleted files (private with copy-on-write pages, shared with and without an open fd) come
# back from ghost images: one ghost per inode, contents, flags and offsets kept, files still deleted.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"
cycle tp_deleted_map "$WORK/files"
n=$(ls "$WORK"/img1/ghost-file-*.img | wc -l)
((n == 3)) || fail "expected 3 ghost images (one per deleted inode), found $n"
crit decode -i "$WORK/img1/remap-fpath.img" --pretty >"$WORK/remap.txt" || fail "crit cannot decode remap-fpath.img"
grep -q '"remap_type": "GHOST"' "$WORK/remap.txt" || fail "no GHOST remap: $(cat "$WORK/remap.txt")"
[[ -z $(ls -A "$WORK/files") ]] || fail "restore left files behind: $(ls -A "$WORK/files")"
echo "ok: deleted-file mappings restored from ghosts"
