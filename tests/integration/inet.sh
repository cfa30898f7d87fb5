#!/bin/bash
# Inet sockets: TCP listeners (IPv4 and IPv6), bound and connected UDP sockets and an unbound TCP
# socket come back with their addresses and options; listeners accept, UDP sockets exchange datagrams.
source "$(dirname "$0")/lib.sh"
cycle tp_inet
crit decode -i "$WORK/img1/files.img" --pretty >"$WORK/files.json" || fail "crit files.img"
python3 - "$WORK/files.json" <<'PY' || fail "files.img inet entries"
import json, sys
socks = [e["isk"] for e in json.load(open(sys.argv[1]))["entries"] if e["type"] == "INETSK"]
assert len(socks) in (4, 5), socks
listeners = [s for s in socks if s["state"] == "LISTEN" and s["family"] == "INET"]
assert len(listeners) == 1, socks
l = listeners[0]
assert l["backlog"] == 7 and l["src_addr"] == ["127.0.0.1"], l
assert l["opts"]["reuseaddr"] and l["opts"]["so_keepalive"], l
assert l["src_port"] != 0 and l["proto"] == "TCP" and l["type"] == "STREAM", l
udp = [s for s in socks if s["proto"] == "UDP"]
assert len(udp) == 2 and sorted(s["state"] for s in udp) == ["CLOSE", "ESTABLISHED"], udp
conn = [s for s in udp if s["state"] == "ESTABLISHED"][0]
bound = [s for s in udp if s["state"] == "CLOSE"][0]
assert conn["dst_port"] == bound["src_port"] and conn["dst_addr"] == ["127.0.0.1"], (conn, bound)
unbound = [s for s in socks if s["proto"] == "TCP" and s["state"] == "CLOSE"]
assert len(unbound) == 1 and unbound[0]["src_port"] == 0 and int(unbound[0]["flags"], 16) & 0o4000, unbound
v6 = [s for s in socks if s["family"] == "INET6"]
for s in v6:
    assert s["state"] == "LISTEN" and s["v6only"] and s["src_addr"] == ["::1"] and s["backlog"] == 3, s
print("inet entries ok:", len(socks), "sockets,", len(v6), "ipv6")
PY
echo "ok: files.img inet entries"
