#!/bin/bash
# A file the image refers to (an open fd, a file mapping) that changed size since the dump makes the
# restore fail with one line naming the file and both sizes, and leaves no task behind; with the file
# put back as it was, the same images restore.
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/files"

start_program tp_files "$WORK/files"
checkpoint "$WORK/img"
cp -a "$WORK/files" "$WORK/saved"
reap_target
size_of() { stat -c %s "$1"; }

# expect_refused FILE: restore must fail, naming FILE with its dump-time and current sizes.
expect_refused() {
  local file=$1 want=$2 got
  got=$(size_of "$file")
  if "$CRSHIM" restore -D "$WORK/img" -o restore-bad.log -v4 -d 2>"$WORK/err"; then
    fail "restore succeeded although $file changed"
  fi
  [[ $(wc -l <"$WORK/err") -eq 1 ]] || fail "expected one error line, got: $(cat "$WORK/err")"
  grep -q "$file" "$WORK/err" || fail "error does not name $file: $(cat "$WORK/err")"
  grep -q "size $want bytes expected, $got found" "$WORK/err" || fail "error lacks the sizes $want/$got: $(cat "$WORK/err")"
  grep -q "as it was at dump time" "$WORK/err" || fail "error lacks the hint: $(cat "$WORK/err")"
  if kill -0 "$TARGET_PID" 2>/dev/null; then fail "a task was left behind (pid $TARGET_PID)"; fi
  if pgrep -f "tp_files .*$WORK/files" >/dev/null; then fail "a task was left behind: $(pgrep -af "tp_files .*$WORK/files")"; fi
  echo "ok: refused: $(cat "$WORK/err")"
}

# An open file grew.
want=$(size_of "$WORK/files/data.txt")
echo "appended" >>"$WORK/files/data.txt"
expect_refused "$WORK/files/data.txt" "$want"
cp -a "$WORK/saved/data.txt" "$WORK/files/data.txt"

# A mapped file (no fd left open on it) grew.
want=$(size_of "$WORK/files/mapped.bin")
echo "appended" >>"$WORK/files/mapped.bin"
expect_refused "$WORK/files/mapped.bin" "$want"

# Back to the dump-time contents: the restore succeeds and the program verifies itself. Its stdout
# (opened write-only with O_APPEND, as a log) may grow meanwhile, as with CRIU.
rm -rf "$WORK/files"
cp -a "$WORK/saved" "$WORK/files"
echo "a line written by someone else after the dump" >>"$WORK/tp_files.out"
restore_detached "$WORK/img"
finish_and_check
echo "ok: restored once the files were put back"
