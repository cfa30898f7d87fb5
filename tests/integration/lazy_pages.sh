#!/bin/bash
# Lazy (post-copy) restore: `crshim lazy-pages` serves private memory through userfaultfd while the
# restored tree already runs; forks after the restore, trees, and every failure path.
source "$(dirname "$0")/lib.sh"

DAEMON_PID=
kill_daemon() { if [[ -n "$DAEMON_PID" ]]; then kill -9 "$DAEMON_PID" 2>/dev/null || true; fi; }
at_exit kill_daemon

# start_daemon DIR [VAR=VALUE...]: starts the daemon on DIR and waits for its readiness byte (a NUL
# on --status-fd); sets DAEMON_PID.
start_daemon() {
  local dir=$1
  shift
  rm -f "$dir/lazy-pages.log" "$WORK/daemon.status"
  env "$@" "$CRSHIM" lazy-pages -D "$dir" -o lazy-pages.log -v4 --status-fd 3 3>"$WORK/daemon.status" &
  DAEMON_PID=$!
  status_byte "$WORK/daemon.status" "the lazy-pages daemon" "$DAEMON_PID"
  [[ -S "$dir/lazy-pages.socket" ]] || fail "the daemon is ready but lazy-pages.socket is missing"
}

# wait_daemon [SECONDS]: waits for the daemon to exit; sets DAEMON_RC.
wait_daemon() {
  wait_exit "$DAEMON_PID" "the lazy-pages daemon" "${1:-30}"
  DAEMON_RC=$RC
  DAEMON_PID=
}

# stat NAME LOG: a number from the daemon's final line.
stat() {
  local line
  line=$(grep 'lazy-pages: .* tasks' "$2" | tail -1) || fail "no stats line in $2"
  case $1 in
    tasks) sed -E 's/.*lazy-pages: ([0-9]+) tasks.*/\1/' <<<"$line" ;;
    forked) sed -E 's/.* ([0-9]+) forked.*/\1/' <<<"$line" ;;
    total) sed -E 's/.* ([0-9]+) lazy pages.*/\1/' <<<"$line" ;;
    faults) sed -E 's/.* ([0-9]+) faults served.*/\1/' <<<"$line" ;;
    fault_pages) sed -E 's/.*faults served \(([0-9]+) pages\).*/\1/' <<<"$line" ;;
    pushed) sed -E 's/.* ([0-9]+) pages pushed.*/\1/' <<<"$line" ;;
  esac
}

# 1. The tree runs before its memory is in place: the background push is slowed down, the program
#    verifies its 64 MiB at once, so most pages arrive through faults it takes while running.
start_program tp_lazy 64
IMG=$WORK/img
checkpoint "$IMG"
reap_target
start_daemon "$IMG" CRSHIM_LAZY_PUSH_PAUSE_MS=200
restore_detached "$IMG" --lazy-pages
grep -q 'left to the lazy-pages daemon' "$IMG/restore.log" || fail "the restore wrote every page itself"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon exited before the tree touched its memory"
finish_and_check
wait_daemon 30
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC: $(tail -3 "$IMG/lazy-pages.log")"
LOG=$IMG/lazy-pages.log
total=$(stat total "$LOG") fault_pages=$(stat fault_pages "$LOG") pushed=$(stat pushed "$LOG")
echo "stats: $(grep 'lazy-pages: .* tasks' "$LOG")"
((total >= 16384)) || fail "only $total lazy pages for 64 MiB"
((fault_pages >= 8192)) || fail "only $fault_pages pages came through faults: the tree did not run before its memory was in place"
((pushed < total)) || fail "everything was pushed ($pushed of $total) before the tree ran"
[[ ! -e "$IMG/lazy-pages.socket" ]] || fail "the daemon left its socket behind"
echo "ok: the restored program ran and faulted in $fault_pages of $total pages (pushed $pushed)"

# 2. The daemon pushes everything and exits 0 while the tree keeps running; afterwards the memory
#    is complete without it. The restored program keeps its pid.
rm -f "$RESULT"
start_daemon "$IMG"
restore_detached "$IMG" --lazy-pages
# ps and pgrep see the program at once: its argv and environ pages are never left to the daemon.
pgrep -f "tp_lazy $WORK/tp_lazy.ready" >/dev/null ||
  fail "pgrep misses the restored program; /proc/$TARGET_PID/cmdline reads '$(tr '\0' ' ' </proc/"$TARGET_PID"/cmdline)'"
wait_daemon 30
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC: $(tail -3 "$IMG/lazy-pages.log")"
total=$(stat total "$LOG") fault_pages=$(stat fault_pages "$LOG") pushed=$(stat pushed "$LOG")
((pushed + fault_pages == total)) || fail "delivered $pushed + $fault_pages of $total pages"
grep -q 'every page delivered' "$LOG" || fail "the daemon did not say everything was delivered"
kill -0 "$TARGET_PID" || fail "the program died while the daemon pushed its memory"
finish_and_check
echo "ok: the daemon pushed all $total pages and exited 0; the program then found all its memory"

# 2b. A tree whose daemon still fills its memory is not dumped (its missing pages would be lost); once
#     the daemon has exited it is, and comes back whole.
rm -f "$RESULT"
start_daemon "$IMG" CRSHIM_LAZY_PUSH_PAUSE_MS=50
restore_detached "$IMG" --lazy-pages
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img-again" -o dump.log -v4 2>"$WORK/err"; then
  fail "dumped a tree whose memory was still arriving"
fi
grep -qF "is registered with a userfaultfd for missing pages (a lazily restored tree whose lazy-pages daemon still fills it, or the program's own userfaultfd); hint: wait until \`crshim lazy-pages\` has exited" "$WORK/err" ||
  fail "unclear error: $(cat "$WORK/err")"
grep -q "State:.*[SR]" "/proc/$TARGET_PID/status" || fail "the refused dump left the program $(grep State "/proc/$TARGET_PID/status")"
wait_daemon 60
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC: $(tail -3 "$LOG")"
checkpoint "$WORK/img-again"
reap_target
restore_detached "$WORK/img-again"
finish_and_check
echo "ok: refused while the daemon filled the memory: $(head -1 "$WORK/err"); dumped and restored once it was done"

# 3. A fork after the restore while pages are missing: the child gets the parent's pending pages
#    (UFFD_EVENT_FORK); the parent's munmap, mremap and MADV_DONTNEED are followed too.
start_program tp_lazy 32 fork
checkpoint "$WORK/img-fork"
reap_target
start_daemon "$WORK/img-fork" CRSHIM_LAZY_PUSH_PAUSE_MS=200
restore_detached "$WORK/img-fork" --lazy-pages
finish_and_check
wait_daemon 30
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC: $(tail -3 "$WORK/img-fork/lazy-pages.log")"
forked=$(stat forked "$WORK/img-fork/lazy-pages.log")
((forked >= 1)) || fail "the daemon saw no fork"
echo "ok: a fork, munmap, mremap and MADV_DONTNEED after a lazy restore ($forked fork served)"

# 4. A tree: each process has its own address space and userfaultfd.
start_program tp_lazy 16 tree
checkpoint "$WORK/img-tree"
reap_target
start_daemon "$WORK/img-tree" CRSHIM_LAZY_PUSH_PAUSE_MS=100
restore_detached "$WORK/img-tree" --lazy-pages
finish_and_check
wait_daemon 30
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC"
tasks=$(stat tasks "$WORK/img-tree/lazy-pages.log")
((tasks == 2)) || fail "the daemon served $tasks address spaces, expected 2"
echo "ok: a two-process tree restored lazily"

# 4b. Threads (each stack and TLS block an area of its own, next to others in one pagemap run: a copy
#     may not cross from one area into the next) and the 12-process tree with its sessions, zombie and
#     nested pid namespace.
for prog in tp_threads tp_tree tp_clone_share; do
  start_program "$prog"
  checkpoint "$WORK/img-$prog"
  reap_target
  start_daemon "$WORK/img-$prog"
  restore_detached "$WORK/img-$prog" --lazy-pages
  finish_and_check
  wait_daemon 30
  ((DAEMON_RC == 0)) || fail "$prog: the daemon exited $DAEMON_RC: $(tail -3 "$WORK/img-$prog/lazy-pages.log")"
  dropped=$(sed -nE 's/.* ([0-9]+) dropped.*/\1/p' "$WORK/img-$prog/lazy-pages.log")
  [[ $dropped == 0 ]] || fail "$prog: $dropped pages dropped (a task that ran on must get every page): $(grep 'lazy-pages:' "$WORK/img-$prog/lazy-pages.log")"
  echo "ok: $prog restored lazily"
done

# 5. An incremental dump: pages left to the parent images (PE_PARENT) are served from there.
start_program tp_lazy 64
mkdir -p "$WORK/pre" "$WORK/img-inc"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/pre" -o pre.log -v4 || fail "pre-dump: $(tail -3 "$WORK/pre/pre.log")"
checkpoint "$WORK/img-inc" --prev-images-dir ../pre --track-mem
reap_target
skipped=$(crit decode -i "$WORK/img-inc/stats-dump" | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'][0]['dump'].get('pages_skipped_parent', 0))")
((skipped >= 16000)) || fail "only $skipped pages were left to the parent images"
start_daemon "$WORK/img-inc" CRSHIM_LAZY_PUSH_PAUSE_MS=100
restore_detached "$WORK/img-inc" --lazy-pages
finish_and_check
wait_daemon 30
((DAEMON_RC == 0)) || fail "lazy-pages daemon exited $DAEMON_RC: $(tail -3 "$WORK/img-inc/lazy-pages.log")"
total=$(stat total "$WORK/img-inc/lazy-pages.log")
((total >= 16384)) || fail "only $total lazy pages from the parent images"
echo "ok: an incremental dump restored lazily, $total pages from the parent chain"

# 6. No daemon: the restore waits a little, then fails cleanly and leaves no task.
rm -f "$RESULT"
start=$(date +%s)
if "$CRSHIM" restore -D "$IMG" -o restore-nodaemon.log -v4 -d --lazy-pages 2>"$WORK/err"; then
  fail "a lazy restore without a daemon succeeded"
fi
grep -q 'lazy-pages.socket' "$WORK/err" || fail "the error does not name the socket: $(cat "$WORK/err")"
(($(date +%s) - start < 30)) || fail "the restore waited too long for the daemon"
if pgrep -f "tp_lazy $WORK/tp_lazy.ready" >/dev/null; then fail "a task of the failed restore is alive"; fi
echo "ok: no daemon: $(head -1 "$WORK/err")"

# 7. A restore that fails after handing memory to the daemon kills its tasks; the daemon exits non-zero.
start_daemon "$IMG"
if CRSHIM_FAULT=restore:before-resume "$CRSHIM" restore -D "$IMG" -o restore-fault.log -v4 -d --lazy-pages 2>"$WORK/err"; then
  fail "the fault point did not fail the restore"
fi
wait_daemon 30
((DAEMON_RC != 0)) || fail "the daemon exited 0 after a failed restore"
grep -qF "the restore ended before it resumed the tree; hint: see the restore's log" "$IMG/lazy-pages.log" ||
  fail "the daemon did not say the restore failed: $(tail -3 "$IMG/lazy-pages.log")"
if pgrep -f "tp_lazy $WORK/tp_lazy.ready" >/dev/null; then fail "a task of the failed restore is alive"; fi
echo "ok: a failed lazy restore leaves no task; the daemon exits $DAEMON_RC"

# 7b. Pages marked lazy-only (PE_LAZY without PE_PRESENT: kept on a page server) are refused by the
#     daemon once the restore hands their area over, and the restore fails with its words.
start_program tp_lazy 1
checkpoint "$WORK/img-lazy-only"
reap_target
python3 - "$WORK/img-lazy-only" <<'PY' || fail "could not edit the pagemap"
import glob, struct, sys
# The largest PE_PRESENT entry keeps its first page; the rest becomes PE_LAZY only. Edited field by
# field: crit's schema lacks nr_pages (field 5), so a decode/encode round trip would lose it.
def varint(b, i):
    v = s = 0
    while True:
        v |= (b[i] & 0x7f) << s; s += 7; i += 1
        if not b[i - 1] & 0x80: return v, i
def enc(v):
    out = bytearray()
    while True:
        out.append((v & 0x7f) | (0x80 if v > 0x7f else 0)); v >>= 7
        if not v: return bytes(out)
def entry(vaddr, n, flags):
    return b"\x08" + enc(vaddr) + b"\x10\x00" + b"\x20" + enc(flags) + b"\x28" + enc(n)
pm = glob.glob(sys.argv[1] + "/pagemap-*.img")[0]
b = open(pm, "rb").read()
msgs, i = [], 8
while i < len(b):
    (size,) = struct.unpack_from("<I", b, i); msgs.append(b[i + 4:i + 4 + size]); i += 4 + size
fields = []
for m in msgs[1:]:
    f, j = {}, 0
    while j < len(m):
        tag, j = varint(m, j); f[tag >> 3], j = varint(m, j)
    fields.append(f)
big = max(range(len(fields)), key=lambda k: fields[k].get(5, 0) if fields[k].get(4, 4) == 4 else 0)
f = fields[big]
assert f[5] > 1, f
out = [msgs[0]] + [m for m in msgs[1:big + 1]]
out[-1] = entry(f[1], 1, 4)
out += [entry(f[1] + 4096, f[5] - 1, 2)] + msgs[big + 2:]
open(pm, "wb").write(b[:8] + b"".join(struct.pack("<I", len(m)) + m for m in out))
PY
start_daemon "$WORK/img-lazy-only"
if "$CRSHIM" restore -D "$WORK/img-lazy-only" -o restore.log -v4 -d --lazy-pages 2>"$WORK/err"; then
  fail "restored pages that live on a page server"
fi
wait_daemon 30
((DAEMON_RC != 0)) || fail "the daemon exited 0 without the pages"
LAZY_ONLY="lazy-only pages (PE_LAZY without PE_PRESENT) are held by the lazy dump on the source; hint: run \`crshim lazy-pages --page-server --address SOURCE --port PORT\` to fetch them from there"
grep -qF "$LAZY_ONLY" "$WORK/img-lazy-only/lazy-pages.log" ||
  fail "unclear daemon error: $(tail -3 "$WORK/img-lazy-only/lazy-pages.log")"
grep -qF "$LAZY_ONLY" "$WORK/err" || fail "unclear restore error: $(cat "$WORK/err")"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "a task of the refused restore is alive"
echo "ok: lazy-only pages refused: $(cat "$WORK/err")"
# An eager restore of the same images refuses them before any task exists instead of zero-filling them.
if "$CRSHIM" restore -D "$WORK/img-lazy-only" -o restore-eager.log -d 2>"$WORK/err"; then
  fail "an eager restore filled lazy-only pages with zeros"
fi
grep -qF "lazy-only pages (PE_LAZY without PE_PRESENT) are held by the lazy dump on the source; hint: restore with --lazy-pages, with \`crshim lazy-pages --page-server\` fetching them from the source" "$WORK/err" ||
  fail "unclear eager restore error: $(cat "$WORK/err")"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "a task of the refused eager restore is alive"
echo "ok: an eager restore refuses lazy-only pages: $(cat "$WORK/err")"

# 8. The daemon gives up when no restore comes, and refuses a directory without images.
start=$(date +%s)
if "$CRSHIM" lazy-pages -D "$IMG" -o lazy-timeout.log --timeout 1 2>"$WORK/err"; then fail "the daemon waited forever"; fi
grep -q 'no restore connected' "$WORK/err" "$IMG/lazy-timeout.log" || fail "unclear timeout error: $(cat "$WORK/err")"
(($(date +%s) - start < 10)) || fail "the daemon ignored --timeout"
mkdir -p "$WORK/empty"
if "$CRSHIM" lazy-pages -D "$WORK/empty" -o lazy.log --timeout 1 2>"$WORK/err"; then fail "the daemon took a directory without images"; fi
grep -q 'inventory.img' "$WORK/err" || fail "unclear error for missing images: $(cat "$WORK/err")"
echo "ok: daemon timeout and missing images are errors"

# 9. A lazy dump needs a port to serve its pages on, and a pre-dump is never lazy: both are refused
#    before anything is frozen.
start_program tp_lazy 1
if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/img-lazy-dump" -o dump.log --lazy-pages 2>"$WORK/err"; then fail "dump --lazy-pages without a port succeeded"; fi
grep -qF "dump lazy pages: no port to serve the pages on; hint: give --port PORT (and --address ADDR) for \`crshim lazy-pages --page-server\` to connect to" "$WORK/err" ||
  fail "unclear error: $(cat "$WORK/err")"
if "$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/img-lazy-pre" -o pre.log --lazy-pages --port 1 2>"$WORK/err2"; then fail "pre-dump --lazy-pages succeeded"; fi
grep -qF "pre-dump lazy pages: a pre-dump writes every page it reads; hint: use --lazy-pages with the final dump" "$WORK/err2" ||
  fail "unclear pre-dump error: $(cat "$WORK/err2")"
finish_and_check
echo "ok: dump --lazy-pages without --port and pre-dump --lazy-pages refused: $(head -1 "$WORK/err")"
