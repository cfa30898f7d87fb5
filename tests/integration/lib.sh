# Shared helpers for integration tests: start a test program, checkpoint it, restore it, check it.
# Tests run under tests/programs/reaper (a child subreaper) so restored orphans are reaped at once.
set -euo pipefail

: "${CRSHIM:?path to the crshim binary}"
: "${PROGRAMS:?directory of the test programs}"

if [[ -z "${CRSHIM_UNDER_REAPER:-}" ]]; then
  export CRSHIM_UNDER_REAPER=1
  exec "$PROGRAMS/reaper" bash "$0" "$@"
fi

# Descriptors inherited from whatever runs the tests would become part of every dumped task.
for fd in $(ls /proc/$$/fd); do
  if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
done

WORK=$(mktemp -d /tmp/crshim-test.XXXXXX)
KEEP_WORK=${KEEP_WORK:-}
AT_EXIT=()
# at_exit CMD: CMD (a string, evaluated) runs when the test exits, newest first, after the target is
# killed and before the work dir is removed, whatever the test's outcome (in TEST_STATUS).
at_exit() { AT_EXIT=("$1" "${AT_EXIT[@]}"); }
cleanup() {
  local rc=$? cmd
  trap - ERR
  set +e
  TEST_STATUS=$rc
  if [[ -n "${TARGET_PID:-}" ]]; then kill -9 "$TARGET_PID" 2>/dev/null; fi
  for cmd in "${AT_EXIT[@]}"; do eval "$cmd"; done
  if ((rc != 0)); then
    echo "--- work dir: $WORK" >&2
    for log in "$WORK"/*/*.log "$WORK"/*.log; do
      [[ -f "$log" ]] || continue
      echo "--- $log (last 40 lines)" >&2
      tail -40 "$log" >&2
    done
  fi
  [[ -n "$KEEP_WORK" ]] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
# A command that stops the test through `set -e` names itself, so no failure is silent.
set -E
trap 'echo "FAIL: \`$BASH_COMMAND\` exited $? (${BASH_SOURCE[0]##*/}:$LINENO)" >&2' ERR

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# wait_for_file FILE [SECONDS]
wait_for_file() {
  local file=$1 limit=${2:-20} i
  for ((i = 0; i < limit * 20; i++)); do
    [[ -e "$file" ]] && return 0
    sleep 0.05
  done
  fail "timed out waiting for $file"
}

# wait_exit PID WHAT [SECONDS]: waits (default 60 s) for the background job PID to end; its exit code in RC.
wait_exit() {
  local pid=$1 what=$2 limit=${3:-60} i
  for ((i = 0; i < limit * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && fail "$what did not exit in ${limit}s"
  RC=0
  wait "$pid" || RC=$?
}

# status_byte FILE WHAT PID: waits (20 s) for the NUL byte PID writes into FILE (its --status-fd or
# status_fd) when it is ready. FILE must not exist before PID starts.
status_byte() {
  local file=$1 what=$2 pid=$3 i
  for ((i = 0; i < 400; i++)); do
    [[ -s "$file" ]] && break
    kill -0 "$pid" 2>/dev/null || fail "$what exited before it was ready"
    sleep 0.05
  done
  [[ "$(od -An -tx1 "$file" | tr -d ' ')" == 00 ]] || fail "no NUL byte from $what on its status fd"
}

# start_program NAME [ARGS...]: starts a test program as our child; sets TARGET_PID, READY, RESULT.
start_program() {
  local name=$1
  shift
  READY=$WORK/$name.ready
  RESULT=$WORK/$name.result
  rm -f "$READY" "$RESULT"
  # In its own session, as a daemon would be (a background job of this script keeps its pid under setsid).
  setsid "$PROGRAMS/$name" "$READY" "$RESULT" "$@" </dev/null >>"$WORK/$name.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
}

# checkpoint DIR [OPTIONS...]: dumps TARGET_PID into DIR.
checkpoint() {
  local dir=$1
  shift
  mkdir -p "$dir"
  # shellcheck disable=SC2086 # CHECKPOINT_OPTS holds several words on purpose
  "$CRSHIM" dump -t "$TARGET_PID" -D "$dir" -o dump.log -v4 ${CHECKPOINT_OPTS:-} "$@" || fail "dump failed: $(tail -3 "$dir/dump.log")"
  if declare -F on_checkpointed >/dev/null; then on_checkpointed "$dir"; fi
}

# restore_detached DIR [OPTIONS...]: restores from DIR, leaving the tree running.
restore_detached() {
  local dir=$1
  shift
  if declare -F on_restore >/dev/null; then on_restore "$dir"; fi
  "$CRSHIM" restore -D "$dir" -o restore.log -v4 -d "$@" || fail "restore failed: $(tail -3 "$dir/restore.log")"
}

# reap_target: waits until the killed target is gone so its pid can be reused.
reap_target() {
  wait "$TARGET_PID" 2>/dev/null || true
}

# finish_and_check: asks the (restored) target to verify itself and expects PASS.
finish_and_check() {
  kill -TERM "$TARGET_PID"
  wait_for_file "$RESULT" 30
  local verdict
  verdict=$(cat "$RESULT")
  [[ "$verdict" == PASS ]] || fail "$verdict"
}

# decode_all DIR: crit must decode every image we wrote.
decode_all() {
  local dir=$1 img
  command -v crit >/dev/null || fail "crit is not installed"
  for img in "$dir"/*.img "$dir"/stats-dump; do
    [[ -f "$img" ]] || continue
    # Pages, tar archives and the raw ip(8)/iptables-save/nft/conntrack dumps of a network namespace are no protobuf.
    case "$(basename "$img")" in pages-*|*.tar.gz.img|ifaddr-*|route-*|route6-*|rule-*|iptables-*|ip6tables-*|nftables-*|netns-ct-*|netns-exp-*) continue ;; esac
    crit decode -i "$img" >/dev/null 2>"$WORK/crit.err" || fail "crit cannot decode $img: $(tail -1 "$WORK/crit.err")"
  done
}

# cycle NAME [ARGS...]: the standard checks for one test program (a test may define
# on_checkpointed DIR and on_restore DIR to save and put back outside state such as files):
#  1. dump -> kill -> restore -> verify
#  2. dump --leave-running; the original verifies; then a copy restored from the images verifies
#  3. restore -> dump again -> restore again -> verify
cycle() {
  local name=$1
  shift
  local args=("$@")

  start_program "$name" "${args[@]}"
  checkpoint "$WORK/img1"
  decode_all "$WORK/img1"
  reap_target
  restore_detached "$WORK/img1"
  finish_and_check
  echo "ok: $name dump -> kill -> restore"

  start_program "$name" "${args[@]}"
  checkpoint "$WORK/img2" --leave-running
  finish_and_check
  reap_target
  rm -f "$RESULT"
  restore_detached "$WORK/img2"
  finish_and_check
  echo "ok: $name --leave-running, then restore of the copy"

  start_program "$name" "${args[@]}"
  checkpoint "$WORK/img3"
  reap_target
  restore_detached "$WORK/img3"
  checkpoint "$WORK/img4"
  decode_all "$WORK/img4"
  sleep 0.2
  restore_detached "$WORK/img4"
  finish_and_check
  echo "ok: $name checkpoint again after restore"
}

# remove_cgroups DIR...: removes these cgroup directories (deepest first, as listed), waiting for
# killed tasks to leave them.
remove_cgroups() {
  local d i
  for d in "$@"; do
    for ((i = 0; i < 50; i++)); do
      [[ -d $d ]] || break
      rmdir "$d" 2>/dev/null && break
      sleep 0.05  # a killed task leaves its cgroup when it is fully gone
    done
  done
}

# wait_gone LINK: a dead network namespace's veths go with it, asynchronously.
wait_gone() {
  local i
  for ((i = 0; i < 100; i++)); do
    ip link show "$1" >/dev/null 2>&1 || return 0
    sleep 0.05
  done
  fail "link $1 is still there"
}
