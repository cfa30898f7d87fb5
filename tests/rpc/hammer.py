#!/usr/bin/python3
"""hammer.py SOCKET COUNT: COUNT connections in a row to a crshim service, one VERSION request each;
fails on the first wrong or missing answer and prints `answers=COUNT` when all were right."""

import socket
import sys

sys.path.insert(0, "/usr/lib/python3/dist-packages")
from pycriu import rpc_pb2 as rpc  # noqa: E402


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    req = rpc.criu_req()
    req.type = rpc.VERSION
    wire = req.SerializeToString()
    for i in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sk:
            sk.settimeout(10)
            sk.connect(path)
            sk.send(wire)
            resp = rpc.criu_resp()
            resp.ParseFromString(sk.recv(65536))
            if resp.type != rpc.VERSION or not resp.success or resp.version.major_number < 3:
                sys.exit("answer %d is wrong: %s" % (i, resp))
    print("answers=%d" % count)


if __name__ == "__main__":
    main()
