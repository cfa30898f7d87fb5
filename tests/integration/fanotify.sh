#!/bin/bash
# Fanotify groups keep their inode marks, mount marks and ignored masks across dump and restore (the
# program checks the events it gets); filesystem marks and marks for permission events are refused
# before the tree is frozen.
source "$(dirname "$0")/lib.sh"
FILES=$WORK/files
mkdir -p "$FILES"
# A mount of its own: the mount mark then sees only the program's opens.
mount -t tmpfs -o size=1M crshim-fanotify "$FILES" || fail "cannot mount a tmpfs"
at_exit 'umount -l "$FILES" 2>/dev/null'
cycle tp_fanotify "$FILES"
crit decode -i "$WORK/img1/files.img" --pretty >"$WORK/files.txt" || fail "crit cannot decode files.img"
grep -q '"type": "FANOTIFY"' "$WORK/files.txt" || fail "no FANOTIFY file entry"
[[ $(grep -c '"type": "INODE"' "$WORK/files.txt") == 2 ]] || fail "expected 2 inode marks"
[[ $(grep -c '"type": "MOUNT"' "$WORK/files.txt") == 1 ]] || fail "expected 1 mount mark"
grep -q "\"path\": \"$FILES\"" "$WORK/files.txt" || fail "the mount mark does not name $FILES"
echo "ok: fanotify marks in files.img"

start_program tp_fanotify "$FILES" fs
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/fs" -o dump.log -v4 2>"$WORK/err"; then fail "a filesystem mark dumped"; fi
grep -q "fd 3 (fanotify filesystem mark (FAN_MARK_FILESYSTEM), which the image format cannot describe)" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
grep -qF "; hint: close them before checkpointing, or wait for support of these file kinds" "$WORK/err" || fail "no hint: $(cat "$WORK/err")"
finish_and_check
reap_target
echo "ok: a filesystem mark is refused and the program runs on"

rm -f "$RESULT"
start_program tp_fanotify "$FILES" perm
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/perm" -o dump.log -v4 2>"$WORK/err"; then fail "a permission mark dumped"; fi
grep -q "asks for permission events" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
finish_and_check
echo "ok: a mark for permission events is refused and the program runs on"
