#!/bin/bash
# Shared setup for the runc end-to-end tests: a busybox bundle, a private runc root, cleanup.
# shellcheck source=tests/integration/lib.sh
source "$SRC/tests/integration/lib.sh"

command -v runc >/dev/null || fail "runc is not installed"
[[ -x /bin/busybox ]] || fail "/bin/busybox is missing (Debian busybox-static)"

ID=crshim-e2e-$$
RUNC=(runc --root "$WORK/runc-root" --criu "$CRSHIM")
BUNDLE=$WORK/bundle
# shellcheck disable=SC2016 # expanded by the container's shell
TICKER='i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done'
# Background helpers of a test (console receivers...) to kill on exit; netns names to delete.
E2E_PIDS=()
E2E_NETNS=()

e2e_cleanup() {
  local pid ns
  # A test's own teardown (another runtime's containers...) runs first.
  if declare -F e2e_teardown >/dev/null; then e2e_teardown >/dev/null 2>&1 || true; fi
  "${RUNC[@]}" delete -f "$ID" >/dev/null 2>&1 || true
  for pid in "${E2E_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # runc's restore mounts (criu-root) live under its state dir; never leave them behind.
  { grep -o " $WORK/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for ns in "${E2E_NETNS[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  if ((TEST_STATUS != 0)); then
    for f in "$WORK"/out* "$WORK"/con*.out; do [[ -f "$f" ]] && { echo "--- $f (last 5 lines)" >&2; tail -5 "$f" >&2; }; done
  fi
}
at_exit e2e_cleanup

# make_bundle [PYTHON...]: busybox rootfs + `runc spec` running the ticker without a terminal; the
# optional python3 statements edit the config `c` further.
make_bundle() {
  mkdir -p "$BUNDLE/rootfs"/{bin,dev,proc,sys,tmp,etc,root,run}
  cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
  local applet
  for applet in sh sleep echo cat ls ps true; do ln -s busybox "$BUNDLE/rootfs/bin/$applet"; done
  (cd "$BUNDLE" && runc spec)
  python3 - "$BUNDLE/config.json" "$TICKER" "$@" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", sys.argv[2]]
for stmt in sys.argv[3:]:
    exec(stmt)
json.dump(c, open(p, "w"), indent=2)
PY
}

# run_container OUT [RUN OPTIONS...]: `runc run -d` of the bundle with stdin /dev/null and stdout/stderr an
# anonymous pipe into OUT (a restore then maps them with inherit_fd pipe:[ino]); the container must run.
run_container() {
  local out=$1
  shift
  (cd "$BUNDLE" && "${RUNC[@]}" run -d "$@" "$ID" </dev/null > >(exec cat >"$out") 2>&1) ||
    fail "runc run failed: $(sleep 0.2; tail -3 "$out")"
  [[ "$(container_status)" == running ]] || fail "container is not running after runc run: $(container_status)"
}

# restore_container IMG WORKDIR OUT [RESTORE OPTIONS...]: `runc restore -d` from IMG with --work-path WORKDIR,
# stdin /dev/null, stdout a new pipe into OUT and stderr another one into OUT.err (the container had one
# pipe for both: its output must come back on the new stdout); the container must run afterwards.
restore_container() {
  local img=$1 wdir=$2 out=$3
  shift 3
  mkdir -p "$wdir"
  (cd "$BUNDLE" && "${RUNC[@]}" restore -d "$@" --image-path "$img" --work-path "$wdir" "$ID" \
    </dev/null > >(exec cat >"$out") 2> >(exec cat >"$out.err")) ||
    fail "runc restore failed: $(sleep 0.2; tail -3 "$out.err") $(engine_log "$wdir")"
  [[ "$(container_status)" == running ]] || fail "container not running after restore: $(container_status)"
}

# ppid_of PID: the parent pid from /proc/PID/stat (the field after the parenthesised command name).
ppid_of() {
  local stat ppid
  stat=$(cat "/proc/$1/stat") || fail "no process $1"
  read -r _ ppid _ <<<"${stat##*) }"
  echo "$ppid"
}

# ticks FILE: the ticker's lines in FILE (a terminal adds carriage returns).
ticks() { tr -d '\r' <"$1"; }

# wait_lines FILE N: waits until FILE has at least N lines.
wait_lines() {
  local file=$1 n=$2 i
  for ((i = 0; i < 200; i++)); do
    [[ -f "$file" ]] && (($(wc -l <"$file") >= n)) && return 0
    sleep 0.05
  done
  fail "$file has fewer than $n lines: $(tail -3 "$file" 2>/dev/null | tr '\n' ' ')"
}

# container_status: runc's view of the container ("" when it does not exist).
container_status() {
  "${RUNC[@]}" state "$ID" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true
}

# container_pid: the init's host pid.
container_pid() {
  "${RUNC[@]}" state "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'
}

# engine_log DIR: runc's error is not enough; show the engine's logs too.
engine_log() {
  tail -15 "$1"/*.log 2>/dev/null || true
}

# notifications LOG: the RPC notifications the engine sent, in order, on one line.
notifications() {
  sed -n 's/.*Notifying the RPC client: \([a-z-]*\).*/\1/p' "$1" | tr '\n' ' ' | sed 's/ $//'
}

# checkpoint_gone IMG WORK: runc checkpoint; the container must be gone afterwards.
checkpoint_gone() {
  mkdir -p "$1" "$2"
  "${RUNC[@]}" checkpoint --image-path "$1" --work-path "$2" "$ID" || fail "runc checkpoint failed: $(engine_log "$2")"
  [[ -z "$(container_status)" ]] || fail "container still exists after checkpoint: $(container_status)"
}

# check_work_files IMG WORKDIR dump|restore: the engine wrote its log and its statistics (a CRIU STATS image
# crit decodes) into WORKDIR (runc's --work-path), and neither into IMG.
check_work_files() {
  local img=$1 wdir=$2 what=$3
  [[ -s "$wdir/$what.log" && -s "$wdir/stats-$what" ]] || fail "no $what.log/stats-$what in $wdir: $(ls "$wdir")"
  grep -q "RPC ${what^^} request" "$wdir/$what.log" || fail "$wdir/$what.log is not the log of this ${what^^}"
  crit decode -i "$wdir/stats-$what" | grep -q "\"${what}\"" || fail "crit cannot decode $wdir/stats-$what"
  [[ ! -e "$img/$what.log" && ! -e "$img/stats-$what" ]] || fail "$what.log/stats-$what also written into $img"
  echo "ok: $what.log and stats-$what in the work path"
}

# check_continues OLD NEW: the restored ticker printed the number after OLD's last one first, into NEW only.
check_continues() {
  local old=$1 new=$2 last first
  last=$(ticks "$old" | tail -1)
  [[ "$last" =~ ^[0-9]+$ ]] || fail "unexpected ticker output: '$last'"
  wait_lines "$new" 3
  first=$(ticks "$new" | sed -n 1p)
  [[ "$first" == $((last + 1)) ]] || fail "restored ticker printed '$first' first, expected $((last + 1))"
  sleep 0.5
  [[ "$(ticks "$old" | tail -1)" == "$last" ]] || fail "restored ticker still writes to the old output"
  echo "ok: ticker went on from $last to $first in the new output"
}

# make_userns_bundle: make_bundle for a container with a user namespace of its own, root inside mapped
# to 100000 outside (65536 ids), its rootfs owned by that uid.
make_userns_bundle() {
  local map='{"containerID": 0, "hostID": 100000, "size": 65536}'
  make_bundle \
    "c['linux']['namespaces'].append({'type': 'user'})" \
    "c['linux']['uidMappings'] = [$map]" \
    "c['linux']['gidMappings'] = [$map]"
  # The container's root (100000 outside) must reach and read its rootfs.
  chmod 0755 "$WORK"
  chown -R 100000:100000 "$BUNDLE/rootfs"
}

# userns_view PID: the user namespace's maps and the ids PID has, outside and as the namespace sees them.
userns_view() {
  echo "uid_map: $(awk '{$1 = $1; print}' "/proc/$1/uid_map")"
  echo "gid_map: $(awk '{$1 = $1; print}' "/proc/$1/gid_map")"
  grep -E '^(Uid|Gid):' "/proc/$1/status" | tr -s '\t' ' ' | sed 's/^/outside /'
  # Read from inside the namespace, /proc shows the ids the namespace gives.
  nsenter --user --target "$1" grep -E '^(Uid|Gid):' "/proc/$1/status" | tr -s '\t' ' ' | sed 's/^/inside /'
}

# userns_holder: starts `sleep` as pid 1 of a new pid namespace in a new user namespace mapping
# 0 100000 65536 (uid and gid), as a runtime that made the namespace beforehand; sets HOLDER to its
# host pid. It is killed at exit (SIGKILL: a pid namespace's init ignores other signals from outside).
userns_holder() {
  setsid python3 "$SRC/tests/integration/in_userns.py" pid /bin/sleep infinity </dev/null >>"$WORK/holder.log" 2>&1 &
  local launcher=$! unsharer='' holder='' i
  for ((i = 0; i < 100; i++)); do
    unsharer=$(pgrep -P "$launcher" || true)
    [[ -n "$unsharer" ]] && holder=$(pgrep -P "$unsharer" || true)
    [[ -n "$holder" && "$(readlink "/proc/$holder/exe" 2>/dev/null)" == */sleep ]] && break
    sleep 0.05
  done
  [[ "$(readlink "/proc/$holder/exe" 2>/dev/null)" == */sleep ]] || fail "the user namespace holder did not start: $(cat "$WORK/holder.log")"
  at_exit "kill -9 $holder 2>/dev/null"
  # shellcheck disable=SC2034 # read by the tests
  HOLDER=$holder
}

# A container restored by crshim's bundle mode is crshim's, not runc's: the test sets RESTORED_PID,
# note_cgroups lists its cgroup directories, stop_restored (also at exit) kills it and removes them.
RESTORED_PID=
RESTORED_CGROUPS=()
stop_restored() {
  if [[ -n "$RESTORED_PID" ]]; then
    kill -9 "$RESTORED_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$RESTORED_PID" 2>/dev/null || break; sleep 0.05; done
  fi
  # A cgroup may stay busy for a moment after its last task is reaped.
  remove_cgroups "${RESTORED_CGROUPS[@]}"
  RESTORED_PID=
  RESTORED_CGROUPS=()
}
at_exit stop_restored
note_cgroups() {
  mapfile -t RESTORED_CGROUPS < <(sed -n 's/^[0-9]*:\([^:]*\):\(.*\)$/\1|\2/p' "/proc/$RESTORED_PID/cgroup" |
    while IFS='|' read -r name path; do
      [[ "$name" == name=* ]] && name=${name#name=}
      [[ -z "$path" || "$path" == / ]] || echo "/sys/fs/cgroup/${name:-unified}$path"
    done)
}

# other_bundle NAME PYTHON: $WORK/NAME, a bundle on the same rootfs whose config.json PYTHON edits (as `c`).
other_bundle() {
  mkdir -p "$WORK/$1"
  python3 - "$BUNDLE/config.json" "$WORK/$1/config.json" "$(realpath "$BUNDLE/rootfs")" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[3]
exec(sys.argv[4])
json.dump(c, open(sys.argv[2], "w"))
PY
}
