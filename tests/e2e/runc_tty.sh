#!/bin/bash
# runc drives crshim: a terminal container (--console-socket) checkpointed and restored; the restore
# hands the new pty master to the console socket as "orphan-pts-master" and the ticker goes on there.
# shellcheck source=tests/e2e/lib_runc.sh
source "$SRC/tests/e2e/lib_runc.sh"

make_bundle 'c["process"]["terminal"] = True'

python3 "$SRC/tests/e2e/console_receiver.py" "$WORK/console.sock" "$WORK/con" &
E2E_PIDS+=($!)
wait_for_file "$WORK/console.sock"

run_container "$WORK/run.out" --console-socket "$WORK/console.sock"
wait_for_file "$WORK/con1.name"
wait_lines "$WORK/con1.out" 3
echo "ok: terminal container runs, output on the console master"

checkpoint_gone "$WORK/img" "$WORK/w1"
sleep 0.3
echo "ok: runc checkpoint of the terminal container"

restore_container "$WORK/img" "$WORK/w2" "$WORK/restore.out" --console-socket "$WORK/console.sock"
wait_for_file "$WORK/con2.name"
[[ "$(cat "$WORK/con2.name")" == orphan-pts-master ]] || fail "console socket got '$(cat "$WORK/con2.name")'"
check_continues "$WORK/con1.out" "$WORK/con2.out"
got=$(notifications "$WORK/w2/restore.log")
[[ "$got" == "pre-restore setup-namespaces post-setup-namespaces orphan-pts-master post-restore network-unlock pre-resume post-resume" ]] ||
  fail "restore notified: $got"
tty_of_init=$(readlink "/proc/$(container_pid)/fd/1")
[[ "$tty_of_init" == /dev/pts/* ]] || fail "restored init's stdout is $tty_of_init, not a pty"
echo "ok: runc restore --console-socket, ticker on the new master ($tty_of_init)"
# /dev/console was a bind of the old console slave; it is now the restored one.
[[ "$("${RUNC[@]}" exec "$ID" sh -c '[ -c /dev/console ] && echo console')" == console ]] ||
  fail "/dev/console is not a character device in the restored container"
echo "ok: /dev/console restored as the console pty"

# The restored terminal container checkpoints and restores again (its console is the restored pty now).
checkpoint_gone "$WORK/img2" "$WORK/w3"
sleep 0.3
restore_container "$WORK/img2" "$WORK/w4" "$WORK/restore2.out" --console-socket "$WORK/console.sock"
wait_for_file "$WORK/con3.name"
check_continues "$WORK/con2.out" "$WORK/con3.out"
echo "ok: the restored terminal container checkpoints and restores again"
