#!/bin/bash
# --link-remap: deleted-but-open files larger than --ghost-limit that the kernel can link again (an
# unlinked name of a file linked elsewhere, an O_TMPFILE file) are linked back as link_remap.N at dump,
# recorded as LINKED remaps, reopened through the link at restore and the link removed; a deleted file
# without links still becomes a ghost. A failed dump removes its links; without --link-remap the
# unlinked-but-linked file is refused with a hint.
source "$(dirname "$0")/lib.sh"
FILES=$WORK/files
mkdir -p "$FILES"
links() { find "$FILES" -maxdepth 1 -name 'link_remap.*' -printf '%f\n' | sort; }

start_program tp_link_remap "$FILES"

# Without --link-remap (and a ghost limit the O_TMPFILE file fits in): refused, the program runs on.
mkdir -p "$WORK/plain"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/plain" -o dump.log -v4 --ghost-limit 1M 2>"$WORK/err"; then
  fail "an unlinked file with other links dumped without --link-remap"
fi
grep -q "unlinked under this name but still has other hard links; hint: dump with --link-remap\( (full log: .*)\)\?$" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
kill -0 "$TARGET_PID" || fail "the program died after the refused dump"
echo "ok: without --link-remap the unlinked file is refused"

# The dump: two links (the unlinked file, the O_TMPFILE file), one ghost (the small deleted file).
checkpoint "$WORK/img1" --link-remap --ghost-limit 4K
reap_target
mapfile -t made < <(links)
((${#made[@]} == 2)) || fail "expected 2 links after the dump, found: ${made[*]:-none}"
big_ino=$(stat -c %i "$FILES/alias.dat")
linked_inos=$(for l in "${made[@]}"; do stat -c %i "$FILES/$l"; done | sort)
grep -qx "$big_ino" <<<"$linked_inos" || fail "no link is alias.dat's inode ($big_ino): $linked_inos"
decode_all "$WORK/img1"
crit decode -i "$WORK/img1/remap-fpath.img" --pretty >"$WORK/remap.txt" || fail "crit cannot decode remap-fpath.img"
# Four files (two open files of the unlinked file share one link, the O_TMPFILE file's fd and mapping
# the other).
[[ $(grep -c '"remap_type": "LINKED"' "$WORK/remap.txt") == 4 ]] || fail "expected 4 LINKED remaps: $(cat "$WORK/remap.txt")"
[[ $(grep -o '"remap_id": [0-9]*' "$WORK/remap.txt" | sort -u | wc -l) == 3 ]] || fail "expected 2 links and 1 ghost: $(cat "$WORK/remap.txt")"
[[ $(grep -c '"remap_type": "GHOST"' "$WORK/remap.txt") == 1 ]] || fail "expected 1 GHOST remap: $(cat "$WORK/remap.txt")"
crit decode -i "$WORK/img1/files.img" --pretty >"$WORK/files.txt"
for l in "${made[@]}"; do
  grep -q "\"name\": \"$FILES/$l\"" "$WORK/files.txt" || fail "files.img has no entry for $l"
done
ls "$WORK"/img1/ghost-file-*.img >/dev/null || fail "no ghost image for the small file"
echo "ok: dump made ${made[*]} and LINKED remaps for them"

# A failed restore keeps the links (as CRIU): the images can be restored again.
for point in restore:task-created restore:before-resume; do
  if CRSHIM_FAULT=$point "$CRSHIM" restore -D "$WORK/img1" -o restore.log -v4 -d 2>"$WORK/err"; then
    fail "restore with fault $point succeeded"
  fi
  grep -q "fault point $point: injected failure" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
  [[ "$(links)" == "$(printf '%s\n' "${made[@]}")" ]] || fail "the restore failing at $point changed the links: $(links)"
done
echo "ok: failed restores keep the links"
restore_detached "$WORK/img1"
[[ -z "$(links)" ]] || fail "links left after the restore: $(links)"
[[ "$(ls -A "$FILES")" == alias.dat ]] || fail "unexpected files after the restore: $(ls -A "$FILES")"
finish_and_check
echo "ok: restored through the links, links gone"

# A restored program dumped again: the unlinked file is linked again; the O_TMPFILE file, linked once
# already, cannot be and falls back to a ghost.
rm -f "$RESULT" "$FILES"/*
start_program tp_link_remap "$FILES"
checkpoint "$WORK/img2" --link-remap --ghost-limit 4K
reap_target
restore_detached "$WORK/img2"
checkpoint "$WORK/img3" --link-remap --ghost-limit 1M
[[ $(links | wc -l) == 1 ]] || fail "expected 1 link after the second dump: $(links)"
crit decode -i "$WORK/img3/remap-fpath.img" --pretty >"$WORK/remap3.txt"
[[ $(grep -c '"remap_type": "LINKED"' "$WORK/remap3.txt") == 2 ]] || fail "second dump: $(cat "$WORK/remap3.txt")"
[[ $(grep -c '"remap_type": "GHOST"' "$WORK/remap3.txt") == 3 ]] || fail "second dump: $(cat "$WORK/remap3.txt")"
sleep 0.2
restore_detached "$WORK/img3"
[[ -z "$(links)" ]] || fail "links left after the second restore: $(links)"
finish_and_check
echo "ok: a restored program dumps and restores again"

# A dump failing just after its first link, or after all of them, removes them and leaves the program
# running. (Its O_TMPFILE file loses its linkability with the first link, so the ghost limit is raised
# for it; the unlinked file is linked each time.)
reap_target
rm -f "$FILES"/*
start_program tp_link_remap "$FILES"
for point in dump:link-remap dump:images; do
  mkdir -p "$WORK/fault-${point#dump:}"
  if CRSHIM_FAULT=$point "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/fault-${point#dump:}" -o dump.log -v4 \
    --link-remap --ghost-limit 1M 2>"$WORK/err"; then
    fail "dump with fault $point succeeded"
  fi
  grep -q "fault point $point: injected failure" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
  [[ -z "$(links)" ]] || fail "the dump failing at $point left links behind: $(links)"
  kill -0 "$TARGET_PID" || fail "the program died after the dump failing at $point"
  echo "ok: a dump failing at $point removes its links"
done

finish_and_check
reap_target
echo "ok: the program runs on after the failed dump"
