"""Target of tcp_close.sh: argv READY RESULT ECHO_PORT. Holds a connection to the echo server and a
listener; the ready file holds the listener's port. On SIGTERM (after a restore with the connection
closed) checks that the connection is closed (on its address, or unbound while the remains of the old
connection hold it), that the listener accepts,
and that a new connection to the echo server works; writes PASS or FAIL: why."""
import errno
import os
import signal
import socket
import sys
import time

ready, result, echo_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = socket.create_connection(("127.0.0.1", echo_port))
conn.sendall(b"before")
assert conn.recv(6) == b"before"
local_port = conn.getsockname()[1]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4)


def check():
    try:
        conn.getpeername()
        return "the connection is still connected"
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            return "getpeername: %s" % e
    if conn.getsockname()[1] not in (local_port, 0):
        return "the closed socket is on port %d, neither its own %d nor unbound" % (conn.getsockname()[1], local_port)
    c = socket.create_connection(listener.getsockname())
    a, _ = listener.accept()
    c.sendall(b"in")
    if a.recv(2) != b"in":
        return "the listener's connection carries nothing"
    again = socket.create_connection(("127.0.0.1", echo_port))
    again.sendall(b"after")
    if again.recv(5) != b"after":
        return "no echo on a new connection"
    return "PASS"


def on_term(*_):
    verdict = check()
    with open(result + ".tmp", "w") as f:
        f.write(verdict)
    os.rename(result + ".tmp", result)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
with open(ready + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(ready + ".tmp", ready)
while True:
    time.sleep(1)
