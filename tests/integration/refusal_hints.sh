#!/bin/bash
# Refusals a user can meet, each with the hint that says what to do: every case provokes one with a
# small target (python mostly) and asserts the error's text and its "; hint: ..." word for word.
#  Dump: an io_uring; a file lock without --file-locks; an epoll watching a closed fd; descriptors in
#  flight on a unix socket; inotify and fanotify marks on deleted files; SysV shm of the host's IPC
#  namespace; a task traced by another process; a non-pty terminal; a pty slave whose master is
#  outside; a user namespace nested twice; pid 2 of a foreign pid namespace.
#  Restore: external net/pid namespaces, terminals and files without (or with the wrong) inherited
#  fd; a veth to the host without its host end's name, or into a missing bridge; a network namespace
#  where ip(8) is missing; an orphan pty without --orphan-pts-master; a pipe buffer above
#  pipe-max-size without CAP_SYS_RESOURCE; a task with capabilities crshim lacks; images whose vDSO
#  is not this kernel's; datagrams queued from a unix socket outside the tree, or that socket gone,
#  or more of them than net.unix.max_dgram_qlen; a stream queue above the default send buffer
#  without CAP_NET_ADMIN; a file changed since the dump; a file, FIFO, watched/marked file or marked
#  mount gone since the dump; a unix socket path or a TCP port taken by another process; an
#  incremental dump whose parent is gone; (a warning) a --link-remap link the restore cannot remove.
source "$(dirname "$0")/lib.sh"
command -v capsh >/dev/null || fail "capsh is needed (package libcap2-bin)"

FILES=$WORK/files
mkdir -p "$FILES"
EXTRA_PIDS=()
at_exit 'for p in "${EXTRA_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done'

# py_target CODE [PREFIX...]: runs CODE (python, with os, socket, ctypes, libc at hand) in a session
# of its own, under PREFIX (a command that execs python in other namespaces, e.g. unshare -n) when
# given, then idles; sets TARGET_PID once CODE is done.
py_target() {
  local ready=$WORK/py.ready code=$1
  shift
  rm -f "$ready"
  setsid "$@" python3 -c "
import ctypes, fcntl, os, select, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
$code
open('$ready', 'w').close()
while True: time.sleep(0.1)
" </dev/null >>"$WORK/py.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$ready"
}

# py_holder CODE: py_target for a process that only holds something (a path, a port) the restore
# then finds taken; sets OTHER, killed at exit.
py_holder() {
  local target=$TARGET_PID
  py_target "$1"
  OTHER=$TARGET_PID TARGET_PID=$target
  EXTRA_PIDS+=("$OTHER")
}

# stop_target: the target goes, and its pid with it.
stop_target() {
  kill -9 "$TARGET_PID" 2>/dev/null || true
  reap_target
}

# one_line_with FILE TEXT HINT: FILE is one line holding TEXT, ending in "; hint: HINT" (and the
# pointer to the full log).
one_line_with() {
  local file=$1 text=$2 hint=$3 line
  [[ $(wc -l <"$file") == 1 ]] || fail "expected one line on stderr, got: $(cat "$file")"
  grep -qF -- "$text" "$file" || fail "stderr lacks '$text': $(cat "$file")"
  line=$(cat "$file")
  [[ $line == *"; hint: $hint" || $line == *"; hint: $hint (full log: "*")" ]] ||
    fail "stderr does not end in the hint '$hint': $line"
}

# dump_refused NAME TEXT HINT [OPTIONS...]: the dump of TARGET_PID fails so; the target runs on.
dump_refused() {
  local name=$1 text=$2 hint=$3
  shift 3
  mkdir -p "$WORK/$name"
  if "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/$name" -o dump.log -v4 "$@" 2>"$WORK/$name.err"; then
    fail "$name: the dump was not refused"
  fi
  one_line_with "$WORK/$name.err" "$text" "$hint"
  kill -0 "$TARGET_PID" 2>/dev/null || fail "$name: the target died"
  echo "ok: $name: $(cat "$WORK/$name.err")"
}

# restore_refused NAME TEXT HINT [OPTIONS...]: the restore from $WORK/NAME fails so, leaving no task.
restore_refused() {
  local name=$1 text=$2 hint=$3
  shift 3
  local cmd=("$CRSHIM" restore -D "$WORK/$name" -o restore.log -v4 -d "$@")
  # DROP_CAP=CAP: crshim runs without that capability.
  if [[ -n ${DROP_CAP:-} ]]; then cmd=(capsh --drop="$DROP_CAP" -- -c "${cmd[*]}"); fi
  if "${cmd[@]}" 2>"$WORK/$name.err"; then
    fail "$name: the restore was not refused${DROP_CAP:+ without $DROP_CAP}"
  fi
  one_line_with "$WORK/$name.err" "$text" "$hint"
  ! kill -0 "$TARGET_PID" 2>/dev/null || fail "$name: a task was left behind"
  echo "ok: $name: $(cat "$WORK/$name.err")"
}

# ---- Dump refusals.

# An io_uring instance (io_uring_setup, syscall 425): a kind of file crshim does not dump.
py_target "
params = ctypes.create_string_buffer(120)
ring = libc.syscall(425, 4, params)
if ring < 0: sys.exit('io_uring_setup failed')
open('$WORK/ring', 'w').write(str(ring))"
dump_refused io_uring "unsupported file descriptors: fd $(cat "$WORK/ring") (unknown object anon_inode:[io_uring])" \
  "close them before checkpointing, or wait for support of these file kinds"
stop_target

py_target "
lk = open('$FILES/lock', 'w')
fcntl.flock(lk, fcntl.LOCK_EX)"
dump_refused lock "the task holds a file lock through it" "use --file-locks to dump and restore file locks"
stop_target

# The pipe's read end stays open as a dup, so the epoll keeps its registration of the closed fd. (The
# same found once the task is frozen, a race, gets a hint of its own: eventpoll.cc.)
py_target "
ep = select.epoll()
r, w = os.pipe()
keep = os.dup(r)
ep.register(r, select.EPOLLIN)
os.close(r)
open('$WORK/tfd', 'w').write(str(r))"
dump_refused epoll "epoll whose target fd $(cat "$WORK/tfd")"' is closed (the epoll still watches the file that was there: EPOLL_CTL_DEL it first)' \
  "close them before checkpointing, or wait for support of these file kinds"
stop_target

py_target "
a, b = socket.socketpair()
r, w = os.pipe()
socket.send_fds(a, [b'x'], [r])"
dump_refused scm_rights "descriptors in flight (SCM_RIGHTS) are queued on the socket" \
  "let the receiver take the passed descriptors before checkpointing"
stop_target

# A listening unix socket with a connection not accepted yet.
py_target "
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind('$FILES/listen')
l.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect('$FILES/listen')"
dump_refused unix_backlog "listening unix socket with 1 connection(s) not accepted yet (let the program accept them first)" \
  "close them before checkpointing, or wait for support of these file kinds"
stop_target

# The watched file is deleted but held open, so the watch stays on an inode without a name.
touch "$FILES/watched"
py_target "
ino = libc.inotify_init1(0)
if ino < 0 or libc.inotify_add_watch(ino, b'$FILES/watched', 2) < 0: sys.exit('inotify failed')
held = os.open('$FILES/watched', os.O_RDONLY)
os.unlink('$FILES/watched')"
dump_refused inotify_deleted "the watched inode has no path (" "inotify watches on deleted files cannot be restored"
stop_target

touch "$FILES/marked"
py_target "
fan = libc.fanotify_init(0, os.O_RDONLY)
if fan < 0: sys.exit('fanotify_init failed')
AT_FDCWD = -100
if libc.fanotify_mark(fan, 1, ctypes.c_uint64(2), AT_FDCWD, b'$FILES/marked') < 0: sys.exit('fanotify_mark failed')
held = os.open('$FILES/marked', os.O_RDONLY)
os.unlink('$FILES/marked')"
dump_refused fanotify_deleted "the marked inode has no path (" "fanotify marks on deleted files cannot be restored"
stop_target

# SysV shared memory of the host's IPC namespace (marked for removal: it goes with the target).
py_target "
libc.shmat.restype = ctypes.c_void_p
shm = libc.shmget(0, 4096, 0o1600)
if shm < 0 or libc.shmat(shm, None, 0) in (None, ctypes.c_void_p(-1).value): sys.exit('shm failed')
libc.shmctl(shm, 0, None)"
dump_refused sysv_shm "SysV shared memory of the dumper's own IPC namespace is not dumped" \
  "run the tree in an IPC namespace of its own"
stop_target

# A task its parent traces (PTRACE_TRACEME): crshim cannot seize it.
rm -f "$WORK/traced.pid"
setsid python3 -c "
import ctypes, os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    ctypes.CDLL(None).ptrace(0, 0, 0, 0)
    open('$WORK/traced.tmp', 'w').write(str(os.getpid()))
    os.rename('$WORK/traced.tmp', '$WORK/traced.pid')
    while True: time.sleep(0.1)
while True: time.sleep(0.1)
" </dev/null >>"$WORK/py.out" 2>&1 &
TRACER=$!
EXTRA_PIDS+=("$TRACER")
wait_for_file "$WORK/traced.pid"
TARGET_PID=$(cat "$WORK/traced.pid")
EXTRA_PIDS+=("$TARGET_PID")
dump_refused traced "ptrace(PTRACE_SEIZE) tid $TARGET_PID: Operation not permitted (EPERM)" \
  "the thread is traced by pid $TRACER (TracerPid in /proc/$TARGET_PID/status): detach that tracer first"
kill -9 "$TARGET_PID" "$TRACER" 2>/dev/null || true
wait "$TRACER" 2>/dev/null || true
TARGET_PID=

# A terminal that is no pty (the console), held without being the controlling terminal.
py_target "
con = os.open('/dev/console', os.O_RDONLY | os.O_NOCTTY)
st = os.fstat(con)
open('$WORK/con.key', 'w').write('tty[%x:%x]' % (st.st_rdev, st.st_dev))"
CON_KEY=$(cat "$WORK/con.key")
dump_refused console "/dev/console: a terminal other than a pty" \
  "use --shell-job if it is the terminal of the shell that started the tree, or --external $CON_KEY and --inherit-fd on restore"
# Dumped as external, it wants an fd at restore.
checkpoint "$WORK/console_ext" --external "$CON_KEY"
reap_target
restore_refused console_ext "restore external terminal $CON_KEY: no inherited fd for it" \
  "pass --inherit-fd fd[N]:$CON_KEY with a terminal open as fd N"

# A pty slave whose master script(1) holds, outside the tree.
command -v script >/dev/null || fail "script(1) is needed (package bsdutils)"
rm -f "$WORK/pts.pid"
script -qec "exec python3 -c \"
import os, time
st = os.fstat(0)
open('$WORK/pts.key', 'w').write('tty[%x:%x]' % (st.st_rdev, st.st_dev))
open('$WORK/pts.tmp', 'w').write(str(os.getpid()))
os.rename('$WORK/pts.tmp', '$WORK/pts.pid')
while True: time.sleep(0.1)
\"" /dev/null </dev/null >>"$WORK/py.out" 2>&1 &
SCRIPT=$!
EXTRA_PIDS+=("$SCRIPT")
wait_for_file "$WORK/pts.pid"
TARGET_PID=$(cat "$WORK/pts.pid")
PTS_KEY=$(cat "$WORK/pts.key")
dump_refused pts "a pty slave whose master is not in the dumped tree" \
  "use --orphan-pts-master (restore then hands a new master to the caller), or --shell-job if it is the terminal of the shell that started the tree, or --external $PTS_KEY and --inherit-fd on restore"
# With --orphan-pts-master the dump goes through; the restore then wants the same option.
checkpoint "$WORK/pts_orphan" --orphan-pts-master
kill -9 "$SCRIPT" 2>/dev/null || true
wait "$SCRIPT" 2>/dev/null || true
restore_refused pts_orphan "its master was outside the dumped tree" \
  "restore with --orphan-pts-master: the new master is handed to the orphan-pts-master hook"
TARGET_PID=

# A user namespace nested two levels below crshim's.
py_target "" unshare -U -r unshare -U -r
dump_refused userns_nested "its user namespace is nested in another one than crshim's; only one level is supported" \
  "run crshim in the parent of the tree's user namespace"
stop_target

# ---- External namespaces: the keys the dump was given are wanted at restore, as fds of the right kind.

# A network namespace of its own, dumped as external.
py_target "" unshare -n
checkpoint "$WORK/netns_ext" --external "net[$(stat -L -c %i "/proc/$TARGET_PID/ns/net")]:extNet"
reap_target
restore_refused netns_ext "the network namespace is external (key extNet)" \
  "give it with --inherit-fd fd[N]:extNet (N an open fd of that namespace)"
exec {pidns_fd}<"/proc/self/ns/pid"
restore_refused netns_ext "--inherit-fd fd[$pidns_fd]:extNet: the descriptor is not a network namespace" \
  "open /run/netns/NAME or /proc/PID/ns/net as that descriptor" --inherit-fd "fd[$pidns_fd]:extNet"
exec {pidns_fd}<&-

# A network namespace of its own, dumped in full, with a veth whose other end is on the host: the
# restore wants that end's name, and a bridge it names must exist.
VNS=crhint-$$ VHOST=crh$$
at_exit 'ip netns del "$VNS" 2>/dev/null; ip link del "$VHOST" 2>/dev/null'
ip netns add "$VNS" || fail "ip netns add"
ip link add "$VHOST" type veth peer name veth0 netns "$VNS" || fail "ip link add veth"
py_target "" nsenter --net="/run/netns/$VNS"
ip netns del "$VNS"
checkpoint "$WORK/veth"
reap_target
restore_refused veth "restore link veth0 (index " "give --external veth[veth0]:HOSTNAME[@BRIDGE]"
grep -qF "the host end of this veth has no name" "$WORK/veth.err" || fail "veth: $(cat "$WORK/veth.err")"
restore_refused veth "find link crnobr$$" \
  "--external veth[...]:$VHOST@crnobr$$ names a bridge that does not exist" --external "veth[veth0]:$VHOST@crnobr$$"
! ip link show "$VHOST" >/dev/null 2>&1 || fail "veth: the refused restore left $VHOST behind"

# A network namespace dumped in full, restored where ip(8) is missing (hidden in a mount namespace of
# the restore's own by a file that is not executable).
py_target "" unshare -n
checkpoint "$WORK/no_ip"
reap_target
touch "$FILES/noexec"
chmod 644 "$FILES/noexec"
HIDE=
for d in /usr/sbin /sbin /usr/bin /bin; do
  [[ -e $d/ip ]] && HIDE+="mount --bind $FILES/noexec $(readlink -f "$d/ip") && "
done
unshare -m sh -c "$HIDE exec $CRSHIM restore -D $WORK/no_ip -o restore.log -v4 -d" 2>"$WORK/no_ip.err" &&
  fail "no_ip: restored a network namespace without ip(8)"
one_line_with "$WORK/no_ip.err" "find ip: the tool is needed for network namespaces" "install iproute2"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "no_ip: a task was left behind"
echo "ok: no_ip: $(cat "$WORK/no_ip.err")"

# Pid 2 of a pid namespace that a holder (its pid 1) owns.
unshare --pid --fork --mount-proc sleep 600 &
UNSHARE=$!
EXTRA_PIDS+=("$UNSHARE")
HOLDER=""
for _ in $(seq 1 100); do HOLDER=$(pgrep -P "$UNSHARE" || true); [[ -n "$HOLDER" ]] && break; sleep 0.02; done
[[ -n "$HOLDER" ]] || fail "no pid namespace holder"
EXTRA_PIDS+=("$HOLDER")
PID_INO=$(stat -L -c %i "/proc/$HOLDER/ns/pid")
READY=$WORK/pidns.ready
nsenter -t "$HOLDER" -p setsid python3 -c "
import time
open('$READY', 'w').close()
while True: time.sleep(0.1)
" </dev/null >>"$WORK/py.out" 2>&1 &
NSENTER=$!
wait_for_file "$READY"
TARGET_PID=$(pgrep -P "$NSENTER")
dump_refused pidns_root "not pid 1, of a pid namespace crshim does not own (inode $PID_INO)" \
  "dump it with --external pid[$PID_INO]:KEY and restore it into that namespace with --inherit-fd fd[N]:KEY"
checkpoint "$WORK/pidns_ext" --external "pid[$PID_INO]:extPid"
wait "$NSENTER" 2>/dev/null || true
restore_refused pidns_ext "the pid namespace is external (key extPid)" \
  "give it with --inherit-fd fd[N]:extPid (N an open fd of /proc/PID/ns/pid)"
exec {netns_fd}<"/proc/self/ns/net"
restore_refused pidns_ext "the descriptor is not a pid namespace" "open /proc/PID/ns/pid as that descriptor" \
  --inherit-fd "fd[$netns_fd]:extPid"
exec {netns_fd}<&-
exec {file_fd}<"$WORK/pidns_ext/inventory.img"
restore_refused pidns_ext "ioctl(NS_GET_NSTYPE) " "open /proc/PID/ns/pid as that descriptor" --inherit-fd "fd[$file_fd]:extPid"
exec {file_fd}<&-
kill -9 "$HOLDER" 2>/dev/null || true
wait "$UNSHARE" 2>/dev/null || true

# ---- Restore refusals: the world changed between dump and restore.

# A pipe buffer above pipe-max-size comes back only with CAP_SYS_RESOURCE. The buffer is made while
# the limit is raised for a moment (no CAP_SYS_RESOURCE needed then).
MAX_PIPE=$(cat /proc/sys/fs/pipe-max-size)
at_exit "echo $MAX_PIPE >/proc/sys/fs/pipe-max-size"
echo $((8 << 20)) >/proc/sys/fs/pipe-max-size
py_target "
r, w = os.pipe()
fcntl.fcntl(w, 1031, 4 << 20)  # F_SETPIPE_SZ"
echo "$MAX_PIPE" >/proc/sys/fs/pipe-max-size
((MAX_PIPE < (4 << 20))) || fail "pipe-max-size is $MAX_PIPE: a 4 MiB buffer needs no privilege here"
checkpoint "$WORK/pipe_size"
reap_target
TARGET_PID=
DROP_CAP=cap_sys_resource restore_refused pipe_size "fcntl(F_SETPIPE_SZ) " \
  "sizes above /proc/sys/fs/pipe-max-size need CAP_SYS_RESOURCE, or that limit raised"

# A task with a capability crshim's bounding set lacks: capset() in the restored task is refused.
py_target ""
checkpoint "$WORK/caps"
stop_target
DROP_CAP=cap_checkpoint_restore restore_refused caps "credentials: remote capset tid $TARGET_PID: Operation not permitted (EPERM)" \
  "the dumped task holds capabilities crshim lacks: run crshim with at least the task's capabilities"

# Images from a kernel with another vDSO: the image's [vdso] made a page shorter, then its first
# [vvar] instead (crit decode, edit, encode).
# shrink_vma DIR STATUS: the first vma of DIR's mm image whose status names STATUS starts a page later.
shrink_vma() {
  python3 - "$1" "$2" <<'PY' || fail "could not edit the mm image of $1"
import glob, json, subprocess, sys
d, kind = sys.argv[1], sys.argv[2]
mm = glob.glob(d + "/mm-*.img")[0]
img = json.loads(subprocess.check_output(["crit", "decode", "--pretty", "-i", mm]))
v = next(v for v in img["entries"][0]["vmas"] if kind in v["status"])
v["start"] = hex(int(v["start"], 16) + 0x1000)
subprocess.run(["crit", "encode", "-o", mm], input=json.dumps(img).encode(), check=True)
PY
}
py_target ""
checkpoint "$WORK/vdso_size"
reap_target
cp -r "$WORK/vdso_size" "$WORK/vvar_layout"
shrink_vma "$WORK/vdso_size" VMA_AREA_VDSO
restore_refused vdso_size "vDSO: restore vDSO: the vDSO size differs from the image's" \
  "restore on the kernel the dump was made on"
shrink_vma "$WORK/vvar_layout" VMA_AREA_VVAR
restore_refused vvar_layout "vDSO: restore vDSO: the [vvar]/[vdso] layout differs from the image's" \
  "restore on the kernel the dump was made on"

echo data >"$FILES/data"
py_target "held = open('$FILES/data')"
checkpoint "$WORK/reg_gone"
reap_target
rm "$FILES/data"
restore_refused reg_gone "open $FILES/data: No such file or directory (ENOENT)" \
  "the file must exist at restore as it did at dump"

# The same file there again, but longer, then with another mode.
echo data >"$FILES/data"
chmod 644 "$FILES/data"
py_target "held = open('$FILES/data')"
checkpoint "$WORK/reg_changed"
reap_target
echo more >>"$FILES/data"
restore_refused reg_changed "the file changed since the dump: size 5 bytes expected, 10 found" \
  "put the file back as it was at dump time"
echo data >"$FILES/data"
chmod 600 "$FILES/data"
restore_refused reg_changed "the file changed since the dump: mode 0100644 expected, 0100600 found" \
  "put the file back as it was at dump time"

# A datagram socket connected to a named socket outside the tree (--ext-unix-sk), first with a
# datagram from it still queued, then with the outside socket gone by the restore.
setsid python3 -c "
import os, socket, time
o = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
o.bind('$FILES/dg_out')
while not os.path.exists('$FILES/dg_in.ino'): time.sleep(0.02)
o.sendto(b'queued', '$FILES/dg_in')
open('$FILES/dg_sent', 'w').close()
while True: time.sleep(0.1)
" </dev/null >>"$WORK/py.out" 2>&1 &
OUTSIDE=$!
EXTRA_PIDS+=("$OUTSIDE")
wait_for_file "$FILES/dg_out"
py_target "
t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
t.bind('$FILES/dg_in')
t.connect('$FILES/dg_out')
open('$FILES/dg_in.ino', 'w').write(str(os.fstat(t.fileno()).st_ino))"
wait_for_file "$FILES/dg_sent"
DG_INO=$(cat "$FILES/dg_in.ino")
checkpoint "$WORK/dgram_queued" --ext-unix-sk
reap_target
rm -f "$FILES/dg_in"
restore_refused dgram_queued "restore unix socket $DG_INO: queued datagrams from a peer outside the tree" \
  "pass the socket with --inherit-fd fd[N]:socket:[$DG_INO]"
py_target "
t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
t.connect('$FILES/dg_out')
open('$FILES/dg_peer.ino', 'w').write(str(os.fstat(t.fileno()).st_ino))"
DG_INO=$(cat "$FILES/dg_peer.ino")
checkpoint "$WORK/dgram_peer_gone" --ext-unix-sk
reap_target
kill -9 "$OUTSIDE"
wait "$OUTSIDE" 2>/dev/null || true
rm -f "$FILES/dg_out"
restore_refused dgram_peer_gone "connect unix socket $DG_INO: to $FILES/dg_out: No such file or directory (ENOENT)" \
  "the outside peer must be bound to that name again, or pass --inherit-fd fd[N]:socket:[$DG_INO]"

# Eight datagrams queued on a bound socket (the default limit is 10), restored where
# net.unix.max_dgram_qlen is 3 (a network namespace of the restore's own, so the host keeps its limit).
py_target "
t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
t.bind('$FILES/dg_many')
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(8): u.sendto(b'd%d' % i, '$FILES/dg_many')
open('$FILES/dg_many.ino', 'w').write(str(os.fstat(t.fileno()).st_ino))"
DG_INO=$(cat "$FILES/dg_many.ino")
checkpoint "$WORK/dgram_qlen"
reap_target
rm -f "$FILES/dg_many"
unshare -n sh -c "sysctl -qw net.unix.max_dgram_qlen=3 && exec $CRSHIM restore -D $WORK/dgram_qlen -o restore.log -v4 -d" \
  2>"$WORK/dgram_qlen.err" && fail "dgram_qlen: restored 8 datagrams into a queue of 3"
one_line_with "$WORK/dgram_qlen.err" "restore unix socket $DG_INO: the queued data does not fit the new socket's queue" \
  "more datagrams than net.unix.max_dgram_qlen from other senders"
! kill -0 "$TARGET_PID" 2>/dev/null || fail "dgram_qlen: a task was left behind"
echo "ok: dgram_qlen: $(cat "$WORK/dgram_qlen.err")"

# A --link-remap link that cannot be removed after the restore (made immutable): the restore goes on
# and its log warns with the hint.
mkdir -p "$FILES/lr"
echo data >"$FILES/lr/a"
ln "$FILES/lr/a" "$FILES/lr/b"
at_exit 'chattr -i "$FILES"/lr/link_remap.* 2>/dev/null'
py_target "
held = open('$FILES/lr/a')
os.unlink('$FILES/lr/a')"
checkpoint "$WORK/link_kept" --link-remap
reap_target
LINK=$(echo "$FILES"/lr/link_remap.*)
[[ -f $LINK ]] || fail "link_kept: no link_remap.N made: $(ls "$FILES/lr")"
chattr +i "$LINK" || fail "link_kept: chattr +i is needed on $FILES"
restore_detached "$WORK/link_kept" --pidfile "$WORK/link_kept.pid"
TARGET_PID=$(cat "$WORK/link_kept.pid")
grep -qF "unlink $LINK: the --link-remap link outlived the restore: Operation not permitted (EPERM); hint: remove it by hand" \
  "$WORK/link_kept/restore.log" || fail "link_kept: no warning: $(grep -i warn "$WORK/link_kept/restore.log")"
stop_target
chattr -i "$LINK"
echo "ok: link_kept: the restore warns that $LINK is left"

# 2 MiB queued on a stream socket whose peer's send buffer was forced that large (SO_SNDBUFFORCE):
# without CAP_NET_ADMIN the restore cannot force it again, so the data does not fit.
py_target "
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
a.setblocking(False)
n = 0
while n < (2 << 20): n += a.send(b'x' * 65536)
open('$FILES/stream.ino', 'w').write(str(os.fstat(b.fileno()).st_ino))"
ST_INO=$(cat "$FILES/stream.ino")
checkpoint "$WORK/stream_big"
reap_target
DROP_CAP=cap_net_admin restore_refused stream_big "restore unix socket $ST_INO: the queued data does not fit the new socket's queue" \
  "the sender's buffer is too small"

# An eventfd whose signal owner (F_SETOWN) is a process outside the tree that is gone by the restore.
sleep 600 &
OWNER=$!
EXTRA_PIDS+=("$OWNER")
py_target "
efd = os.eventfd(0)
fcntl.fcntl(efd, fcntl.F_SETOWN, $OWNER)"
checkpoint "$WORK/owner_gone"
reap_target
kill -9 "$OWNER"
wait "$OWNER" 2>/dev/null || true
restore_refused owner_gone "fcntl(F_SETOWN_EX) " "the owning process must exist when the file is restored"

echo data >"$FILES/ext"
py_target "held = os.open('$FILES/ext', os.O_RDONLY)"
EXT_FD=$(for l in "/proc/$TARGET_PID"/fd/*; do [[ $(readlink "$l") == "$FILES/ext" ]] && echo "${l##*/}"; done)
MNT=$(awk '/^mnt_id:/ {print $2}' "/proc/$TARGET_PID/fdinfo/$EXT_FD")
FILE_KEY=$(printf 'file[%x:%x]' "$MNT" "$(stat -c %i "$FILES/ext")")
checkpoint "$WORK/ext_file" --external "$FILE_KEY"
reap_target
restore_refused ext_file "restore external file $FILE_KEY: no inherited fd for it" \
  "pass --inherit-fd fd[N]:$FILE_KEY with an open fd N"
# An --inherit-fd whose fd crshim does not have open.
restore_refused ext_file "the fd for this key is not open in crshim" "the fd must be open in crshim when it starts" \
  --inherit-fd "fd[77]:$FILE_KEY"

mkfifo "$FILES/fifo"
py_target "held = os.open('$FILES/fifo', os.O_RDWR)"
checkpoint "$WORK/fifo_gone"
reap_target
rm "$FILES/fifo"
touch "$FILES/fifo"
restore_refused fifo_gone "restore $FILES/fifo: is no longer a FIFO" "the FIFO must exist at restore as it did at dump"
rm "$FILES/fifo"

touch "$FILES/watched2"
py_target "
ino = libc.inotify_init1(0)
if ino < 0 or libc.inotify_add_watch(ino, b'$FILES/watched2', 2) < 0: sys.exit('inotify failed')"
checkpoint "$WORK/watch_gone"
reap_target
rm "$FILES/watched2"
restore_refused watch_gone "inotify_add_watch " "the watched file must exist at restore as it did at dump"

touch "$FILES/marked2"
py_target "
fan = libc.fanotify_init(0, os.O_RDONLY)
if fan < 0 or libc.fanotify_mark(fan, 1, ctypes.c_uint64(2), -100, b'$FILES/marked2') < 0: sys.exit('fanotify failed')"
checkpoint "$WORK/mark_gone"
reap_target
rm "$FILES/marked2"
restore_refused mark_gone "$FILES/marked2" "the marked file must exist at restore as it did at dump"

mkdir -p "$WORK/mnt"
mount -t tmpfs -o size=1M crshim-hints "$WORK/mnt" || fail "cannot mount a tmpfs"
at_exit 'umount -l "$WORK/mnt" 2>/dev/null'
py_target "
fan = libc.fanotify_init(0, os.O_RDONLY)
if fan < 0 or libc.fanotify_mark(fan, 0x11, ctypes.c_uint64(0x20), -100, b'$WORK/mnt') < 0: sys.exit('fanotify failed')"
checkpoint "$WORK/mount_gone"
reap_target
umount "$WORK/mnt"
rmdir "$WORK/mnt"
restore_refused mount_gone "$WORK/mnt" "the marked mount must exist at restore"

py_target "
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('$FILES/sock')
s.listen(1)"
checkpoint "$WORK/sock_taken"
reap_target
py_holder "
os.unlink('$FILES/sock')
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('$FILES/sock')
s.listen(1)"
restore_refused sock_taken "bind $FILES/sock: a live socket is bound to this path" \
  "stop the process that holds it, or restore where the path is free"
kill -9 "$OTHER"
wait "$OTHER" 2>/dev/null || true

py_target "
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(1)
open('$WORK/port', 'w').write(str(s.getsockname()[1]))"
PORT=$(cat "$WORK/port")
checkpoint "$WORK/port_taken"
reap_target
py_holder "
s = socket.socket()
s.bind(('127.0.0.1', $PORT))
s.listen(1)"
restore_refused port_taken "127.0.0.1:$PORT: Address already in use (EADDRINUSE)" \
  "the address must be free: is the dumped process (or another one) still holding it?"
kill -9 "$OTHER"
wait "$OTHER" 2>/dev/null || true

# A lazy-pages daemon that no restore ever connects to.
start_program tp_memory
checkpoint "$WORK/lazy"
reap_target
if "$CRSHIM" lazy-pages -D "$WORK/lazy" -o lazy-pages.log --timeout 1 2>"$WORK/lazy.err"; then
  fail "lazy-pages without a restore succeeded"
fi
one_line_with "$WORK/lazy.err" "wait for a restore: no restore connected to the lazy-pages socket in time" \
  "run \`crshim restore --lazy-pages\` with the same images and work dir; --timeout sets the wait"
echo "ok: lazy: $(cat "$WORK/lazy.err")"

start_program tp_memory
mkdir -p "$WORK/pre" "$WORK/parent_gone"
"$CRSHIM" pre-dump -t "$TARGET_PID" -D "$WORK/pre" -o pre.log -v4 || fail "pre-dump: $(tail -3 "$WORK/pre/pre.log")"
checkpoint "$WORK/parent_gone" --prev-images-dir ../pre --track-mem
reap_target
rm -rf "$WORK/pre"
restore_refused parent_gone "parent" \
  "pages of this dump are in the previous dump's images: keep them, linked as \"parent\""
