#!/bin/bash
# 50 checkpoint/restore cycles in a row of a workload that keeps changing (memory, mappings, files, a
# pipe) and checks itself all the time; every cycle kills the target and restores it from fresh images.
source "$(dirname "$0")/lib.sh"

CYCLES=${STRESS_CYCLES:-50}
start_program tp_stress
orig=$TARGET_PID
for ((i = 1; i <= CYCLES; i++)); do
  dir=$WORK/img
  rm -rf "$dir"
  checkpoint "$dir"
  reap_target
  restore_detached "$dir"
  [[ -e "$RESULT" ]] && fail "cycle $i: the workload stopped: $(cat "$RESULT")"
  kill -0 "$orig" 2>/dev/null || fail "cycle $i: pid $orig is not running after the restore"
  sleep 0.03  # let it run a few generations on restored state before the next dump
done
finish_and_check
echo "ok: $CYCLES dump/kill/restore cycles of a changing workload ($(tail -1 "$WORK/tp_stress.out"))"
