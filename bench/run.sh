#!/bin/bash
# bench/run.sh [--quick] [--keep] [--only ROWS]: times `crshim dump` and `crshim restore -d` against
# baselines measured in the same run on the same filesystem (dd from /dev/zero for dumps, the
# populate+memcpy floor for restores) and prints the machine and ONE markdown table on stdout; progress
# goes to stderr. Notes give CPU time (user+sys of crshim) next to wall time.
#   --quick       one run per row, no 1 GiB rows
#   --keep        keep the work dir, with the logs and stats of each row's last run in logs/
#   --only ROWS   only these rows, comma-separated: trivial,anon,postcopy,vmas,fds,tree (the trivial row, the
#                 baseline of vmas/fds/tree, always runs)
# Environment: CRSHIM=binary (no build; helpers then come from $BUILD/bench or are compiled with cc),
#   BUILD=build dir (default <repo>/build-bench), BENCH_TMP=where the images go (default /tmp),
#   BENCH_VERBOSITY=crshim -v level for the timed runs (default 2; 4 writes large logs and skews times).
set -uo pipefail

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }

QUICK=0
KEEP=0
ONLY=""
args=("$@")
for ((a = 0; a < ${#args[@]}; a++)); do
  case ${args[a]} in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --only) ONLY=${args[a + 1]:-}; a=$((a + 1)) ;;
    --only=*) ONLY=${args[a]#--only=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option ${args[a]}" >&2; usage >&2; exit 2 ;;
  esac
done
for r in ${ONLY//,/ }; do
  case $r in
    trivial|anon|postcopy|vmas|fds|tree) ;;
    *) echo "run.sh: unknown row $r (rows: trivial,anon,postcopy,vmas,fds,tree)" >&2; exit 2 ;;
  esac
done
# wanted ROW: whether --only selects ROW (everything without --only).
wanted() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }

progress() { printf '[bench] %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS=(anon trivial vmas fds tree floor)

# ---------------------------------------------------------------------------------------------------
# Outer run: build, then run the measurements again under a child subreaper so that restored processes
# (orphaned when `crshim restore -d` exits) are reaped at once and their pids can be restored again.
if [[ -z ${CRSHIM_BENCH_INNER:-} ]]; then
  ((EUID == 0)) || die "must run as root (dump and restore need ptrace and clone3 set_tid)"
  BUILD=${BUILD:-$SRC/build-bench}
  BENCH_TMP=${BENCH_TMP:-/tmp}
  WORK=$(mktemp -d "$BENCH_TMP/crshim-bench.XXXXXX") || die "cannot create a work dir in $BENCH_TMP"
  BIN=""
  if [[ -z ${CRSHIM:-} ]]; then
    if [[ ! -f $BUILD/CMakeCache.txt ]]; then
      progress "configuring $BUILD"
      cmake -S "$SRC" -B "$BUILD" -G Ninja >"$WORK/build.log" 2>&1 || die "cmake configure failed, see $WORK/build.log"
    fi
    progress "building in $BUILD"
    if cmake --build "$BUILD" -j2 --target crshim_bench >>"$WORK/build.log" 2>&1; then
      BIN=$BUILD/bench
    else
      # bench/ is not part of this build tree (yet): build the engine with CMake, the helpers with cc.
      cmake --build "$BUILD" -j2 --target crshim >>"$WORK/build.log" 2>&1 || die "build failed, see $WORK/build.log"
    fi
    CRSHIM=$BUILD/crshim
  elif [[ -n ${BUILD:-} && -d $BUILD/bench ]]; then
    BIN=$BUILD/bench
  fi
  [[ -x $CRSHIM ]] || die "no crshim binary at $CRSHIM"
  for h in "${HELPERS[@]}"; do [[ -x $BIN/$h ]] || BIN=""; done
  if [[ -z $BIN ]]; then
    BIN=$WORK/bin
    mkdir -p "$BIN"
    for h in "${HELPERS[@]}"; do
      src=$SRC/bench/targets/$h.c
      [[ $h == floor ]] && src=$SRC/bench/floor.c
      cc -O2 -Wall -Wextra -o "$BIN/$h" "$src" 2>>"$WORK/build.log" || die "cannot compile $src, see $WORK/build.log"
    done
  fi
  REAPER=${BUILD:-}/tests/programs/reaper
  if [[ ! -x $REAPER ]]; then
    REAPER=$WORK/bin/reaper
    mkdir -p "$WORK/bin"
    cc -O2 -o "$REAPER" "$SRC/tests/programs/reaper.c" 2>>"$WORK/build.log" || die "cannot compile the reaper"
  fi
  export CRSHIM_BENCH_INNER=1 CRSHIM BIN WORK
  exec "$REAPER" bash "${BASH_SOURCE[0]}" "$@"
fi

# ---------------------------------------------------------------------------------------------------
# Inner run (under the reaper).

# Descriptors inherited from whatever started us would become part of every dumped target.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
done

VERB=${BENCH_VERBOSITY:-2}
STARTED=()  # every target pid we started, for cleanup
cleanup() {
  local p
  for p in "${STARTED[@]}"; do
    # Only kill a pid that still runs one of our helpers (pids are reused).
    if [[ -r /proc/$p/cmdline ]] && tr '\0' ' ' </proc/"$p"/cmdline | grep -q "^$BIN/"; then kill -9 "$p" 2>/dev/null; fi
  done
  if ((KEEP)); then progress "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- small utilities --------------------------------------------------------------------------------

# proc_state PID: the state letter from /proc/PID/stat, or "gone".
proc_state() {
  local stat
  stat=$(cat /proc/"$1"/stat 2>/dev/null) || { echo gone; return; }
  stat=${stat##*) }
  echo "${stat%% *}"
}

# wait_gone PID [SECONDS]: until PID no longer exists (killed, and reaped by the reaper or by us).
wait_gone() {
  local i limit=$((${2:-10} * 100))
  for ((i = 0; i < limit; i++)); do
    [[ -e /proc/$1 ]] || return 0
    sleep 0.01
  done
  return 1
}

# one_line TEXT: the first non-empty line, without table-breaking characters, at most 110 chars.
one_line() {
  local s
  s=$(printf '%s\n' "$1" | grep -m1 -v '^[[:space:]]*$')
  s=${s//|//}
  s=${s//$'\r'/}
  ((${#s} > 110)) && s="${s:0:107}..."
  printf '%s' "$s"
}

# median NUMBERS...: the middle value (mean of the two middle ones for an even count); empty if none.
median() {
  (($# == 0)) && return
  printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# fmt_us MICROSECONDS: "123 µs", "12.3 ms" or "1.23 s".
fmt_us() {
  awk -v u="$1" 'BEGIN {if (u < 1000) printf "%d µs", u; else if (u < 1e6) printf "%.1f ms", u / 1e3; else printf "%.2f s", u / 1e6}'
}

# span NUMBERS...: "min–max" as times, for the notes (this machine is shared and noisy).
span() {
  (($# < 2)) && return
  local sorted
  sorted=$(printf '%s\n' "$@" | sort -n)
  printf '%s–%s' "$(fmt_us "$(head -1 <<<"$sorted")")" "$(fmt_us "$(tail -1 <<<"$sorted")")"
}

# fmt_bytes BYTES
fmt_bytes() {
  awk -v b="$1" 'BEGIN {if (b < 1048576) printf "%.0f KiB", b / 1024; else if (b < 1073741824) printf "%.1f MiB", b / 1048576; else printf "%.2f GiB", b / 1073741824}'
}

# ratio A B: A/B as "1.23x".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}'; }

# stat_field FILE NAME: a numeric field of a stats image (via `crshim show`), empty if absent.
stat_field() {
  "$CRSHIM" show "$1" 2>/dev/null | grep -o "\"$2\": *[0-9]*" | head -1 | grep -o '[0-9]*$'
}

# image_bytes DIR: the size of all *.img files (the image set proper, without logs and stats).
image_bytes() { find "$1" -name '*.img' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

# ---- one dump / one restore ---------------------------------------------------------------------------

# start_target NAME ARGS...: starts a helper in its own session and waits for its ready file. A subshell
# starts it and exits, so the target is the reaper's child like a restored process (reaped at once, and
# bash prints no job notices when a dump kills it). With TARGET_PIDNS=1 the helper is pid 1 of a pid
# namespace of its own (under unshare, the reaper's child). Sets TPID; on failure sets ERR and returns 1.
TARGET_PIDNS=0
start_target() {
  local name=$1 ready=$WORK/ready i
  shift
  rm -f "$ready" "$ready.tmp"
  local -a wrap=(setsid)
  local out=$WORK/target.out
  # unshare writes a line when its child is killed: not into a file the dumped target has open.
  ((TARGET_PIDNS)) && wrap=(setsid unshare --pid --fork setsid) out=/dev/null
  : >"$WORK/target.out"
  TPID=$("${wrap[@]}" "$BIN/$name" "$ready" "$@" </dev/null >"$out" 2>&1 & echo $!)
  STARTED+=("$TPID")
  for ((i = 0; i < 12000; i++)); do
    if [[ -e $ready ]]; then
      if ((TARGET_PIDNS)); then
        TPID=$(pgrep -P "$TPID") || { ERR="no $name below unshare"; return 1; }
        STARTED+=("$TPID")
      fi
      return 0
    fi
    case $(proc_state "$TPID") in
      Z|gone) ERR="target $name did not start: $(one_line "$(cat "$WORK/target.out")")"
              return 1 ;;
    esac
    sleep 0.005
  done
  kill -9 "$TPID"
  ERR="target $name not ready after 60 s"
  return 1
}

# cpu_us: user+sys CPU time (µs) of the last timed crshim run, from bash's `time` in $WORK/time.
TIMEFORMAT='%3U %3S'
cpu_us() { awk '{printf "%d", ($1 + $2) * 1e6; exit}' "$WORK/time" 2>/dev/null; }

# files_baseline COUNT: µs to create COUNT small files (write + close each) in a new directory of the
# images filesystem, the part of a dump's time that the filesystem sets (ext4 without a journal, for
# one, is slow to allocate inodes in a group with many recently deleted ones).
files_baseline() {
  local d=$WORK/files-baseline i t0 t1
  rm -rf "$d"
  mkdir -p "$d"
  t0=${EPOCHREALTIME/./}
  for ((i = 0; i < $1; i++)); do printf 'x' >"$d/f-$i.img"; done
  t1=${EPOCHREALTIME/./}
  rm -rf "$d"
  echo $((t1 - t0))
}

# dump_once DIR: dumps TPID into DIR (which must not exist), reaps the killed target. Sets T_US or ERR.
# Options added to every timed dump (a row may set them, e.g. --compress).
DUMP_EXTRA=()
dump_once() {
  local dir=$1 t0 t1 rc
  mkdir -p "$dir"
  sync  # no dirty backlog from earlier runs, for the dump as for dd
  t0=${EPOCHREALTIME/./}
  { time "$CRSHIM" dump -t "$TPID" -D "$dir" -o dump.log -v"$VERB" "${DUMP_EXTRA[@]}" 2>"$WORK/err"; } 2>"$WORK/time"
  rc=$?
  t1=${EPOCHREALTIME/./}
  T_CPU=$(cpu_us)
  # Already dead after a successful dump; never left running after a failed one. Its pid must be free
  # before the restore can take it again.
  kill -9 "$TPID" 2>/dev/null
  if ((rc != 0)); then
    ERR="dump exit $rc: $(one_line "$(cat "$WORK/err")")"
    wait_gone "$TPID"
    return 1
  fi
  wait_gone "$TPID" || { ERR="dumped target $TPID was not reaped"; return 1; }
  T_US=$((t1 - t0))
}

# restore_once DIR: `crshim restore -d` from DIR; checks that the restored process runs, then kills it
# and waits until its pid is free again. Sets T_US or ERR.
restore_once() {
  local dir=$1 t0 t1 rc pid state
  rm -f "$WORK/pidfile"
  t0=${EPOCHREALTIME/./}
  { time "$CRSHIM" restore -D "$dir" -o restore.log -v"$VERB" -d --pidfile "$WORK/pidfile" 2>"$WORK/err"; } 2>"$WORK/time"
  rc=$?
  t1=${EPOCHREALTIME/./}
  T_CPU=$(cpu_us)
  pid=$(cat "$WORK/pidfile" 2>/dev/null)
  [[ -n $pid ]] || pid=$TPID
  state=$(proc_state "$pid")
  if ((rc != 0)); then
    ERR="restore exit $rc: $(one_line "$(cat "$WORK/err")")"
  elif [[ $state != [RSD] ]]; then
    ERR="restored process $pid is in state $state, not running"
    rc=1
  fi
  if [[ $state != gone ]]; then
    kill -9 -- -"$pid" 2>/dev/null  # the whole tree: a restored root leads its process group
    kill -9 "$pid" 2>/dev/null
    wait_gone "$pid" || { ERR="${ERR:-restored} (pid $pid not reaped)"; rc=1; }
  fi
  ((rc == 0)) || return 1
  T_US=$((t1 - t0))
}

# keep_logs DIR LABEL: with --keep, saves the logs and stats of DIR (the last run of a row wins).
keep_logs() {
  ((KEEP)) || return 0
  local to=$WORK/logs/${2//[^A-Za-z0-9]/_}
  mkdir -p "$to"
  cp -f "$1"/*.log "$1"/stats-* "$to"/ 2>/dev/null
  return 0
}

# ---- rows ---------------------------------------------------------------------------------------------

ROWS=()
# row WHAT OURS BASELINE RATIO TARGET IMAGE NOTES
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"); }

# cell VALUES_NAME ERR RUNS: the median of the array named VALUES_NAME as a time, or the failure.
cell() {
  local -n vals=$1
  local err=$2 runs=$3
  if ((runs == 0)); then
    printf 'not run (no image: the dump failed)'
  elif ((${#vals[@]} == 0)); then
    printf 'FAIL: %s' "${err:-no runs}"
  elif ((${#vals[@]} < runs)); then
    printf '%s (%d/%d runs failed: %s)' "$(fmt_us "$(median "${vals[@]}")")" $((runs - ${#vals[@]})) "$runs" "$err"
  else
    fmt_us "$(median "${vals[@]}")"
  fi
}

# verdict OURS TARGET_MAX: "met" or "NOT met" (both numbers in the same unit).
verdict() { awk -v a="$1" -v b="$2" 'BEGIN {print (a <= b) ? "met" : "NOT met"}'; }

# ratio_of VALUES_NAME BASE_NAME: median ratio text, or "-".
ratio_of() {
  local -n a=$1 b=$2
  if ((${#a[@]} && ${#b[@]})); then ratio "$(median "${a[@]}")" "$(median "${b[@]}")"; else echo "-"; fi
}

# bench_anon LABEL MIB PERCENT RUNS TARGET_DUMP TARGET_RESTORE: anonymous memory rows.
bench_anon() {
  local label=$1 mib=$2 pct=$3 runs=$4 tdump=$5 trest=$6
  local -a dumps=() rests=() dds=() floors=() sizes=() freezes=() memdump=() memwrite=()
  local derr="" rerr="" dderr="" ferr="" i dir=$WORK/img pages out f t0 t1
  # The dd baseline writes as much as the image holds pages (all of MIB unless sparse).
  local ddmib=$((mib * pct / 100))
  for ((i = 1; i <= runs; i++)); do
    progress "$label: run $i/$runs"
    rm -rf "$dir"
    if ! start_target anon "$mib" "$pct%"; then
      derr=${derr:-$ERR}
      continue
    fi
    # dd runs right before the dump, with the target in memory, and its file is deleted before the
    # dump: both then write into page cache under the same memory conditions. (In this VM, memory
    # that has been free for a while is slow to touch again, so the order matters.)
    sync
    t0=${EPOCHREALTIME/./}
    if dd if=/dev/zero of="$WORK/x" bs=1M count="$ddmib" status=none 2>"$WORK/err"; then
      t1=${EPOCHREALTIME/./}
      dds+=($((t1 - t0)))
    else
      dderr=${dderr:-$(one_line "$(cat "$WORK/err")")}
    fi
    rm -f "$WORK/x"
    if ! dump_once "$dir"; then
      derr=${derr:-$ERR}
    else
      dumps+=("$T_US")
      sizes+=("$(image_bytes "$dir")")
      f=$(stat_field "$dir/stats-dump" freezing_time) && [[ -n $f ]] && freezes+=("$f")
      f=$(stat_field "$dir/stats-dump" memdump_time) && [[ -n $f ]] && memdump+=("$f")
      f=$(stat_field "$dir/stats-dump" memwrite_time) && [[ -n $f ]] && memwrite+=("$f")
      # The restore, then the floor over the same pages file; each follows the release of as much
      # memory as it needs (the dumped target, then the restored one).
      pages=$(ls -S "$dir"/pages-*.img 2>/dev/null | head -1)
      if restore_once "$dir"; then rests+=("$T_US"); else rerr=${rerr:-$ERR}; fi
      if [[ -z $pages ]]; then
        ferr=${ferr:-no pages-*.img in the image}
      elif ((${#DUMP_EXTRA[@]})); then
        ferr=${ferr:-see the plain row (the floor reads a plain pages image)}
      elif out=$("$BIN/floor" "$pages" 2>"$WORK/err"); then
        floors+=("$(awk -v s="$out" 'BEGIN {printf "%d", s * 1e6}')")
      else
        ferr=${ferr:-$(one_line "$(cat "$WORK/err")")}
      fi
    fi
    keep_logs "$dir" "$label"
    rm -rf "$dir"
  done
  local size="-" notes
  ((${#sizes[@]})) && size=$(fmt_bytes "$(median "${sizes[@]}")")
  local ddtext="FAIL: ${dderr:-no runs}" fltext="FAIL: ${ferr:-no image}"
  ((${#dds[@]})) && ddtext="dd $ddmib MiB: $(fmt_us "$(median "${dds[@]}")")"
  ((${#floors[@]})) && fltext="floor: $(fmt_us "$(median "${floors[@]}")")"
  notes="n=$runs"
  ((${#dumps[@]} > 1)) && notes+="; range $(span "${dumps[@]}")"
  ((${#dds[@]} > 1)) && notes+=", dd $(span "${dds[@]}")"
  ((${#freezes[@]})) && notes+="; freeze $(fmt_us "$(median "${freezes[@]}")")"
  ((${#memdump[@]})) && notes+="; memdump $(fmt_us "$(median "${memdump[@]}")")"
  ((${#memwrite[@]})) && notes+="; memwrite $(fmt_us "$(median "${memwrite[@]}")")"
  local r t
  r=$(ratio_of dumps dds)
  t="-"
  [[ -n $tdump ]] && t="≤ ${tdump}x: $( [[ $r == - ]] && echo "n/a" || verdict "${r%x}" "$tdump")"
  row "dump $label" "$(cell dumps "$derr" "$runs")" "$ddtext" "$r" "$t" "$size" "$notes"
  r=$(ratio_of rests floors)
  t="-"
  [[ -n $trest ]] && t="≤ ${trest}x: $( [[ $r == - ]] && echo "n/a" || verdict "${r%x}" "$trest")"
  notes="n=${#dumps[@]}"
  ((${#rests[@]} > 1)) && notes+="; range $(span "${rests[@]}")"
  ((${#floors[@]} > 1)) && notes+=", floor $(span "${floors[@]}")"
  row "restore $label" "$(cell rests "$rerr" "${#dumps[@]}")" "$fltext" "$r" "$t" "$size" "$notes"
  if ((${#freezes[@]})); then FREEZE_NOTES+=("$label: $(fmt_us "$(median "${freezes[@]}")")"); fi
}

# bench_postcopy LABEL MIB RUNS: how long a process of MIB MiB is not running when it moves by
# post-copy (`dump --lazy-pages` until it serves its memory, `lazy-pages --page-server` started, then
# `restore -d --lazy-pages`), against dump + restore of the same process in the same run; also when
# the last page has arrived (the lazy dump exits). Both on this host, the images not copied. The
# target is pid 1 of a pid namespace so that its copy takes its pids while the source still serves.
bench_postcopy() {
  local label=$1 mib=$2 runs=$3
  local -a downs=() plains=() totals=()
  local err="" perr="" i d dir=$WORK/img port=$((30000 + $$ % 5000)) t0 t1 t2 dpid lpid pid
  TARGET_PIDNS=1
  for ((i = 1; i <= runs; i++)); do
    progress "$label: run $i/$runs"
    rm -rf "$dir"
    if ! start_target anon "$mib" "100%"; then
      perr=${perr:-$ERR}
    elif dump_once "$dir"; then
      d=$T_US
      if restore_once "$dir"; then plains+=($((d + T_US))); else perr=${perr:-$ERR}; fi
    else
      perr=${perr:-$ERR}
    fi
    rm -rf "$dir" "$WORK/lw" "$WORK/st1" "$WORK/st2"
    mkdir -p "$dir" "$WORK/lw"
    if ! start_target anon "$mib" "100%"; then
      err=${err:-$ERR}
      continue
    fi
    t0=${EPOCHREALTIME/./}
    "$CRSHIM" dump -t "$TPID" -D "$dir" -o dump.log -v"$VERB" --lazy-pages --address 127.0.0.1 --port "$port" \
      --status-fd 3 3>"$WORK/st1" 2>"$WORK/err" &
    dpid=$!
    while [[ ! -s $WORK/st1 ]] && kill -0 "$dpid" 2>/dev/null; do sleep 0.001; done
    "$CRSHIM" lazy-pages -D "$dir" -W "$WORK/lw" -o lazy.log -v"$VERB" --page-server --address 127.0.0.1 \
      --port "$port" --status-fd 3 3>"$WORK/st2" 2>>"$WORK/err" &
    lpid=$!
    while [[ ! -s $WORK/st2 ]] && kill -0 "$lpid" 2>/dev/null; do sleep 0.001; done
    rm -f "$WORK/pidfile"
    if "$CRSHIM" restore -D "$dir" -W "$WORK/lw" -o restore.log -v"$VERB" -d --lazy-pages --pidfile "$WORK/pidfile" 2>>"$WORK/err"; then
      t1=${EPOCHREALTIME/./}
      downs+=($((t1 - t0)))
    else
      err=${err:-$(one_line "$(cat "$WORK/err")")}
    fi
    if wait "$dpid"; then
      t2=${EPOCHREALTIME/./}
      ((${#downs[@]})) && totals+=($((t2 - t0)))
    else
      err=${err:-lazy dump: $(one_line "$(cat "$WORK/err")")}
    fi
    wait "$lpid" 2>/dev/null
    pid=$(cat "$WORK/pidfile" 2>/dev/null)
    if [[ -n $pid ]]; then
      kill -9 "$pid" 2>/dev/null
      wait_gone "$pid"
    fi
    kill -9 "$TPID" 2>/dev/null
    wait_gone "$TPID"
    keep_logs "$dir" "$label"
    rm -rf "$dir"
  done
  TARGET_PIDNS=0
  local notes="n=$runs"
  ((${#downs[@]} > 1)) && notes+="; range $(span "${downs[@]}")"
  ((${#totals[@]})) && notes+="; every page moved after $(fmt_us "$(median "${totals[@]}")")"
  local base="FAIL: ${perr:-no runs}"
  ((${#plains[@]})) && base="dump + restore: $(fmt_us "$(median "${plains[@]}")")"
  row "post-copy $label: not running from dump to restored" "$(cell downs "$err" "$runs")" "$base" \
    "$(ratio_of downs plains)" "-" "-" "$notes"
}

# bench_small LABEL RUNS TARGET_DUMP_US TARGET_RESTORE_US NAME ARGS...: fixed-cost style rows, with the
# trivial-process medians as the baseline when they are known (so the ratio shows the added cost).
TRIVIAL_DUMP=""
TRIVIAL_RESTORE=""
FREEZE_NOTES=()
# shellcheck disable=SC2034  # tdump_v/trest_v are read through ratio_of's namerefs
bench_small() {
  local label=$1 runs=$2 tdump=$3 trest=$4
  shift 4
  local -a dumps=() rests=() sizes=() freezes=() shows=() dcpus=() rcpus=() fbase=() nfiles=()
  local derr="" rerr="" i dir=$WORK/img f t0 t1 showerr=""
  for ((i = 1; i <= runs; i++)); do
    progress "$label: run $i/$runs"
    rm -rf "$dir"
    if ! start_target "$@"; then derr=${derr:-$ERR}; continue; fi
    if ! dump_once "$dir"; then derr=${derr:-$ERR}; keep_logs "$dir" "$label"; continue; fi
    dumps+=("$T_US")
    [[ -n $T_CPU ]] && dcpus+=("$T_CPU")
    sizes+=("$(image_bytes "$dir")")
    nfiles+=("$(find "$dir" -name '*.img' | wc -l)")
    f=$(stat_field "$dir/stats-dump" freezing_time) && [[ -n $f ]] && freezes+=("$f")
    if restore_once "$dir"; then
      rests+=("$T_US")
      [[ -n $T_CPU ]] && rcpus+=("$T_CPU")
    else
      rerr=${rerr:-$ERR}
    fi
    fbase+=("$(files_baseline "${nfiles[-1]}")")
    # Baseline for the fixed cost: starting crshim and decoding one image, nothing else.
    t0=${EPOCHREALTIME/./}
    if "$CRSHIM" show "$dir/inventory.img" >/dev/null 2>"$WORK/err"; then
      t1=${EPOCHREALTIME/./}
      shows+=($((t1 - t0)))
    else
      showerr=${showerr:-$(one_line "$(cat "$WORK/err")")}
    fi
    keep_logs "$dir" "$label"
  done
  rm -rf "$dir"
  local size="-"
  ((${#sizes[@]})) && size=$(fmt_bytes "$(median "${sizes[@]}")")
  local dbase="-" rbase="-" dr="-" rr="-" dt="-" rt="-" dnotes="n=$runs" rnotes="n=${#dumps[@]}"
  ((${#dumps[@]} > 1)) && dnotes+="; range $(span "${dumps[@]}")"
  ((${#rests[@]} > 1)) && rnotes+="; range $(span "${rests[@]}")"
  ((${#dcpus[@]})) && dnotes+="; cpu $(fmt_us "$(median "${dcpus[@]}")")"
  ((${#rcpus[@]})) && rnotes+="; cpu $(fmt_us "$(median "${rcpus[@]}")")"
  ((${#fbase[@]})) && dnotes+="; creating its $(median "${nfiles[@]}") image files alone: $(fmt_us "$(median "${fbase[@]}")")"
  if [[ $label == trivial* ]]; then
    ((${#shows[@]})) && dbase="crshim show inventory.img: $(fmt_us "$(median "${shows[@]}")")"
    [[ -n $showerr ]] && dbase="FAIL: $showerr"
    rbase=$dbase
    dr=$(ratio_of dumps shows)
    rr=$(ratio_of rests shows)
    ((${#dumps[@]})) && TRIVIAL_DUMP=$(median "${dumps[@]}")
    ((${#rests[@]})) && TRIVIAL_RESTORE=$(median "${rests[@]}")
  else
    local -a tdump_v=() trest_v=()
    [[ -n $TRIVIAL_DUMP ]] && tdump_v=("$TRIVIAL_DUMP") && dbase="trivial: $(fmt_us "$TRIVIAL_DUMP")" && dr=$(ratio_of dumps tdump_v)
    [[ -n $TRIVIAL_RESTORE ]] && trest_v=("$TRIVIAL_RESTORE") && rbase="trivial: $(fmt_us "$TRIVIAL_RESTORE")" && rr=$(ratio_of rests trest_v)
    local count=$COUNT
    if ((${#dumps[@]})) && [[ -n $TRIVIAL_DUMP ]]; then
      dnotes+="; $(awk -v a="$(median "${dumps[@]}")" -v b="$TRIVIAL_DUMP" -v n="$count" 'BEGIN {printf "%.1f µs per item over trivial", (a - b) / n}')"
    fi
    if ((${#rests[@]})) && [[ -n $TRIVIAL_RESTORE ]]; then
      rnotes+="; $(awk -v a="$(median "${rests[@]}")" -v b="$TRIVIAL_RESTORE" -v n="$count" 'BEGIN {printf "%.1f µs per item over trivial", (a - b) / n}')"
    fi
  fi
  if [[ -n $tdump ]]; then
    dt="< $(fmt_us "$tdump")"
    ((${#dumps[@]})) && dt+=": $(verdict "$(median "${dumps[@]}")" "$tdump")"
  fi
  if [[ -n $trest ]]; then
    rt="< $(fmt_us "$trest")"
    ((${#rests[@]})) && rt+=": $(verdict "$(median "${rests[@]}")" "$trest")"
  fi
  row "dump $label" "$(cell dumps "$derr" "$runs")" "$dbase" "$dr" "$dt" "$size" "$dnotes"
  row "restore $label" "$(cell rests "$rerr" "${#dumps[@]}")" "$rbase" "$rr" "$rt" "$size" "$rnotes"
  if ((${#freezes[@]})); then FREEZE_NOTES+=("$label: $(fmt_us "$(median "${freezes[@]}")")"); fi
}

# ---- the run ------------------------------------------------------------------------------------------

machine() {
  local cpu cores kernel fs mem thp commit
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  cores=$(nproc)
  kernel=$(uname -r)
  fs=$(df -T "$WORK" | awk 'NR == 2 {print $2 " (" $1 ", mounted on " $7 ")"}')
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  thp=$(grep -o '\[[a-z]*\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
  commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -n $(git -C "$SRC" status --porcelain 2>/dev/null) ]] && commit+=" (with uncommitted changes)"
  echo "## crshim benchmarks ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- machine: $cpu, $cores cores, $mem RAM, THP $thp"
  echo "- kernel: $kernel"
  echo "- images dir: $WORK on $fs"
  echo "- crshim: $CRSHIM, commit $commit; timed runs at -v$VERB"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- mode: $([[ $QUICK == 1 ]] && echo "--quick (1 run per row, no 1 GiB rows)" || echo "full (medians of n runs)")${ONLY:+, --only $ONLY}"
}

START=${EPOCHREALTIME/./}
HEADER=$(machine)
RUNS_SMALL=5
RUNS_TRIVIAL=10
RUNS_BIG=3
if ((QUICK)); then RUNS_SMALL=1 RUNS_TRIVIAL=1 RUNS_BIG=1; fi

# The trivial process first: its medians are the baseline of the VMA and fd rows.
COUNT=1
bench_small "trivial process" "$RUNS_TRIVIAL" 20000 15000 trivial
if wanted anon; then
  bench_anon "16 MiB anon" 16 100 "$RUNS_SMALL" "" ""
  bench_anon "256 MiB anon" 256 100 "$RUNS_SMALL" "" ""
  # One non-zero word a page: the best case for zstd; tests/integration/compress.sh has the worst.
  DUMP_EXTRA=(--compress)
  bench_anon "256 MiB anon, --compress" 256 100 "$RUNS_SMALL" "" ""
  DUMP_EXTRA=()
  if ((!QUICK)); then bench_anon "1 GiB anon" 1024 100 "$RUNS_BIG" 1.3 1.5; fi
  bench_anon "1 GiB anon, 10% touched" 1024 10 "$RUNS_SMALL" "" ""
fi
if wanted postcopy; then bench_postcopy "256 MiB anon" 256 "$RUNS_SMALL"; fi
COUNT=5000
if wanted vmas; then bench_small "5000 VMAs" "$RUNS_SMALL" "" "" vmas 5000; fi
if wanted fds; then bench_small "5000 fds" "$RUNS_SMALL" "" "" fds "$WORK/fds.data" 5000; fi
COUNT=100
if wanted tree; then bench_small "100-task tree" "$RUNS_SMALL" "" "" tree 100; fi
FREEZE_TEXT=$(IFS=';'; echo "${FREEZE_NOTES[*]}")
row "freeze (stats-dump freezing_time, median)" "${FREEZE_NOTES[0]:-FAIL: no stats-dump}" "-" "-" \
  "< 5 ms for a 100-task tree: see its entry in the notes" "-" "${FREEZE_TEXT//;/; }"

END=${EPOCHREALTIME/./}
echo "$HEADER"
echo "- wall time of the benchmark: $(fmt_us $((END - START))); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| what | crshim (median) | baseline, same run | ratio | DESIGN §7 target | image | notes |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
