"""A TCP echo server on 127.0.0.1 for the connection tests: argv[1] gets its port (written atomically),
argv[2] (optional) collects the errors its connections end with."""
import os
import socket
import sys
import threading

port_file = sys.argv[1]
errors = sys.argv[2] if len(sys.argv) > 2 else None
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(8)
with open(port_file + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)


def echo(c):
    while True:
        try:
            d = c.recv(4096)
        except OSError as e:
            if errors:
                with open(errors, "a") as f:
                    f.write("error %s\n" % e)
            return
        if not d:
            return
        c.sendall(d)


while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
