#!/bin/bash
# Owners of a tree's objects when it has a user namespace of its own (0 inside = 100000 outside):
# SysV IPC objects, memfds, ghost files and unix socket files go into the images with the ids the
# namespace sees (as CRIU writes them), and come back owned by the ids of the namespace the tree is
# restored into: the same host ids in a new namespace with the images' maps, 200000 and up when it
# joins (--join-ns user) a namespace mapped 0 200000 65536. A namespace that does not map an owner
# is refused with a clear error and leaves no task behind.
source "$(dirname "$0")/lib.sh"
USERNS_PROGRAMS=(tp_ipc_objects tp_memfd tp_ghost tp_unix)
source "$(dirname "$0")/lib_userns.sh"

# owners PID DIR: the objects of task PID and the socket files in DIR with their owners as the host
# sees them, one "object uid:gid" a line.
owners() {
  local pid=$1 dir=$2 fd link kind
  for fd in /proc/"$pid"/fd/*; do
    link=$(readlink "$fd") || continue
    case "$link" in
      /memfd:*) kind=memfd ;;
      *" (deleted)") kind=ghost ;;
      *) continue ;;
    esac
    echo "$kind ${fd##*/} $(stat -L -c %u:%g "$fd")"
  done
  for f in "$dir"/*.sock; do
    [[ -S "$f" ]] && echo "socket-file ${f##*/} $(stat -c %u:%g "$f")"
  done
  # /proc/sysvipc shows owners as the reader's user namespace (the host's) sees them.
  nsenter -t "$pid" -i python3 -c '
import sys
for kind in ("shm", "sem", "msg"):
    rows = [l.split() for l in open("/proc/sysvipc/" + kind)]
    head = rows[0]
    for r in rows[1:]:
        print("sysv-%s %s %s:%s creator %s:%s" % (kind, r[head.index("key")], r[head.index("uid")], r[head.index("gid")],
                                               r[head.index("cuid")], r[head.index("cgid")]))
'
}

# shifted FILE: its owners moved from the 100000 range to the 200000 range.
shifted() {
  python3 -c '
import re, sys
print(re.sub(r"\b1(\d{5})\b", lambda m: str(200000 + int(m.group(1))), open(sys.argv[1]).read()), end="")' "$1"
}

# holder MAP: the pid of a process (sleeping, of no id inside) alone in a new user namespace whose
# uid and gid maps are the one extent MAP; printed once the maps are written.
holder() {
  python3 - "$1" <<'PY'
import ctypes, os, sys, time
unshared_r, unshared_w = os.pipe()
child = os.fork()
if child == 0:
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
        os._exit(1)
    os.write(unshared_w, b"u")
    time.sleep(1000)
    os._exit(0)
os.close(unshared_w)
if os.read(unshared_r, 1) != b"u":
    sys.exit("unshare failed")
for kind in ("uid", "gid"):
    with open("/proc/%d/%s_map" % (child, kind), "w") as f:
        f.write(sys.argv[1] + "\n")
print(child)
PY
}

# The namespace to join: mapped 0 200000 65536.
HOLDER=$(holder "0 200000 65536") || fail "no namespace holder"
at_exit 'kill -9 $HOLDER 2>/dev/null'
grep -q "200000" "/proc/$HOLDER/uid_map" || fail "holder maps: $(cat "/proc/$HOLDER/uid_map")"

# run_case NAME KIND... -- ARGS...: NAME in its own user, pid and IPC namespaces holding objects of each
# KIND (as owners() names them); dump, images checked, restored into a new namespace, then into HOLDER's.
run_case() {
  local name=$1 kinds=() img=$WORK/img-$1 dir=$WORK/dir-$1 kind
  shift
  while [[ $1 != -- ]]; do kinds+=("$1"); shift; done
  shift
  mkdir -m 0777 -p "$dir"
  READY=$WORK/$name.ready RESULT=$WORK/$name.result
  in_userns "pid ipc" "$WORK/$name.out" "$PROGRAMS/$name" "$READY" "$RESULT" "$@"
  wait_for_file "$READY"
  TARGET_PID=$(userns_task)
  owners "$TARGET_PID" "$dir" >"$WORK/$name.before"
  for kind in "${kinds[@]}"; do
    grep -q "^$kind .* 1[0-9]\{5\}:1[0-9]\{5\}$" "$WORK/$name.before" ||
      fail "$name: no $kind owned by the 100000 range: $(cat "$WORK/$name.before")"
  done
  checkpoint "$img"
  wait "$LAUNCHER" 2>/dev/null || true
  # The images hold the namespace's ids, never the host's.
  for f in "$img"/*.img; do
    case "$(basename "$f")" in pages-*) continue ;; esac
    crit decode -i "$f" >"$WORK/decoded.json" 2>/dev/null || continue
    if grep -qE '"(c?uid|c?gid)": 1[0-9]{5}\b' "$WORK/decoded.json"; then
      fail "$name: $(basename "$f") holds a host id: $(grep -oE '"(c?uid|c?gid)": 1[0-9]{5}' "$WORK/decoded.json" | head -3 | tr '\n' ' ')"
    fi
  done

  # (a) A new user namespace with the images' maps: the same host owners as before the dump.
  restore_detached "$img" --pidfile "$WORK/pid"
  TARGET_PID=$(cat "$WORK/pid")
  owners "$TARGET_PID" "$dir" >"$WORK/$name.after"
  diff "$WORK/$name.before" "$WORK/$name.after" >/dev/null ||
    fail "$name: owners differ after restore: $(diff "$WORK/$name.before" "$WORK/$name.after" | tr '\n' ' ')"
  finish_and_check
  rm -f "$RESULT"

  # (b) Joining a namespace with another id range: the objects belong to its ids.
  restore_detached "$img" --pidfile "$WORK/pid" --join-ns "user:$HOLDER"
  TARGET_PID=$(cat "$WORK/pid")
  [[ "$(readlink "/proc/$TARGET_PID/ns/user")" == "$(readlink "/proc/$HOLDER/ns/user")" ]] || fail "$name: not in the joined user namespace"
  owners "$TARGET_PID" "$dir" >"$WORK/$name.joined"
  diff <(shifted "$WORK/$name.before") "$WORK/$name.joined" >/dev/null ||
    fail "$name: owners in the joined namespace: $(tr '\n' ' ' <"$WORK/$name.joined"), expected $(shifted "$WORK/$name.before" | tr '\n' ' ')"
  finish_and_check
  echo "ok: $name: ${kinds[*]} kept as the namespace's ids ($(awk '{print $NF}' "$WORK/$name.before" | sort -u | tr '\n' ' ')on the host), restored with them and into 0 200000 65536"
}

# image_owners IMG...: every "uid:gid" pair (owners and creators) the images hold, sorted, one a line.
image_owners() {
  local f
  for f in "$@"; do crit decode -i "$f"; done | python3 -c '
import json, sys
def walk(o):
    if isinstance(o, dict):
        for u, g in (("uid", "gid"), ("cuid", "cgid")):
            if u in o and g in o:
                yield "%s:%s" % (o[u], o[g])
        for v in o.values():
            yield from walk(v)
    elif isinstance(o, list):
        for v in o:
            yield from walk(v)
text, dec, out = sys.stdin.read(), json.JSONDecoder(), set()
pos = 0
while pos < len(text):
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos == len(text):
        break
    obj, pos = dec.raw_decode(text, pos)
    out.update(walk(obj))
print("\n".join(sorted(out)))'
}

run_case tp_ipc_objects sysv-shm sysv-sem sysv-msg --
# The segment's owner set inside (1234:4321), the other owners and every creator root inside.
[[ "$(image_owners "$WORK"/img-tp_ipc_objects/ipcns-{shm,sem,msg}-*.img | tr '\n' ' ')" == "0:0 1234:4321 " ]] ||
  fail "IPC images: owners $(image_owners "$WORK"/img-tp_ipc_objects/ipcns-{shm,sem,msg}-*.img | tr '\n' ' ')"
run_case tp_memfd memfd --
[[ "$(image_owners "$WORK/img-tp_memfd/memfd.img")" == "0:0" ]] || fail "memfd.img: owners $(image_owners "$WORK/img-tp_memfd/memfd.img")"
run_case tp_ghost ghost -- "$WORK/dir-tp_ghost"
[[ "$(image_owners "$WORK"/img-tp_ghost/ghost-file-*.img)" == "0:0" ]] ||
  fail "ghost image: owners $(image_owners "$WORK"/img-tp_ghost/ghost-file-*.img)"
run_case tp_unix socket-file -- "$WORK/dir-tp_unix"
crit decode -i "$WORK/img-tp_unix/files.img" >"$WORK/files.json"
grep -q '"file_perms"' "$WORK/files.json" || fail "files.img has no socket file permissions"
[[ "$(image_owners "$WORK/img-tp_unix/files.img")" == "0:0" ]] || fail "files.img: owners $(image_owners "$WORK/img-tp_unix/files.img")"
echo "ok: crit shows the owners as the namespace sees them (0:0, the segment's 1234:4321)"

# Namespaces without an id for an owner: one mapping only ids 0..999 (the shm segment's owner is
# 1234), one without 0 (the memfd's owner). Refused before any task exists.
SMALL=$(holder "0 300000 1000") || fail "no namespace holder"
at_exit 'kill -9 $SMALL 2>/dev/null'
NOROOT=$(holder "1 300000 65535") || fail "no namespace holder"
at_exit 'kill -9 $NOROOT 2>/dev/null'
# refused IMAGES HOLDER PATTERN: the restore fails with PATTERN and creates no task.
refused() {
  local img=$1 holder=$2 pattern=$3
  if "$CRSHIM" restore -D "$img" -o restore-refused.log -v4 -d --join-ns "user:$holder" 2>"$WORK/err"; then
    fail "a restore of $img into a namespace without the owner's id succeeded"
  fi
  grep -q "$pattern" "$WORK/err" || fail "unexpected error: $(cat "$WORK/err")"
  if grep -q "Created task" "$img/restore-refused.log"; then fail "tasks were created before the refusal: $(cat "$img/restore-refused.log")"; fi
  echo "ok: refused before any task exists: $(head -1 "$WORK/err")"
}
refused "$WORK/img-tp_ipc_objects" "$SMALL" \
  "restore SysV shm segment [0-9]*: owner uid 1234 is not mapped in the user namespace restored into; hint: restore into a user namespace whose uid_map and gid_map cover the ids of the images"
refused "$WORK/img-tp_memfd" "$NOROOT" "restore memfd inode [0-9]* (tp-memfd): owner uid 0 is not mapped in the user namespace restored into; hint: "
refused "$WORK/img-tp_ghost" "$NOROOT" "restore deleted file .*ghost.txt: owner uid 0 is not mapped in the user namespace restored into; hint: "
refused "$WORK/img-tp_unix" "$NOROOT" "restore unix socket file .*\.sock: owner uid 0 is not mapped in the user namespace restored into; hint: "
