#!/bin/bash
# SysV objects of a tree's own IPC namespace (shm segment with contents, semaphore set with values,
# message queue with messages) come back in the new namespace with the same ids, keys and contents;
# crit decodes the images; an attached segment is refused with a clear error.
source "$(dirname "$0")/lib.sh"

# The program runs in its own IPC namespace: `unshare --ipc` execs it, so the pid stays the program's.
REAL_PROGRAMS=$PROGRAMS
PROGRAMS=$WORK/programs
mkdir -p "$PROGRAMS"
printf '#!/bin/sh\nexec unshare --ipc %q "$@"\n' "$REAL_PROGRAMS/tp_ipc_objects" >"$PROGRAMS/tp_ipc_objects"
chmod +x "$PROGRAMS/tp_ipc_objects"

cycle tp_ipc_objects
for kind in shm sem msg; do
  ls "$WORK"/img1/ipcns-$kind-*.img >/dev/null || fail "no ipcns-$kind image"
done
crit decode -i "$WORK"/img1/ipcns-sem-*.img --pretty >"$WORK/sem.txt" || fail "crit cannot decode the sem image"
grep -q '"nsems": 4' "$WORK/sem.txt" || fail "sem image: $(cat "$WORK/sem.txt")"
[[ $(tr -d ' \n' <"$WORK/sem.txt") == *'[1,2,300,0]'* ]] || fail "sem values not in the image: $(cat "$WORK/sem.txt")"
crit decode -i "$WORK"/img1/ipcns-msg-*.img --pretty >"$WORK/msg.txt" || fail "crit cannot decode the msg image"
grep -q '"qnum": 3' "$WORK/msg.txt" && grep -q '"mtype": 7' "$WORK/msg.txt" || fail "msg image: $(cat "$WORK/msg.txt")"
crit decode -i "$WORK"/img1/ipcns-shm-*.img --pretty >"$WORK/shm.txt" || fail "crit cannot decode the shm image"
grep -q '"in_pagemaps": true' "$WORK/shm.txt" || fail "shm image: $(cat "$WORK/shm.txt")"
echo "ok: images decode with the dumped values"

# A segment attached in the target's address space comes back attached at the same address.
rm -rf "$WORK"/img[0-9]
cycle tp_ipc_objects attached
crit decode -i "$WORK"/img1/mm-*.img --pretty >"$WORK/mm.txt" || fail "crit cannot decode the mm image"
grep -q "VMA_AREA_SYSVIPC" "$WORK/mm.txt" || fail "no SysV VMA in the mm image"
echo "ok: attached segment restored"

# Attached SysV memory of the dumper's own IPC namespace is refused; the program runs on.
start_program tp_ipc_objects attached
if nsenter -t "$TARGET_PID" -i "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/att" 2>"$WORK/err"; then
  fail "SysV memory of the dumper's IPC namespace was dumped"
fi
grep -q "SysV shared memory of the dumper's own IPC namespace" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
finish_and_check
echo "ok: SysV memory in the dumper's namespace refused, the program ran on"
