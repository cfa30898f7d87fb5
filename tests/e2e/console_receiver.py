#!/usr/bin/python3
"""Console socket for runc --console-socket: copies each received pty master into OUT_PREFIX<N>.

Usage: console_receiver.py SOCKET OUT_PREFIX. Connection N (from 1) is runc handing over a master
(runc run: the container's console; runc restore: "orphan-pts-master"); its name goes to
OUT_PREFIX<N>.name. Runs until killed.
"""
import array
import os
import socket
import sys
import threading


def copy(fd, path):
    with open(path, "ab", buffering=0) as out:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: every slave is closed
                return
            if not data:
                return
            out.write(data)


def main():
    sock_path, prefix = sys.argv[1], sys.argv[2]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(4)
    n = 0
    while True:
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        conn.close()
        if not fds:
            continue
        n += 1
        # Name first, then the copier: the test waits for the name file.
        open(f"{prefix}{n}.out", "ab").close()
        threading.Thread(target=copy, args=(fds[0], f"{prefix}{n}.out"), daemon=True).start()
        with open(f"{prefix}{n}.name.tmp", "wb") as f:
            f.write(msg)
        os.rename(f"{prefix}{n}.name.tmp", f"{prefix}{n}.name")


if __name__ == "__main__":
    main()
