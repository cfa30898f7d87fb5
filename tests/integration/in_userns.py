#!/usr/bin/env python3
"""in_userns.py "NS..." CMD...: runs CMD as root (0 inside, 100000 outside, 65536 ids) and pid 1 of a new
user namespace and the namespaces named (pid, mnt, uts, ipc, net). As a runtime does: a child unshares,
its parent (outside, with the privilege to map ranges it does not own) writes the maps, the child
becomes root inside and forks CMD in a session of its own."""
import ctypes, os, sys
FLAGS = {"user": 0x10000000, "pid": 0x20000000, "mnt": 0x20000, "uts": 0x4000000, "ipc": 0x8000000, "net": 0x40000000}
flags = FLAGS["user"]
for name in sys.argv[1].split():
    flags |= FLAGS[name]
unshared_r, unshared_w = os.pipe()
mapped_r, mapped_w = os.pipe()
unsharer = os.fork()
if unsharer == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(flags) != 0:
        sys.exit("unshare: errno %d" % ctypes.get_errno())
    os.write(unshared_w, b"u")
    os.read(mapped_r, 1)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    child = os.fork()
    if child == 0:
        os.setsid()
        os.execv(sys.argv[2], sys.argv[2:])
    os.waitpid(child, 0)
    sys.exit(0)
os.read(unshared_r, 1)
for kind in ("uid", "gid"):
    with open("/proc/%d/%s_map" % (unsharer, kind), "w") as f:
        f.write("0 100000 65536\n")
os.write(mapped_w, b"m")
os.waitpid(unsharer, 0)
