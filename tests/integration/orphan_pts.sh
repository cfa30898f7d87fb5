#!/bin/bash
# --orphan-pts-master: a session whose terminal's master is outside the tree (a runtime's console)
# is refused without the option, dumped with it (CLI), and restored over RPC with a new master that
# reaches the client in the orphan-pts-master NOTIFY (SCM_RIGHTS) and talks to the restored program.
source "$(dirname "$0")/lib.sh"
source "$SRC/tests/rpc/client.sh"

/usr/bin/python3 "$SRC/tests/rpc/orphan_pts.py" --crshim "$CRSHIM" --program "$PROGRAMS/tp_pty_orphan" \
  --work "$WORK" >"$WORK/orphan.out"
cat "$WORK/orphan.out"
[[ "$(field refused_rc "$WORK/orphan.out")" != 0 ]] || fail "a slave without its master was dumped without --orphan-pts-master"
expect_in refused_msg "--orphan-pts-master" "$WORK/orphan.out"
expect_in refused_msg "fd 0 of pid" "$WORK/orphan.out"
expect alive_after_refusal 1 "$WORK/orphan.out"
echo "ok: refused without --orphan-pts-master, target still running"
expect dump_rc 0 "$WORK/orphan.out"
decode_all "$WORK/img"
crit decode -i "$WORK/img/tty-info.img" | grep -q '"type": "PTY"' || fail "no PTY tty_info in the image"
expect restore_success 1 "$WORK/orphan.out"
expect swrk_exit 0 "$WORK/orphan.out"
expect notify "pre-restore,setup-namespaces,post-setup-namespaces,orphan-pts-master,post-restore,pre-resume,post-resume" "$WORK/orphan.out"
expect fds.orphan-pts-master 1 "$WORK/orphan.out"
expect master_is_ptmx 1 "$WORK/orphan.out"
expect_in answer "pong ping-orphan" "$WORK/orphan.out"
expect result PASS "$WORK/orphan.out"
echo "ok: restored over RPC; the master from the orphan-pts-master NOTIFY drives the restored program"
expect cli_restore_rc 0 "$WORK/orphan.out"
expect cli_result PASS "$WORK/orphan.out"
echo "ok: CLI restore hands the new master to the orphan-pts-master action script (CRTOOLS_PTS_MASTER_FD)"
