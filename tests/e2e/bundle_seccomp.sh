#!/bin/bash
# linux.seccomp in crshim's bundle mode: a ticker whose profile makes getpriority fail with errno 77 is
# started by `runc run -d` (runc builds the filter) and checkpointed with `crshim checkpoint --bundle`.
# A restore with a bundle whose profile behaves otherwise is refused naming the syscall; one with the
# same profile brings the ticker back, getpriority still failing with 77.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

# Each tick: the number, then what busybox renice -n 0 (getpriority first) says.
# shellcheck disable=SC2016 # expanded by the container's shell
TICKER='i=0; while true; do i=$((i+1)); echo "$i $(renice -n 0 -p $$ 2>&1 | tr -d "\n")"; sleep 0.2; done'
# The profile as runc gets it; `errno` is getpriority's errnoRet.
profile() {
  cat <<EOF
{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
 "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": $1},
              {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
               "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}
EOF
}
make_bundle "c['linux']['seccomp'] = json.loads('''$(profile 77)''')"
ln -s busybox "$BUNDLE/rootfs/bin/renice"

run_container "$WORK/out1"
wait_lines "$WORK/out1" 3
pid=$(container_pid)
grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "runc started the container without a seccomp filter"
# busybox renice reports the getpriority failure: errno 77 is EBADFD.
grep -q '^2 .*File descriptor in bad state' "$WORK/out1" || fail "getpriority did not fail with EBADFD: $(head -3 "$WORK/out1")"
echo "ok: runc started the ticker with the profile, getpriority fails with EBADFD"

"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img" --work-path "$WORK/w1" -v4 "$pid" ||
  fail "crshim checkpoint failed: $(engine_log "$WORK/w1")"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "container init $pid still runs after the checkpoint"
[[ -s "$WORK/img/seccomp.img" ]] || fail "no seccomp.img in the images"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
sleep 0.3
echo "ok: checkpoint --bundle of the filtered container"

# refused NAME GREP: a restore with bundle NAME fails, its error matching GREP; no task is left.
refused() {
  if "$CRSHIM" restore --bundle "$WORK/$1" --image-path "$WORK/img" --work-path "$WORK/w-$1" --detach \
    --pid-file "$WORK/$1.pid" </dev/null >/dev/null 2>"$WORK/$1.err"; then
    RESTORED_PID=$(cat "$WORK/$1.pid" 2>/dev/null)
    fail "a restore with bundle $1 succeeded"
  fi
  grep -q "$2" "$WORK/$1.err" || fail "bundle $1: unexpected error: $(cat "$WORK/$1.err")"
  [[ ! -s "$WORK/$1.pid" ]] || fail "bundle $1: a pid file was written"
}

other_bundle errno78 "c['linux']['seccomp'] = json.loads('''$(profile 78)''')"
refused errno78 "linux.seccomp.*syscall getpriority (140): the bundle's profile gives ERRNO(78, .*) but the checkpointed filter gives ERRNO(77, EBADFD)"
echo "ok: a profile with another errno for getpriority is refused: $(cat "$WORK/errno78.err")"

other_bundle args "c['linux']['seccomp']['syscalls'][1]['args'][0]['value'] = 9"
refused args "syscall personality (135) with arg0=0x[89]"
echo "ok: a profile differing in an argument condition is refused: $(cat "$WORK/args.err")"

other_bundle none "del c['linux']['seccomp']"
refused none "the checkpointed init has a seccomp filter but the bundle has no profile"
echo "ok: a bundle without a profile is refused"

# The same profile written differently (rules in another order, without x32) restores.
other_bundle same "s = c['linux']['seccomp']; s['syscalls'].reverse(); s['architectures'] = ['SCMP_ARCH_X86', 'SCMP_ARCH_X86_64']"
"$CRSHIM" restore --bundle "$WORK/same" --image-path "$WORK/img" --work-path "$WORK/w2" --detach \
  --pid-file "$WORK/restored.pid" -v4 </dev/null > >(exec cat >"$WORK/out2") 2>"$WORK/restore.err" ||
  fail "crshim restore failed: $(cat "$WORK/restore.err") $(engine_log "$WORK/w2")"
RESTORED_PID=$(cat "$WORK/restored.pid")
note_cgroups
wait_lines "$WORK/out2" 3
last=$(tail -1 "$WORK/out1" | cut -d' ' -f1)
first=$(head -1 "$WORK/out2" | cut -d' ' -f1)
[[ "$first" == $((last + 1)) ]] || fail "restored ticker printed '$first' first, expected $((last + 1))"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$RESTORED_PID/status" || fail "the restored init has no seccomp filter"
sed -n 2p "$WORK/out2" | grep -q 'File descriptor in bad state' ||
  fail "getpriority does not fail with EBADFD after the restore: $(head -3 "$WORK/out2")"
echo "ok: restore with the same profile written differently: the ticker goes on from $last, getpriority still EBADFD"

# A denying default: runc answers syscalls above the profile's highest with ENOSYS instead of the
# default's EPERM; the restore takes that for the same profile.
stop_restored
header=/usr/include/x86_64-linux-gnu/asm/unistd_64.h
[[ -f "$header" ]] || fail "$header is missing (linux-libc-dev): it lists the syscalls to allow"
python3 - "$BUNDLE/config.json" "$header" <<'PY'
import json, re, sys
p, header = sys.argv[1:]
names = sorted(set(re.findall(r"#define __NR_(\w+) ", open(header).read())) - {"getpriority"})
c = json.load(open(p))
c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                         "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
json.dump(c, open(p, "w"), indent=2)
PY
run_container "$WORK/out3"
wait_lines "$WORK/out3" 3
pid=$(container_pid)
grep -q '^2 .*Operation not permitted' "$WORK/out3" || fail "getpriority did not fail with EPERM: $(head -3 "$WORK/out3")"
"$CRSHIM" checkpoint --bundle "$BUNDLE" --image-path "$WORK/img4" --work-path "$WORK/w4" -v4 "$pid" ||
  fail "crshim checkpoint of the deny-by-default container failed: $(engine_log "$WORK/w4")"
"${RUNC[@]}" delete -f "$ID" || fail "runc delete -f failed"
sleep 0.3
"$CRSHIM" restore --bundle "$BUNDLE" --image-path "$WORK/img4" --work-path "$WORK/w5" --detach \
  --pid-file "$WORK/restored4.pid" -v4 </dev/null > >(exec cat >"$WORK/out4") 2>"$WORK/restore4.err" ||
  fail "crshim restore of the deny-by-default container failed: $(cat "$WORK/restore4.err") $(engine_log "$WORK/w5")"
RESTORED_PID=$(cat "$WORK/restored4.pid")
wait_lines "$WORK/out4" 2
sed -n 2p "$WORK/out4" | grep -q 'Operation not permitted' ||
  fail "getpriority does not fail with EPERM after the restore: $(head -3 "$WORK/out4")"
echo "ok: a deny-by-default profile (runc's ENOSYS answer above its syscalls) restores"
