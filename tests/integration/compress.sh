#!/bin/bash
# --compress: pages images written as zstd streams (a crshim extension) and read back by every restore
# path. Incompressible memory (tp_memory) and a process whose 64 MiB compress well both come back
# intact; the compressible one's pages take a fraction of the plain size; pre-dump chains and lazy
# restores read compressed images; a truncated one is refused before the tree runs; a page server
# (CRIU's plain stream) is refused with --compress.
source "$(dirname "$0")/lib.sh"

DAEMON=
at_exit '[[ -z $DAEMON ]] || kill -9 "$DAEMON" 2>/dev/null'

# zstd_pages DIR: every pages image in DIR starts with zstd's magic.
zstd_pages() {
  local f n=0
  for f in "$1"/pages-*.img; do
    [[ $(od -An -tx1 -N4 "$f" | tr -d ' ') == 28b52ffd ]] || fail "$f is not a zstd stream"
    n=$((n + 1))
  done
  ((n > 0)) || fail "no pages image in $1"
}
pages_bytes() { cat "$1"/pages-*.img | wc -c; }

# 1. Incompressible memory, compressed: restored intact.
start_program tp_memory
checkpoint "$WORK/mem" --compress
zstd_pages "$WORK/mem"
decode_all "$WORK/mem"
reap_target
restore_detached "$WORK/mem"
finish_and_check
echo "ok: tp_memory dumped with --compress ($(pages_bytes "$WORK/mem") bytes of pages) and restored"

# 2. Compressible memory: the same process dumped plain and compressed.
READY=$WORK/text.ready RESULT=$WORK/text.result
setsid python3 -c "
import os, signal, sys, time
text = bytearray(b'crshim keeps this page. ' * ((64 << 20) // 24))
digest = hash(bytes(text))
def done(*_):
    ok = hash(bytes(text)) == digest and len(text) == ((64 << 20) // 24) * 24
    open('$RESULT', 'w').write('PASS' if ok else 'FAIL: the text changed')
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
open('$READY', 'w').close()
while True: time.sleep(1)
" </dev/null >"$WORK/text.out" 2>&1 &
TARGET_PID=$!
wait_for_file "$READY"
checkpoint "$WORK/plain" --leave-running
checkpoint "$WORK/packed" --compress
zstd_pages "$WORK/packed"
plain=$(pages_bytes "$WORK/plain") packed=$(pages_bytes "$WORK/packed")
((packed * 4 < plain)) || fail "compressed pages take $packed bytes against $plain plain"
reap_target
restore_detached "$WORK/packed"
finish_and_check
echo "ok: compressible memory: $plain bytes of pages plain, $packed compressed; restored intact"

# 3. A pre-dump chain, compressed at every step.
start_program tp_memory
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/pre" -o pre.log -v4 --compress || fail "pre-dump: $(tail -3 "$WORK/pre/pre.log")"
zstd_pages "$WORK/pre"
checkpoint "$WORK/final" --compress --track-mem --prev-images-dir ../pre
parents=$(crit decode -i "$WORK/final/pagemap-$TARGET_PID.img" |
  python3 -c "import json,sys; print(sum(1 for e in json.load(sys.stdin)['entries'][1:] if e.get('flags') in (1, 'PE_PARENT')))")
((parents > 0)) || fail "the dump on top of the pre-dump refers to no parent pages"
reap_target
restore_detached "$WORK/final"
finish_and_check
echo "ok: pre-dump + dump, both compressed, restored through the parent chain"

# 4. Lazily, from compressed images.
start_program tp_memory
checkpoint "$WORK/lazy" --compress
reap_target
fifo=$WORK/status.fifo
mkfifo "$fifo"
"$CRSHIM" lazy-pages -D "$WORK/lazy" -o lazy-pages.log -v4 --status-fd 3 3>"$fifo" &
DAEMON=$!
[[ $(timeout 20 head -c1 "$fifo" | od -An -tx1 | tr -d ' ') == 00 ]] || fail "no readiness byte from lazy-pages"
restore_detached "$WORK/lazy" --lazy-pages
finish_and_check
for _ in $(seq 200); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.05; done
wait "$DAEMON" || fail "lazy-pages exited with $?: $(tail -3 "$WORK/lazy/lazy-pages.log")"
DAEMON=
echo "ok: lazy restore served from compressed images"

# 5. A truncated compressed image: refused, nothing left.
start_program tp_memory
checkpoint "$WORK/cut" --compress
reap_target
f=$(ls "$WORK"/cut/pages-*.img | head -1)
truncate -s $(($(stat -c %s "$f") / 2)) "$f"
if "$CRSHIM" restore -D "$WORK/cut" -d -o restore.log 2>"$WORK/err"; then fail "restored from a truncated compressed image"; fi
grep -q "decompress pages-.*\.img: the compressed image is truncated" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "the refused restore left pid $TARGET_PID"; fi
echo "ok: a truncated compressed pages image is refused, no task left"

# 6. Not with a page server.
if "$CRSHIM" dump -t 1 -D "$WORK/ps" --page-server --address 127.0.0.1 --port 1 --compress 2>"$WORK/err"; then fail "--compress with --page-server accepted"; fi
grep -q -- "--compress" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
echo "ok: --compress with --page-server is refused"
