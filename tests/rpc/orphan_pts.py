#!/usr/bin/python3
"""orphan-pts-master end to end, as a runtime with a terminal container does it.

Creates a pty, starts PROGRAM in a new session with the slave as its controlling terminal and stdio
while keeping the master, checks that a dump without --orphan-pts-master is refused, dumps with it
(CLI), then restores over RPC (`crshim swrk`, orphan_pts_master=true, notify_scripts=true): the
orphan-pts-master NOTIFY must carry the new master in SCM_RIGHTS; a line written into it must come
back from the restored program. Prints key=value lines for the shell.
"""

import argparse
import array
import fcntl
import os
import select
import socket
import subprocess
import sys
import termios
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")
from pycriu import rpc_pb2 as rpc  # noqa: E402


def wait_file(path, limit=20):
    end = time.time() + limit
    while not os.path.exists(path):
        if time.time() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.05)


def recv_with_fds(sk):
    fds = array.array("i")
    data, anc, _, _ = sk.recvmsg(1 << 16, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--crshim", required=True)
    p.add_argument("--program", required=True)
    p.add_argument("--work", required=True)
    args = p.parse_args()
    out = []
    ready, result = os.path.join(args.work, "orphan.ready"), os.path.join(args.work, "orphan.result")

    master, slave = os.openpty()

    def as_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    target = subprocess.Popen([args.program, ready, result], stdin=slave, stdout=slave, stderr=slave,
                              preexec_fn=as_terminal, close_fds=True)
    os.close(slave)
    wait_file(ready)
    out.append("target=%d" % target.pid)

    # Without the option: refused, naming the fd and the option, and the target runs on.
    refused_dir = os.path.join(args.work, "img-refused")
    os.makedirs(refused_dir, exist_ok=True)
    r = subprocess.run([args.crshim, "dump", "-t", str(target.pid), "-D", refused_dir, "-o", "dump.log"],
                       capture_output=True, text=True)
    out.append("refused_rc=%d" % r.returncode)
    out.append("refused_msg=" + r.stderr.strip().replace("\n", " "))
    out.append("alive_after_refusal=%d" % int(target.poll() is None))

    img = os.path.join(args.work, "img")
    os.makedirs(img, exist_ok=True)
    r = subprocess.run([args.crshim, "dump", "-t", str(target.pid), "-D", img, "-o", "dump.log", "-v4",
                        "--orphan-pts-master"], capture_output=True, text=True)
    out.append("dump_rc=%d" % r.returncode)
    if r.returncode != 0:
        out.append("dump_err=" + r.stderr.strip().replace("\n", " "))
        print("\n".join(out))
        return
    target.wait()
    os.close(master)  # the old terminal is gone for good

    sk, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    engine = subprocess.Popen([args.crshim, "swrk", str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    images_fd = os.open(img, os.O_RDONLY | os.O_DIRECTORY)
    req = rpc.criu_req()
    req.type = rpc.RESTORE
    req.opts.images_dir_fd = images_fd
    req.opts.log_file = "restore.log"
    req.opts.log_level = 4
    req.opts.notify_scripts = True
    req.opts.orphan_pts_master = True
    sk.send(req.SerializeToString())
    new_master = None
    notified = []
    while True:
        data, fds = recv_with_fds(sk)
        if not data:
            out.append("closed=1")
            break
        resp = rpc.criu_resp()
        resp.ParseFromString(data)
        if resp.type != rpc.NOTIFY:
            out.append("restore_success=%d" % int(resp.success))
            if resp.HasField("cr_errmsg"):
                out.append("restore_err=" + resp.cr_errmsg.replace("\n", " "))
            if resp.HasField("restore"):
                out.append("restore_pid=%d" % resp.restore.pid)
            break
        notified.append(resp.notify.script)
        if fds:
            out.append("fds.%s=%d" % (resp.notify.script, len(fds)))
        if resp.notify.script == "orphan-pts-master" and fds:
            new_master = fds[0]
            for extra in fds[1:]:
                os.close(extra)
        ack = rpc.criu_req()
        ack.type = rpc.NOTIFY
        ack.notify_success = True
        sk.send(ack.SerializeToString())
    sk.close()
    out.append("swrk_exit=%d" % engine.wait())
    out.append("notify=" + ",".join(notified))

    if new_master is not None:
        st = os.fstat(new_master)
        out.append("master_is_ptmx=%d" % int(os.major(st.st_rdev) == 5 and os.minor(st.st_rdev) == 2))
        os.write(new_master, b"ping-orphan\n")
        seen = b""
        end = time.time() + 10
        while b"pong ping-orphan" not in seen and time.time() < end:
            ready_fds, _, _ = select.select([new_master], [], [], 0.2)
            if ready_fds:
                try:
                    chunk = os.read(new_master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        out.append("answer=" + seen.decode(errors="replace").replace("\r", "").replace("\n", "|"))
        wait_file(result)
        out.append("result=" + open(result).read().strip())

    # The CLI: the orphan-pts-master action script gets the new master as CRTOOLS_PTS_MASTER_FD.
    os.remove(ready)
    os.remove(result)
    master, slave = os.openpty()
    target = subprocess.Popen([args.program, ready, result], stdin=slave, stdout=slave, stderr=slave,
                              preexec_fn=as_terminal, close_fds=True)
    os.close(slave)
    wait_file(ready)
    img = os.path.join(args.work, "img-cli")
    os.makedirs(img, exist_ok=True)
    r = subprocess.run([args.crshim, "dump", "-t", str(target.pid), "-D", img, "-o", "dump.log", "--orphan-pts-master"])
    target.wait()
    os.close(master)
    script = os.path.join(args.work, "orphan-script.sh")
    with open(script, "w") as f:
        f.write('[ "$CRTOOLS_SCRIPT_ACTION" = orphan-pts-master ] || exit 0\n'
                '/usr/bin/python3 -c "import os; os.write(int(os.environ[\'CRTOOLS_PTS_MASTER_FD\']), b\'ping-cli\\n\')"\n'
                # Holds the master on after crshim exits, so the restored session is not hung up at once.
                'sleep 5 >/dev/null 2>&1 &\n')
    r = subprocess.run([args.crshim, "restore", "-D", img, "-o", "restore.log", "-v4", "-d", "--orphan-pts-master",
                        "--action-script", "sh " + script], capture_output=True, text=True)
    out.append("cli_restore_rc=%d" % r.returncode)
    if r.returncode == 0:
        wait_file(result)
        out.append("cli_result=" + open(result).read().strip())
    else:
        out.append("cli_restore_err=" + r.stderr.strip().replace("\n", " "))
    print("\n".join(out))


if __name__ == "__main__":
    main()
