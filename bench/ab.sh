#!/bin/bash
# bench/ab.sh [-n REPS] [-v LEVEL] ROW BIN... : compares crshim binaries on one benchmark target, runs
# interleaved (A B A B ...) so that a noisy machine affects them alike, and prints per binary the median
# wall and CPU (user+sys of crshim) times of dump and restore, and the median freezing_time.
#   ROW: tree[:N] (default 100 tasks), vmas[:N], fds[:N] (default 5000), trivial
# Environment: BUILD=build dir with bench/ and tests/programs/reaper (default <repo>/build-bench),
#   BENCH_TMP=where the images go (default /tmp).
set -uo pipefail

usage() { sed -n '2,6s/^# \{0,1\}//p' "$0"; }
die() { printf 'ab.sh: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=5
VERB=2
while getopts "n:v:h" o; do
  case $o in
    n) REPS=$OPTARG ;;
    v) VERB=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(($# >= 2)) || { usage >&2; exit 2; }
ROW=$1
shift
BINS=()
for b in "$@"; do
  [[ -x $b ]] || die "not an executable: $b"
  BINS+=("$(realpath "$b")")
done

if [[ -z ${CRSHIM_AB_INNER:-} ]]; then
  ((EUID == 0)) || die "must run as root"
  BUILD=${BUILD:-$SRC/build-bench}
  [[ -x $BUILD/bench/tree && -x $BUILD/tests/programs/reaper ]] ||
    die "no $BUILD/bench/tree or $BUILD/tests/programs/reaper: build targets crshim_bench and reaper"
  WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/crshim-ab.XXXXXX") || die "cannot create a work dir"
  export CRSHIM_AB_INNER=1 BUILD WORK
  exec "$BUILD/tests/programs/reaper" bash "${BASH_SOURCE[0]}" -n "$REPS" -v "$VERB" "$ROW" "${BINS[@]}"
fi

for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
done
trap 'rm -rf "$WORK"' EXIT

name=${ROW%%:*}
count=${ROW#*:}
[[ $count == "$ROW" ]] && count=""
case $name in
  tree) ARGS=(tree "${count:-100}") ;;
  vmas) ARGS=(vmas "${count:-5000}") ;;
  fds) ARGS=(fds "$WORK/fds.data" "${count:-5000}") ;;
  trivial) ARGS=(trivial) ;;
  *) die "unknown row $ROW" ;;
esac

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

start_target() {
  local ready=$WORK/ready i
  rm -f "$ready" "$ready.tmp"
  TPID=$(setsid "$BUILD/bench/${ARGS[0]}" "$ready" "${ARGS[@]:1}" </dev/null >"$WORK/target.out" 2>&1 & echo $!)
  for ((i = 0; i < 12000; i++)); do
    [[ -e $ready ]] && return 0
    [[ -e /proc/$TPID ]] || die "target did not start: $(cat "$WORK/target.out")"
    sleep 0.005
  done
  die "target not ready"
}

wait_gone() { local i; for ((i = 0; i < 1000; i++)); do [[ -e /proc/$1 ]] || return 0; sleep 0.01; done; return 1; }

# timed OUT_VAR CMD...: runs CMD, sets OUT_VAR to "wall_ms cpu_ms" (bash's `time`: user+sys of CMD).
timed() {
  local -n out=$1
  shift
  local TIMEFORMAT='%3R %3U %3S' t rc
  t=$({ time "$@" 2>"$WORK/err" >/dev/null; } 2>&1)
  rc=$?
  out=$(awk -v t="$t" 'BEGIN {split(t, a, " "); printf "%.2f %.2f", a[1] * 1000, (a[2] + a[3]) * 1000}')
  return $rc
}

declare -A DW DC RW RC FZ
for ((rep = 1; rep <= REPS; rep++)); do
  for ((b = 0; b < ${#BINS[@]}; b++)); do
    bin=${BINS[$b]}
    dir=$WORK/img
    rm -rf "$dir"
    mkdir -p "$dir"
    start_target
    sync
    timed r "$bin" dump -t "$TPID" -D "$dir" -o dump.log -v"$VERB" || die "dump with $bin failed: $(cat "$WORK/err")"
    kill -9 "$TPID" 2>/dev/null
    wait_gone "$TPID" || die "dumped target not reaped"
    DW[$b]+="${r% *} "
    DC[$b]+="${r#* } "
    dumped=${r% *}
    f=$("$bin" show "$dir/stats-dump" 2>/dev/null | grep -o '"freezing_time": *[0-9]*' | grep -o '[0-9]*$')
    FZ[$b]+="${f:-0} "
    rm -f "$WORK/pidfile"
    timed r "$bin" restore -D "$dir" -o restore.log -v"$VERB" -d --pidfile "$WORK/pidfile" ||
      die "restore with $bin failed: $(cat "$WORK/err")"
    pid=$(cat "$WORK/pidfile")
    kill -9 -- -"$pid" 2>/dev/null
    kill -9 "$pid" 2>/dev/null
    wait_gone "$pid" || die "restored $pid not reaped"
    RW[$b]+="${r% *} "
    RC[$b]+="${r#* } "
    printf '[ab] %s rep %d/%d bin %d: dump %s ms, restore %s ms\n' "$ROW" "$rep" "$REPS" "$b" "$dumped" "${r% *}" >&2
  done
done

echo "$ROW, $REPS interleaved runs, medians (ms); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| binary | dump wall | dump cpu | restore wall | restore cpu | freeze |"
echo "|---|---|---|---|---|---|"
for ((b = 0; b < ${#BINS[@]}; b++)); do
  # shellcheck disable=SC2086  # word splitting of the value lists is intended
  printf '| %s | %s | %s | %s | %s | %s |\n' "${BINS[$b]}" "$(median ${DW[$b]})" "$(median ${DC[$b]})" \
    "$(median ${RW[$b]})" "$(median ${RC[$b]})" "$(awk -v u="$(median ${FZ[$b]})" 'BEGIN {printf "%.2f", u / 1000}')"
done
