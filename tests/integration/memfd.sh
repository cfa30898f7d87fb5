#!/bin/bash
# Memfds (contents with a hole, seals, mode, positions, shared inode) survive dump/restore and a second
# checkpoint; the contents are in memfd.img + pagemap-shmem-<shmid>.img + pages.
source "$(dirname "$0")/lib.sh"
on_checkpointed() {
  local dir=$1 n sizes
  [[ -f "$dir/memfd.img" ]] || fail "no memfd.img in $dir"
  n=$(crit decode -i "$dir/memfd.img" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["entries"]))')
  ((n == 2)) || fail "memfd.img has $n inodes, expected 2"
  n=$(ls "$dir"/pagemap-shmem-*.img | wc -l)
  ((n == 2)) || fail "expected 2 shmem pagemaps in $dir, found $n"
  # Each pagemap names its pages image: 3 MiB of data in the big memfd (the hole left out), 1 page in the small one.
  sizes=$(for p in "$dir"/pagemap-shmem-*.img; do
    id=$(crit decode -i "$p" | python3 -c 'import json, sys; print(json.load(sys.stdin)["entries"][0]["pages_id"])')
    stat -c %s "$dir/pages-$id.img"
  done | sort -n | tr '\n' ' ')
  [[ "$sizes" == "4096 3145728 " ]] || fail "memfd pages images hold '$sizes' bytes"
}
cycle tp_memfd
