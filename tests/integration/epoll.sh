#!/bin/bash
# Epoll targets (events, data, EPOLLET, EPOLLEXCLUSIVE, nesting) survive dump/restore and a second
# checkpoint; an epoll whose target cannot be restored makes the dump refuse, naming the target fd.
source "$(dirname "$0")/lib.sh"
cycle tp_epoll

# expect_refusal MODE PATTERN: the dump fails before freezing, with PATTERN in its error; the task lives on.
expect_refusal() {
  local mode=$1 pattern=$2 dir=$WORK/refused-$1
  start_program tp_epoll "$mode"
  mkdir -p "$dir"
  if "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 2>"$WORK/refused.err"; then
    fail "dump of an epoll with a $mode succeeded"
  fi
  grep -q -- "$pattern" "$dir/dump.log" "$WORK/refused.err" || fail "no '$pattern' in: $(tail -2 "$dir/dump.log")"
  finish_and_check
  reap_target
  echo "ok: epoll with a $mode refused"
}
expect_refusal closed-target "fd 3 (epoll whose target fd 4 is closed"
expect_refusal socket-target "target fd 71 ("
