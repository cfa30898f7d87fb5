#!/bin/bash
# The error a user meets on the command line, word for word: bad option values, missing arguments,
# directories that are not there, a page server or lazy-pages daemon that is not there, a network
# lock without its tool, misused bundle options. Each case expects a non-zero exit within a time
# limit, no crash (exit < 128), one line on stderr with the distinctive text and the hint the code
# gives. Texts asserted elsewhere (tests/unit/options_test.cc, cli_forms.sh, refusals.sh, ...) are
# not repeated here.
source "$(dirname "$0")/lib.sh"

# expect_error LIMIT TEXT HINT CMD...: CMD fails within LIMIT seconds without crashing, writing one
# line to stderr that holds TEXT and, unless HINT is empty, "; hint: HINT".
expect_error() {
  local limit=$1 text=$2 hint=$3 rc=0
  shift 3
  timeout -k 5 "$limit" "$@" </dev/null >"$WORK/out" 2>"$WORK/err" || rc=$?
  ((rc != 0)) || fail "\`$*\` succeeded: $(cat "$WORK/out")"
  ((rc != 124 && rc != 137)) || fail "\`$*\` hung (stopped after $limit s): $(cat "$WORK/err")"
  ((rc < 128)) || fail "\`$*\` crashed (exit $rc): $(cat "$WORK/err")"
  [[ $(wc -l <"$WORK/err") == 1 ]] || fail "\`$*\`: expected one line on stderr, got: $(cat "$WORK/err")"
  grep -qF -- "$text" "$WORK/err" || fail "\`$*\`: stderr lacks '$text': $(cat "$WORK/err")"
  if [[ -n $hint ]]; then
    grep -qF -- "; hint: $hint" "$WORK/err" || fail "\`$*\`: no hint '$hint': $(cat "$WORK/err")"
  fi
  echo "ok: $(head -1 "$WORK/err")"
}

# A TCP port nothing listens on (free a moment ago).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- 1. Option values and config lines that options_test.cc does not cover.
expect_error 10 "parse options: invalid value '' for -D: expected a directory" "" \
  "$CRSHIM" dump -t 1 -D ''
expect_error 10 "invalid value '12,ab' for -x: expected a comma-separated list of socket inodes" "" \
  "$CRSHIM" dump -t 1 -x12,ab
expect_error 10 "invalid value ':/x' for --cgroup-root: empty controller name before ':'" "" \
  "$CRSHIM" restore --cgroup-root :/x
expect_error 10 "invalid value ',' for --enable-fs: expected FS[,FS...] or 'all'" "" \
  "$CRSHIM" dump -t 1 --enable-fs ,
expect_error 10 "invalid value 'md5' for --file-validation: expected buildid or filesize" "" \
  "$CRSHIM" dump -t 1 --file-validation md5
expect_error 10 "invalid value 'copy' for --pre-dump-mode: expected splice or read" "" \
  "$CRSHIM" pre-dump -t 1 --pre-dump-mode copy
expect_error 10 "invalid value '' for --bundle: expected a bundle directory" "" \
  "$CRSHIM" restore --bundle ''
printf '# a comment\ntree=1 2\n' >"$WORK/twice.conf"
expect_error 10 "parse options $WORK/twice.conf:2: value given twice for 'tree'" "" \
  "$CRSHIM" dump --config "$WORK/twice.conf" -D "$WORK/x"
expect_error 10 "'exec' is not supported (it is deprecated in CRIU)" "use compel to run code in another process" \
  "$CRSHIM" exec
for verb in cpuinfo dedup; do
  args=("$verb")
  [[ $verb == cpuinfo ]] && args+=(dump)
  expect_error 10 "Error: '$verb' is not implemented yet" "see 'crshim help' for the commands that work" "$CRSHIM" "${args[@]}"
done

# ---- 2. Directories and files named on the command line that are not there.
expect_error 10 "restore failed: open $WORK/none: images directory: No such file or directory (ENOENT)" \
  "check -D (--image-path with --bundle)" "$CRSHIM" restore -D "$WORK/none"
expect_error 10 "lazy-pages failed: open $WORK/none: images directory: No such file or directory (ENOENT)" \
  "check -D (--image-path with --bundle)" "$CRSHIM" lazy-pages -D "$WORK/none"
expect_error 10 "dump failed: mkdir $WORK/none/deeper: images directory: No such file or directory (ENOENT)" "" \
  "$CRSHIM" dump -t 1 -D "$WORK/none/deeper"
expect_error 10 "dump failed: mkdir $WORK/none/work: work directory: No such file or directory (ENOENT)" "" \
  "$CRSHIM" dump -t 1 -D "$WORK/img" -W "$WORK/none/work"
expect_error 10 "dump failed: open $WORK/none/dump.log: log file: No such file or directory (ENOENT)" \
  "-o takes a name in the work directory" "$CRSHIM" dump -t 1 -D "$WORK/img" -o "$WORK/none/dump.log"
mkdir -p "$WORK/empty"
expect_error 10 "restore failed: validate inventory.img: missing image" "the image set is damaged" \
  "$CRSHIM" restore -D "$WORK/empty" -o restore.log
expect_error 10 "lazy-pages failed: open inventory.img: No such file or directory (ENOENT)" "-D must name the images the tree is restored from" \
  "$CRSHIM" lazy-pages -D "$WORK/empty" -o lazy.log --timeout 1
expect_error 10 "restore failed: options: not supported yet: --external foo[1]:x" \
  "leave them out; the README lists what works today" "$CRSHIM" restore -D "$WORK/empty" --external 'foo[1]:x'
expect_error 10 "Error: show: stat $WORK/none: No such file or directory (ENOENT)" "" "$CRSHIM" show "$WORK/none"

# ---- 3. What cannot be dumped before anything is frozen: no such process, crshim itself, a zombie.
expect_error 10 "dump failed: dump pid 999999999: no such process" "" "$CRSHIM" dump -t 999999999 -D "$WORK/gone"
expect_error 10 "dump failed: dump pid " "" sh -c 'exec "$0" dump -t $$ -D "$1"' "$CRSHIM" "$WORK/self"
grep -qF ": crshim cannot dump itself" "$WORK/err" || fail "self dump: $(cat "$WORK/err")"
# The child ends after its parent became sleep(1), which never reaps it.
bash -c 'sleep 0.2 & echo $! >"$1.tmp"; mv "$1.tmp" "$1"; exec sleep 60' _ "$WORK/zombie.pid" </dev/null >/dev/null 2>&1 &
# shellcheck disable=SC2034 # used by at_exit
ZOMBIE_PARENT=$!
at_exit 'kill "$ZOMBIE_PARENT" 2>/dev/null'
wait_for_file "$WORK/zombie.pid"
ZOMBIE=$(cat "$WORK/zombie.pid")
for _ in $(seq 100); do [[ $(awk '{print $3}' "/proc/$ZOMBIE/stat" 2>/dev/null) == Z ]] && break; sleep 0.05; done
[[ $(awk '{print $3}' "/proc/$ZOMBIE/stat") == Z ]] || fail "pid $ZOMBIE did not become a zombie"
expect_error 10 "dump failed: dump pid $ZOMBIE: the process is a zombie" "" "$CRSHIM" dump -t "$ZOMBIE" -D "$WORK/zombie"

# ---- 4. page-server: no port, an address of another host, a name that does not resolve, a port in
# use, a --prev-images-dir that is not there, a --ps-socket that is no descriptor.
expect_error 10 "page-server failed: page-server --port: no port given" "use --port PORT (0 picks a free one), or --ps-socket FD" \
  "$CRSHIM" page-server -D "$WORK/ps"
expect_error 10 "page-server failed: bind page server 192.0.2.1:0: Cannot assign requested address (EADDRNOTAVAIL)" \
  "give an address of this host" "$CRSHIM" page-server -D "$WORK/ps" --address 192.0.2.1 --port 0
expect_error 30 "page-server failed: resolve page server address no-such-host.invalid port 0" \
  "give --address as an IP address of this host" "$CRSHIM" page-server -D "$WORK/ps" --address no-such-host.invalid --port 0
python3 -c '
import os, socket, sys, time
s = socket.socket()
s.bind(("", 0))
s.listen(1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
' "$WORK/busy.port" &
# shellcheck disable=SC2034 # used by at_exit
BUSY=$!
at_exit 'kill "$BUSY" 2>/dev/null'
wait_for_file "$WORK/busy.port"
BUSY_PORT=$(cat "$WORK/busy.port")
expect_error 10 "page-server failed: bind page server 127.0.0.1:$BUSY_PORT: Address already in use (EADDRINUSE)" \
  "another server uses that port: pick another --port, or 0" "$CRSHIM" page-server -D "$WORK/ps" --address 127.0.0.1 --port "$BUSY_PORT"
expect_error 10 "page-server failed: --prev-images-dir ../nope: open parent: No such file or directory (ENOENT)" \
  "give the previous dump's images directory, relative to this one" \
  "$CRSHIM" page-server -D "$WORK/ps" --port 0 --prev-images-dir ../nope
expect_error 10 "page-server failed: use --ps-socket 77: not an open descriptor: Bad file descriptor (EBADF)" \
  "pass the connected socket of the dumper" "$CRSHIM" page-server -D "$WORK/ps" --ps-socket 77

# ---- 5. dump --page-server without a page server, a --prev-images-dir that is not there, a malformed
# --external mnt[]: refused; the target runs on.
start_program tp_memory
expect_error 10 "dump failed: dump page server: no address or port" "give --address ADDR --port PORT of a running page server" \
  "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/ps1" --page-server
PORT=$(free_port)
expect_error 10 "dump failed: connect page server 127.0.0.1:$PORT: Connection refused (ECONNREFUSED)" \
  "start \`crshim page-server\` (or \`criu page-server\`) there first, with the same --port" \
  "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/ps2" --page-server --address 127.0.0.1 --port "$PORT"
expect_error 30 "dump failed: resolve page server no-such-host.invalid port $PORT" \
  "give --address as an IP address or a resolvable host name" \
  "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/ps3" --page-server --address no-such-host.invalid --port "$PORT"
expect_error 10 "--prev-images-dir ../nope: open parent: No such file or directory (ENOENT)" \
  "give the previous dump's images directory, relative to this one" \
  "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/prev" --prev-images-dir ../nope
expect_error 10 "dump failed: options --external mnt[x: expected mnt[KEY]:VALUE" "" "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/mnt" --external 'mnt[x'
finish_and_check
reap_target
echo "ok: the target ran on through the refused dumps"

# ---- 6. restore --lazy-pages with no daemon: a few seconds' wait, then the socket and the daemon to
#      start; a daemon with --page-server and no lazy dump to fetch from.
start_program tp_memory
checkpoint "$WORK/lazy"
reap_target
expect_error 30 "restore failed: connect lazy-pages daemon socket lazy-pages.socket in the work dir: No such file or directory (ENOENT)" \
  "start \`crshim lazy-pages -D DIR\` (same images and work dir) before restoring with --lazy-pages" \
  "$CRSHIM" restore -D "$WORK/lazy" -o restore-lazy.log -d --lazy-pages
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "the failed lazy restore left pid $TARGET_PID"; fi
expect_error 30 "restore failed: restore --join-ns user: joining a user namespace needs a tree with its own pid namespace" \
  "tasks in the joined namespace cannot choose their pids in a pid namespace it does not own" \
  "$CRSHIM" restore -D "$WORK/lazy" -o restore-userns.log -d --join-ns user:/proc/self/ns/user
if kill -0 "$TARGET_PID" 2>/dev/null; then fail "the refused restore left pid $TARGET_PID"; fi
# The post-copy daemon: no address of the lazy dump, and a lazy dump that is not there.
expect_error 10 "lazy-pages failed: connect lazy dump: no address or port" \
  "give --address and --port of \`crshim dump --lazy-pages\` on the source" \
  "$CRSHIM" lazy-pages -D "$WORK/lazy" -o lazy-nowhere.log --page-server --port 1
port=$(free_port)
expect_error 10 "lazy-pages failed: connect lazy dump 127.0.0.1:$port: Connection refused (ECONNREFUSED)" \
  "start \`crshim dump --lazy-pages --port PORT\` on the source first; it listens once its images are written" \
  "$CRSHIM" lazy-pages -D "$WORK/lazy" -o lazy-refused.log --page-server --address 127.0.0.1 --port "$port"
[[ ! -e "$WORK/lazy/lazy-pages.socket" ]] || fail "a daemon without its lazy dump left lazy-pages.socket"

# ---- 7. --network-lock without its tool. crshim looks for the tools in /usr/sbin, /sbin, /usr/bin
# and /bin, not in $PATH: in a mount namespace of their own, crshim and the target see /dev/null
# (not executable) bound over the tool.
command -v unshare >/dev/null && command -v nsenter >/dev/null || fail "unshare and nsenter (util-linux) are needed"
unshare --mount --propagation private sleep 300 </dev/null >/dev/null 2>&1 &
HOLDER=$!
at_exit 'kill "$HOLDER" 2>/dev/null'
for _ in $(seq 100); do [[ $(readlink "/proc/$HOLDER/ns/mnt") != $(readlink /proc/self/ns/mnt) ]] && break; sleep 0.05; done
[[ $(readlink "/proc/$HOLDER/ns/mnt") != $(readlink /proc/self/ns/mnt) ]] || fail "no mount namespace for the holder"
# lock_case METHOD TOOL HINT: the dump of a tree in a network namespace of its own, with TOOL hidden.
lock_case() {
  local method=$1 tool=$2 hint=$3
  nsenter -t "$HOLDER" -m mount --bind /dev/null "/usr/sbin/$tool" || fail "cannot hide $tool"
  READY=$WORK/lock-$method.ready RESULT=$WORK/lock-$method.result
  setsid nsenter -t "$HOLDER" -m unshare --net "$PROGRAMS/tp_memory" "$READY" "$RESULT" </dev/null >>"$WORK/lock.out" 2>&1 &
  TARGET_PID=$!
  wait_for_file "$READY"
  expect_error 30 "network lock $tool: the tool is needed for --network-lock $method" "$hint" \
    nsenter -t "$HOLDER" -m "$CRSHIM" dump -t "$TARGET_PID" -D "$WORK/lock-$method" -o dump.log -v4 --network-lock "$method"
  [[ ! -e $WORK/lock-$method/inventory.img ]] || fail "the refused dump left inventory.img"
  finish_and_check
  reap_target
  nsenter -t "$HOLDER" -m umount "/usr/sbin/$tool"
}
lock_case nftables nft "install nftables, or use --network-lock iptables|skip"
lock_case iptables iptables-restore "install iptables, or use --network-lock nftables|skip"
echo "ok: the targets ran on through the refused network locks"

# ---- 8. Bundle options that contradict each other or the bundle's config.json.
B=$WORK/bundle
mkdir -p "$B/rootfs" "$WORK/bundle-tty/rootfs"
echo '{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"terminal": false}}' >"$B/config.json"
echo '{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"terminal": true}}' >"$WORK/bundle-tty/config.json"
I=$WORK/bundle-img
expect_error 10 "checkpoint failed: options: --import is only for restore" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I" --import "$WORK/a.tar" 1
expect_error 10 "restore failed: options: --export is only for checkpoint" "" \
  "$CRSHIM" restore --bundle "$B" --image-path "$I" --export "$WORK/a.tar"
expect_error 10 "restore failed: options: --import and --image-path exclude each other: the images come from the archive" "" \
  "$CRSHIM" restore --bundle "$B" --image-path "$I" --import "$WORK/a.tar"
expect_error 10 "checkpoint failed: options: --bundle needs --image-path DIR" "" "$CRSHIM" checkpoint --bundle "$B" 1
expect_error 10 "restore failed: options: --root conflicts with --bundle: the root comes from config.json root.path" "" \
  "$CRSHIM" restore --bundle "$B" --image-path "$I" --root /
expect_error 10 "checkpoint failed: options: -t/--tree conflicts with --bundle: give the container's pid as the argument" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I" -t 1
expect_error 10 "checkpoint failed: options: checkpoint --bundle needs the container's init pid: CONTAINER-PID or --pid-file FILE" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I"
expect_error 10 "checkpoint failed: options CONTAINER-PID: 'abc' is not a pid" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I" abc
echo 1 >"$WORK/ctr.pid"
expect_error 10 "checkpoint failed: options: give the container's pid either as the argument or with --pid-file, not both" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I" --pid-file "$WORK/ctr.pid" 1
expect_error 10 "checkpoint failed: open $WORK/none.pid: --pid-file: No such file or directory (ENOENT)" "" \
  "$CRSHIM" checkpoint --bundle "$B" --image-path "$I" --pid-file "$WORK/none.pid"
mkdir -p "$WORK/no-config"
expect_error 10 "restore failed: open $WORK/no-config/config.json: No such file or directory (ENOENT)" \
  "--bundle must name an OCI bundle: a directory holding config.json" \
  "$CRSHIM" restore --bundle "$WORK/no-config" --image-path "$I"
expect_error 10 "restore failed: options: --console-socket is only for containers with process.terminal set" "" \
  "$CRSHIM" restore --bundle "$B" --image-path "$I" --console-socket "$WORK/console.sock"
expect_error 10 "restore failed: restore process.terminal: the container has a terminal: its new master needs --console-socket SOCK" "" \
  "$CRSHIM" restore --bundle "$WORK/bundle-tty" --image-path "$I"

# ---- 9. service: a socket path too long for AF_UNIX, a group that does not exist.
LONG=$WORK/$(printf 's%.0s' $(seq 120))
expect_error 10 "Error: service: bind $LONG: socket path is empty or too long" "give --address a path of at most 107 bytes" \
  "$CRSHIM" service --address "$LONG"
expect_error 10 "Error: service: service --allow-group no-such-group-$$: no such group" "name an existing group, or its number" \
  "$CRSHIM" service --address "$WORK/svc.sock" --allow-group "no-such-group-$$"
