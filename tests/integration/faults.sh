#!/bin/bash
# Every fault point: a failed dump leaves the target running exactly as before (it passes its own
# checks), a failed restore leaves no task behind and the images byte-identical.
source "$(dirname "$0")/lib.sh"

DUMP_POINTS=(dump:frozen dump:pages dump:images)
RESTORE_POINTS=(restore:task-created restore:memory restore:threads restore:before-resume)
PROGRAMS_UNDER_TEST=(tp_memory tp_threads tp_signals)
outcomes=0

for prog in "${PROGRAMS_UNDER_TEST[@]}"; do
  for point in "${DUMP_POINTS[@]}"; do
    start_program "$prog"
    dir=$WORK/$prog-${point//:/-}
    mkdir -p "$dir"
    if CRSHIM_FAULT=$point "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 2>"$WORK/err"; then
      fail "dump of $prog with fault $point succeeded"
    fi
    grep -q "injected failure" "$WORK/err" || fail "dump with $point: unexpected error: $(cat "$WORK/err")"
    kill -0 "$TARGET_PID" || fail "$prog died after the failed dump at $point"
    finish_and_check
    reap_target
    outcomes=$((outcomes + 1))
    echo "ok: $prog survives a dump failing at $point"
  done
done

for prog in "${PROGRAMS_UNDER_TEST[@]}"; do
  start_program "$prog"
  checkpoint "$WORK/$prog-img"
  reap_target
  before=$(cd "$WORK/$prog-img" && sha256sum -- *.img | sha256sum)
  for point in "${RESTORE_POINTS[@]}"; do
    if CRSHIM_FAULT=$point "$CRSHIM" restore -D "$WORK/$prog-img" -o restore.log -v4 -d 2>"$WORK/err"; then
      fail "restore of $prog with fault $point succeeded"
    fi
    grep -q "injected failure" "$WORK/err" || fail "restore with $point: unexpected error: $(cat "$WORK/err")"
    if kill -0 "$TARGET_PID" 2>/dev/null; then fail "pid $TARGET_PID left behind by the restore failing at $point"; fi
    after=$(cd "$WORK/$prog-img" && sha256sum -- *.img | sha256sum)
    [[ "$before" == "$after" ]] || fail "images changed by the restore failing at $point"
    outcomes=$((outcomes + 1))
    echo "ok: $prog restore failing at $point leaves nothing behind"
  done
  restore_detached "$WORK/$prog-img"
  finish_and_check
  echo "ok: $prog restores after the failed attempts"
done

echo "fault matrix: $(( ${#DUMP_POINTS[@]} + ${#RESTORE_POINTS[@]} )) points x ${#PROGRAMS_UNDER_TEST[@]} programs = $outcomes outcomes checked"
