#!/bin/bash
# Restoring while the pid is held by a live process fails fast with a clear error and creates nothing.
source "$(dirname "$0")/lib.sh"

start_program tp_memory
checkpoint "$WORK/img" --leave-running
start=$(date +%s%N)
if "$CRSHIM" restore -D "$WORK/img" -o restore.log -d 2>"$WORK/err"; then fail "restore over a live pid succeeded"; fi
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "the pid is used by a live process (tp_memory)" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
((elapsed_ms < 5000)) || fail "took ${elapsed_ms} ms to give up"
[[ $(wc -l <"$WORK/err") -eq 1 ]] || fail "error is not one line: $(cat "$WORK/err")"
finish_and_check
echo "ok: restore over a live pid refused in ${elapsed_ms} ms: $(cat "$WORK/err")"
