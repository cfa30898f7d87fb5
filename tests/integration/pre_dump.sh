#!/bin/bash
# Incremental dumps without soft-dirty: two pre-dumps (write tracking armed in the target), then the
# program rewrites exactly 1000 pages, then a dump on top of the second pre-dump writes about those
# pages only and leaves the rest to the parent images; the restore takes every page from the right
# image. Also: a dump without --prev-images-dir after pre-dumps is complete on its own.
source "$(dirname "$0")/lib.sh"

# stat_field DIR NAME: a field of the dump statistics.
stat_field() {
  crit decode -i "$1/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('$2', 0))"
}

start_program tp_predump "$WORK"
orig=$TARGET_PID
mkdir -p "$WORK/pre1" "$WORK/pre2" "$WORK/final"
"$CRSHIM" pre-dump -t "$orig" -D "$WORK/pre1" -o pre.log -v4 || fail "pre-dump 1: $(tail -3 "$WORK/pre1/pre.log")"
kill -0 "$orig" || fail "the target does not run on after a pre-dump"
first=$(stat_field "$WORK/pre1" pages_written)
((first >= 16384)) || fail "the first pre-dump wrote $first pages, expected all 16384+"
grep -q '^[0-9]* [0-9]*$' "$WORK/pre1/crshim-tracking.txt" || fail "no tracking record"
[[ -z "$(ls "$WORK"/pre1/core-*.img 2>/dev/null)" ]] || fail "a pre-dump wrote task images"
ls /proc/"$orig"/fd | while read -r fd; do readlink "/proc/$orig/fd/$fd"; done | grep -q userfaultfd ||
  fail "no tracking userfaultfd in the target"
"$CRSHIM" pre-dump -t "$orig" -D "$WORK/pre2" --prev-images-dir ../pre1 -o pre.log -v4 ||
  fail "pre-dump 2: $(tail -3 "$WORK/pre2/pre.log")"
second=$(stat_field "$WORK/pre2" pages_written)
((second < 1000)) || fail "the second pre-dump wrote $second pages of an idle program"
[[ "$(readlink "$WORK/pre2/parent")" == ../pre1 ]] || fail "no parent link"
echo "ok: pre-dumps wrote $first then $second pages; the target runs on"

kill -USR1 "$orig"
wait_for_file "$WORK/changed"
checkpoint "$WORK/final" --prev-images-dir ../pre2 --track-mem
decode_all "$WORK/final"
written=$(stat_field "$WORK/final" pages_written)
skipped=$(stat_field "$WORK/final" pages_skipped_parent)
((written >= 1000 && written < 1300)) || fail "the dump wrote $written pages; 1000 were changed"
((skipped >= 15000)) || fail "only $skipped pages were left to the parent images"
parents=$(crit decode -i "$WORK/final/pagemap-$orig.img" |
  python3 -c "import json,sys; print(sum(1 for e in json.load(sys.stdin)['entries'][1:] if e.get('flags') in (1, 'PE_PARENT')))")
((parents > 0)) || fail "no PE_PARENT entries in the pagemap"
echo "ok: the dump after the pre-dumps wrote $written pages and left $skipped to its parents"
reap_target
restore_detached "$WORK/final"
finish_and_check
echo "ok: restored from three images (final -> pre2 -> pre1); every page checked"

# A plain dump of a pre-dumped process needs no parent and leaves no tracking behind (--leave-running).
rm -f "$RESULT" "$WORK/changed"
start_program tp_predump "$WORK"
mkdir -p "$WORK/pre3" "$WORK/full"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/pre3" -o pre.log || fail "pre-dump 3"
checkpoint "$WORK/full" --leave-running
ls /proc/"$TARGET_PID"/fd | while read -r fd; do readlink "/proc/$TARGET_PID/fd/$fd"; done | grep -q userfaultfd &&
  fail "a dump without --track-mem left the tracking userfaultfd in the target"
finish_and_check
reap_target
rm -f "$RESULT"
restore_detached "$WORK/full"
finish_and_check
echo "ok: a full dump after a pre-dump restores on its own and disarms the tracking"

# A dump that arms the tracking and then fails leaves the task's fd table as it was.
rm -f "$RESULT"
start_program tp_predump "$WORK"
fds_before=$(ls /proc/"$TARGET_PID"/fd | wc -l)
mkdir -p "$WORK/failed"
if CRSHIM_FAULT=dump:images "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/failed" --track-mem -o dump.log -v4 2>/dev/null; then
  fail "the dump with an injected fault succeeded"
fi
ls /proc/"$TARGET_PID"/fd | while read -r fd; do readlink "/proc/$TARGET_PID/fd/$fd"; done | grep -q userfaultfd &&
  fail "a failed dump left its tracking userfaultfd in the target"
(($(ls /proc/"$TARGET_PID"/fd | wc -l) == fds_before)) || fail "the failed dump changed the target's fd count"
finish_and_check
reap_target
echo "ok: a failed dump with --track-mem disarms the tracking it armed"

# The same over RPC, as runc --pre-dump drives it: FEATURE_CHECK says mem_track, PRE_DUMP, then a
# DUMP naming the pre-dump as parent_img.
source "$SRC/tests/rpc/client.sh"
rpc --feature mem_track FEATURE_CHECK >"$WORK/feat.out"
expect features.mem_track 1 "$WORK/feat.out"
rm -f "$RESULT" "$WORK/changed"
start_program tp_predump "$WORK"
mkdir -p "$WORK/rpc-pre" "$WORK/rpc-final"
rpc --images "$WORK/rpc-pre" --pid "$TARGET_PID" --log-file pre.log --opt track_mem=true PRE_DUMP >"$WORK/pre.out"
expect type PRE_DUMP "$WORK/pre.out"
expect success 1 "$WORK/pre.out"
kill -USR1 "$TARGET_PID"
wait_for_file "$WORK/changed"
rpc --images "$WORK/rpc-final" --pid "$TARGET_PID" --log-file dump.log --opt track_mem=true --opt parent_img=../rpc-pre \
  DUMP >"$WORK/final.out"
expect success 1 "$WORK/final.out"
written=$(stat_field "$WORK/rpc-final" pages_written)
((written >= 1000 && written < 1300)) || fail "the RPC dump wrote $written pages; 1000 were changed"
reap_target
restore_detached "$WORK/rpc-final"
finish_and_check
echo "ok: FEATURE_CHECK mem_track, PRE_DUMP and an incremental DUMP over RPC ($written pages)"
