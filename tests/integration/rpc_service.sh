#!/bin/bash
# `crshim service`: a listening socket serving CRIU RPC with one worker per connection; swrk-only
# options are refused; a dump and restore through it work; only root (and --allow-group members) may
# use it; SIGTERM removes the socket.
source "$(dirname "$0")/lib.sh"

source "$SRC/tests/rpc/client.sh"
SOCK=$WORK/svc.sock
PIDFILE=$WORK/svc.pid
RPC_SERVICE=$SOCK
GSOCK=$WORK/group.sock GPIDFILE=$WORK/group.pid
stop_service() {
  local f
  for f in "$PIDFILE" "$GPIDFILE"; do [[ -f "$f" ]] && kill "$(cat "$f")" 2>/dev/null; done
}
at_exit stop_service

"$CRSHIM" service --address "$SOCK" --pidfile "$PIDFILE" -d || fail "service -d failed"
[[ -S "$SOCK" ]] || fail "no socket at $SOCK after service -d returned"
[[ "$(stat -c %a "$SOCK")" == 666 ]] || fail "socket mode is $(stat -c %a "$SOCK"), expected 666"
svc=$(cat "$PIDFILE")
kill -0 "$svc" || fail "service pid $svc from the pidfile is not running"

# 1. two clients in a row, each served by its own worker.
rpc VERSION >"$WORK/v1.out"
rpc VERSION >"$WORK/v2.out"
expect version_major 4 "$WORK/v1.out"
expect success 1 "$WORK/v2.out"
echo "ok: VERSION over the service socket, twice"

# 2. swrk-only options are refused, as CRIU's service does.
start_program tp_memory
orig=$TARGET_PID
mkdir -p "$WORK/img"
rpc --images "$WORK/img" --inherit-fd "pipe:[1]:0" RESTORE >"$WORK/inh.out"
expect success 0 "$WORK/inh.out"
expect cr_errno 56 "$WORK/inh.out"
expect_in cr_errmsg "inherit_fd is only allowed in swrk mode" "$WORK/inh.out"
rpc --images "$WORK/img" --opt rst_sibling=true RESTORE >"$WORK/sib.out"
expect_in cr_errmsg "rst_sibling is only allowed in swrk mode" "$WORK/sib.out"
echo "ok: inherit_fd and rst_sibling refused by the service"

# 3. dump and restore through the service, with notifications.
rpc --images "$WORK/img" --pid "$orig" --log-file dump.log --notify DUMP >"$WORK/dump.out"
expect success 1 "$WORK/dump.out"
expect notify "pre-dump,post-dump" "$WORK/dump.out"
reap_target
rpc --images "$WORK/img" --log-file restore.log --notify RESTORE >"$WORK/restore.out"
expect success 1 "$WORK/restore.out"
expect restore_pid "$orig" "$WORK/restore.out"
expect notify "pre-restore,setup-namespaces,post-setup-namespaces,post-restore,pre-resume,post-resume" "$WORK/restore.out"
finish_and_check
echo "ok: dump and restore through the service"

# 4. Only root may use it, unless --allow-group lets a group in (primary or supplementary).
command -v setpriv >/dev/null || fail "setpriv(1) is needed (package util-linux)"
chmod 0711 "$WORK"  # the unprivileged clients reach the sockets in here
# The checkout may sit in a directory only root can enter (a mktemp -d clone): nobody runs a copy.
install -m 0644 "$SRC/tests/rpc/crpc.py" "$WORK/crpc.py"
as_nobody() {  # as_nobody GROUPS SOCKET REQUEST: a VERSION request from uid/gid 65534 with these groups
  setpriv --reuid 65534 --regid 65534 --groups "$1" "$PY" "$WORK/crpc.py" --crshim "$CRSHIM" --service "$2" "$3"
}
as_nobody 4242 "$SOCK" VERSION >"$WORK/nobody.out"
expect success 0 "$WORK/nobody.out"
expect cr_errno 1 "$WORK/nobody.out"
expect_in cr_errmsg "only root may use the crshim service" "$WORK/nobody.out"
if "$CRSHIM" service --address "$GSOCK" --allow-group no-such-group-here -d 2>"$WORK/grp.err"; then
  fail "a service with an unknown group started"
fi
grep -q "allow-group no-such-group-here.*no such group" "$WORK/grp.err" || fail "unknown group error: $(cat "$WORK/grp.err")"
"$CRSHIM" service --address "$GSOCK" --pidfile "$GPIDFILE" --allow-group 4242 -d || fail "service --allow-group failed"
as_nobody 4242 "$GSOCK" VERSION >"$WORK/member.out"
expect success 1 "$WORK/member.out"
as_nobody 4243 "$GSOCK" VERSION >"$WORK/other.out"
expect success 0 "$WORK/other.out"
expect_in cr_errmsg "only root and members of group 4242" "$WORK/other.out"
kill "$(cat "$GPIDFILE")" && rm -f "$GPIDFILE"
echo "ok: non-root peers refused; --allow-group lets its members in, nobody else"

# 5. SIGTERM stops the service and removes its socket.
kill -TERM "$svc"
for ((i = 0; i < 100; i++)); do kill -0 "$svc" 2>/dev/null || break; sleep 0.05; done
kill -0 "$svc" 2>/dev/null && fail "service $svc survived SIGTERM"
[[ ! -e "$SOCK" ]] || fail "the socket file was left behind"
rm -f "$PIDFILE"
echo "ok: SIGTERM stops the service"
