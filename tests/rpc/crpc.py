#!/usr/bin/python3
"""Minimal CRIU RPC client for the integration tests, built on pycriu's rpc_pb2 (Debian package criu).

Spawns `CRSHIM swrk FD` on a socketpair (or connects to a service socket), sends one request (or a
keep_open series), answers every NOTIFY and prints the outcome as key=value lines for the shell:

  type=DUMP success=1 cr_errno=... cr_errmsg=... notify=pre-dump,post-dump
  notify_pid.setup-namespaces=123 restore_pid=123 dump_restored=0 exit=0

Run with Debian's python3 (/usr/bin/python3), which has google.protobuf.
"""

import argparse
import os
import socket
import subprocess
import sys

sys.path.insert(0, "/usr/lib/python3/dist-packages")
import pycriu  # noqa: E402
from pycriu import rpc_pb2 as rpc  # noqa: E402


def set_opt(opts, assignment):
    """--opt NAME=VALUE: sets a scalar criu_opts field, typed by the schema (ps.port=...: a nested one)."""
    name, _, value = assignment.partition("=")
    if "." in name:
        outer, _, name = name.partition(".")
        opts = getattr(opts, outer)
    field = opts.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        sys.exit("unknown criu_opts field %r" % name)
    if field.type == field.TYPE_BOOL:
        setattr(opts, name, value.lower() in ("1", "true", "yes"))
    elif field.type == field.TYPE_STRING:
        setattr(opts, name, value)
    else:
        setattr(opts, name, int(value, 0))


def build_request(args, images_fd):
    req = rpc.criu_req()
    req.type = rpc.criu_req_type.Value(args.type)
    if args.keep_open:
        req.keep_open = True
    if args.type == "FEATURE_CHECK":
        for f in args.feature:
            setattr(req.features, f, True)
    if args.type in ("DUMP", "RESTORE") or args.opt or args.inherit_fd or args.veth or args.external:
        if images_fd is not None:
            req.opts.images_dir_fd = images_fd
        elif args.images_path:
            req.opts.images_dir_fd = -1
            req.opts.images_dir = args.images_path
        if args.pid is not None:
            req.opts.pid = args.pid
        if args.log_file:
            req.opts.log_file = args.log_file
        req.opts.log_level = 4
        if args.notify:
            req.opts.notify_scripts = True
        for a in args.opt:
            set_opt(req.opts, a)
        for spec in args.veth:
            v = req.opts.veths.add()
            v.if_in, _, v.if_out = spec.partition("=")
        req.opts.external.extend(args.external)
        for spec in args.inherit_fd:
            key, _, fd = spec.rpartition(":")
            i = req.opts.inherit_fd.add()
            i.key = key
            i.fd = int(fd)
    return req


def recv(sk):
    size = len(sk.recv(1, socket.MSG_PEEK | socket.MSG_TRUNC))
    if size == 0:
        return None
    data = sk.recv(size)
    resp = rpc.criu_resp()
    resp.ParseFromString(data)
    return resp


def converse(sk, req, args, out):
    """Sends req, answers NOTIFYs (NACKing --nack), returns the final answer."""
    sk.send(req.SerializeToString())
    while True:
        resp = recv(sk)
        if resp is None:
            out.append("closed=1")
            return None
        if resp.type != rpc.NOTIFY:
            return resp
        script = resp.notify.script
        out.append("notify+=" + script)
        if resp.notify.HasField("pid"):
            out.append("notify_pid.%s=%d" % (script, resp.notify.pid))
        if script == args.hang_up_at:
            out.append("hung_up=1")
            sk.shutdown(socket.SHUT_RDWR)  # the client goes away without answering
            return None
        ack = rpc.criu_req()
        ack.type = rpc.NOTIFY
        ack.notify_success = script not in args.nack
        sk.send(ack.SerializeToString())


def describe(resp, out):
    out.append("type=" + rpc.criu_req_type.Name(resp.type))
    out.append("success=%d" % int(resp.success))
    if resp.HasField("cr_errno"):
        out.append("cr_errno=%d" % resp.cr_errno)
    if resp.HasField("cr_errmsg"):
        out.append("cr_errmsg=" + resp.cr_errmsg.replace("\n", " "))
    if resp.HasField("version"):
        v = resp.version
        out.append("version_major=%d" % v.major_number)
        out.append("version_minor=%d" % v.minor_number)
        out.append("version_has_gitid=%d" % int(v.HasField("gitid")))
        out.append("version_has_sublevel=%d" % int(v.HasField("sublevel")))
    if resp.HasField("features"):
        for f in ("mem_track", "lazy_pages", "pidfd_store"):
            out.append("features.%s=%s" % (f, int(getattr(resp.features, f)) if resp.features.HasField(f) else "absent"))
    if resp.HasField("dump"):
        out.append("dump_restored=%d" % int(resp.dump.restored))
    if resp.HasField("restore"):
        out.append("restore_pid=%d" % resp.restore.pid)
    if resp.HasField("ps"):
        out.append("ps_pid=%d" % resp.ps.pid)
        out.append("ps_port=%d" % resp.ps.port)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--crshim", required=True)
    p.add_argument("--service", help="connect to this service socket instead of spawning swrk")
    p.add_argument("--pycriu", action="store_true", help="send through pycriu.criu (no NOTIFY support)")
    p.add_argument("--close-stdio", action="store_true", help="exec swrk with fds 0-2 closed")
    p.add_argument("--images", help="images dir, passed as images_dir_fd")
    p.add_argument("--images-path", help="images dir, passed as the images_dir string")
    p.add_argument("--pid", type=int)
    p.add_argument("--log-file")
    p.add_argument("--notify", action="store_true", help="set notify_scripts and answer NOTIFYs")
    p.add_argument("--nack", action="append", default=[], help="answer this hook with notify_success=false")
    p.add_argument("--hang-up-at", help="close the connection instead of answering this hook's NOTIFY")
    p.add_argument("--opt", action="append", default=[], help="criu_opts NAME=VALUE")
    p.add_argument("--veth", action="append", default=[], help="veths entry IN=OUT[@BRIDGE]")
    p.add_argument("--external", action="append", default=[], help="criu_opts external entry")
    p.add_argument("--inherit-fd", action="append", default=[], help="KEY:FD (fd in the engine's table)")
    p.add_argument("--feature", action="append", default=[], help="FEATURE_CHECK: feature to probe")
    p.add_argument("--keep-open", action="store_true")
    p.add_argument("--then", action="append", default=[], help="another request type on the same socket")
    p.add_argument("type", help="request type name: VERSION, DUMP, RESTORE, FEATURE_CHECK, ...")
    args = p.parse_args()

    images_fd = None
    if args.images:
        images_fd = os.open(args.images, os.O_RDONLY | os.O_DIRECTORY)
    req = build_request(args, images_fd)
    out = []

    if args.pycriu:
        c = pycriu.criu()
        c.use_binary(args.crshim)
        resp = c._send_req_and_recv_resp(req)  # dump()/restore() raise without cr_errmsg
        describe(resp, out)
        print("\n".join(out))
        return

    proc = None
    if args.service:
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sk.connect(args.service)
    else:
        sk, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Like go-criu: the engine's end keeps its number across exec; pass any number.
        fd = theirs.fileno()
        pre = None
        if args.close_stdio:
            def pre():
                for n in (0, 1, 2):
                    os.close(n)
        proc = subprocess.Popen([args.crshim, "swrk", str(fd)], pass_fds=[fd] + [
            int(s.rpartition(":")[2]) for s in args.inherit_fd], preexec_fn=pre)
        theirs.close()

    resp = converse(sk, req, args, out)
    if resp is not None:
        describe(resp, out)
    for i, t in enumerate(args.then):
        nxt = rpc.criu_req()
        nxt.type = rpc.criu_req_type.Value(t)
        if args.keep_open and i + 1 < len(args.then):
            nxt.keep_open = True
        if t == "FEATURE_CHECK":
            nxt.features.lazy_pages = True
        out.append("---")
        resp = converse(sk, nxt, args, out)
        if resp is not None:
            describe(resp, out)
    sk.close()
    if proc is not None:
        out.append("exit=%d" % proc.wait())
    notify = [line.split("=", 1)[1] for line in out if line.startswith("notify+=")]
    out = [line for line in out if not line.startswith("notify+=")]
    out.append("notify=" + ",".join(notify))
    print("\n".join(out))


if __name__ == "__main__":
    main()
