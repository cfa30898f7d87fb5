#!/usr/bin/python3
"""req_inherit_fd.py CRSHIM IMAGES KEY=PATH...: a RESTORE over swrk naming inherit_fd keys whose fds
it does not pass (fd numbers that are not open in the engine). crshim asks for each one with a NOTIFY
"req-inherit-fd" carrying the key (criu_notify field 1001, crshim's extension); this client answers
with PATH opened write-only in append mode, attached as SCM_RIGHTS. Uses crshim's own rpc.proto
(compiled with protoc into a temporary directory). Prints key=value lines for the shell."""

import os
import socket
import subprocess
import sys
import tempfile

SRC = os.environ["SRC"]


def load_schema():
    out = tempfile.mkdtemp(prefix="crshim-rpc-")
    subprocess.run(["protoc", "-I", os.path.join(SRC, "proto"), "--python_out", out,
                    os.path.join(SRC, "proto", "rpc.proto")], check=True)
    sys.path.insert(0, out)
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
    import rpc_pb2  # noqa: E402
    return rpc_pb2


def main():
    rpc = load_schema()
    crshim, images = sys.argv[1], sys.argv[2]
    wanted = dict(arg.split("=", 1) for arg in sys.argv[3:])
    sk, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([crshim, "swrk", str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    images_fd = os.open(images, os.O_RDONLY | os.O_DIRECTORY)
    req = rpc.criu_req()
    req.type = rpc.RESTORE
    req.opts.images_dir_fd = images_fd
    req.opts.log_file = "restore.log"
    req.opts.log_level = 4
    req.opts.notify_scripts = True
    for i, key in enumerate(wanted):
        entry = req.opts.inherit_fd.add()
        entry.key = key
        entry.fd = 900 + i  # never open in the engine: it has to ask
    sk.send(req.SerializeToString())
    asked = []
    while True:
        resp = rpc.criu_resp()
        resp.ParseFromString(sk.recv(65536))
        if resp.type != rpc.NOTIFY:
            break
        ack = rpc.criu_req()
        ack.type = rpc.NOTIFY
        ack.notify_success = True
        if resp.notify.script == "req-inherit-fd":
            key = resp.notify.crshim_inherit_fd_key
            asked.append(key)
            fd = os.open(wanted[key], os.O_WRONLY | os.O_APPEND)
            sk.sendmsg([ack.SerializeToString()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
            os.close(fd)
        else:
            sk.send(ack.SerializeToString())
    print("type=%s" % rpc.criu_req_type.Name(resp.type))
    print("success=%d" % int(resp.success))
    if resp.HasField("cr_errmsg"):
        print("cr_errmsg=" + resp.cr_errmsg.replace("\n", " "))
    print("restore_pid=%d" % resp.restore.pid)
    print("asked=" + ",".join(asked))
    sk.close()
    print("exit=%d" % proc.wait())


if __name__ == "__main__":
    main()
