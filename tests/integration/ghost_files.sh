#!/bin/bash
# Deleted-but-open files travel in the image (ghost-file-*.img) and come back deleted; a file larger
# than --ghost-limit is refused with a hint and the program runs on.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"
cycle tp_ghost "$WORK/files"
ls "$WORK"/img1/ghost-file-*.img >/dev/null || fail "no ghost image"
[[ -z $(ls -A "$WORK/files") ]] || fail "restore left files behind: $(ls -A "$WORK/files")"

start_program tp_ghost "$WORK/files"
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/small" --ghost-limit 4K 2>"$WORK/err"; then fail "ghost over the limit dumped"; fi
grep -q "more than the ghost limit of 4096" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -q "; hint: raise --ghost-limit\( (full log: .*)\)\?$" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
# --link-remap does not help with files deleted the ordinary way: the hint says so.
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/small" --ghost-limit 4K --link-remap 2>"$WORK/err"; then
  fail "ghost over the limit dumped with --link-remap"
fi
grep -qF "more than the ghost limit of 4096; hint: raise --ghost-limit (--link-remap cannot help: the kernel links a file without links only if it is an O_TMPFILE file never linked before)" \
  "$WORK/err" || fail "no hint for --link-remap: $(cat "$WORK/err")"
finish_and_check
echo "ok: ghost files restored; over the limit refused"
