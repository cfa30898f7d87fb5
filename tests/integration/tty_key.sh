#!/bin/bash
# tty[RDEV:DEV] keys: a session leader whose stdio and controlling terminal is a pty this test owns
# is dumped with --external tty[RDEV:DEV] (an EXT_TTY entry, no pty recreated) and restored with
# --inherit-fd onto a different pty the test owns: it answers a line typed into the new pty there,
# with its terminal settings (no echo, window size) applied to it. An --inherit-fd with the key of
# a pty dumped in full (--orphan-pts-master) serves it the same way.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || fail "python3 is needed"
command -v crit >/dev/null || fail "crit is needed (package criu)"

rc=0
python3 - "$WORK" <<'EOF' || rc=$?
import fcntl, json, os, select, signal, subprocess, sys, termios, time

crshim, progs, work = os.environ["CRSHIM"], os.environ["PROGRAMS"], sys.argv[1]

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

def read_until(fd, want, timeout=10):
    buf, end = b"", time.time() + timeout
    while want not in buf:
        left = end - time.time()
        if left <= 0:
            fail(f"timed out waiting for {want!r} on the terminal, got {buf!r}")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                fail(f"terminal closed, got {buf!r}")
            buf += chunk
    return buf

def quiet(fd, secs=0.3):
    return not select.select([fd], [], [], secs)[0]

def key_of(fd):
    st = os.fstat(fd)
    return "tty[%x:%x]" % (st.st_rdev, st.st_dev)

def run(args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)

def wait_for(path, secs=20):
    end = time.time() + secs
    while not os.path.exists(path):
        if time.time() > end:
            fail("timed out waiting for " + path)
        time.sleep(0.05)

def start(name):
    master, slave = os.openpty()
    ready, result = f"{work}/{name}.ready", f"{work}/{name}.result"
    p = subprocess.Popen([f"{progs}/tp_tty_key", ready, result], stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    with open(f"{work}/target.pid", "w") as f:
        f.write(str(p.pid))
    wait_for(ready)
    os.write(master, b"before\n")
    out = read_until(master, b"echo:before\r\n")
    if out != b"echo:before\r\n":
        fail(f"unexpected terminal output before the dump: {out!r}")
    return master, slave, p, result

def restore_onto(img, key, slave, what):
    """Restores the images with the terminal `key` served by the pty slave fd `slave`."""
    r = run([crshim, "restore", "-D", img, "-o", "restore.log", "-v4", "-d", "--inherit-fd", f"fd[{slave}]:{key}"],
            pass_fds=(slave,))
    if r.returncode:
        fail(what + " failed: " + r.stderr)


def check_restored(pid, old_master, new_master, result):
    os.write(new_master, b"after\n")
    out = read_until(new_master, b"echo:after\r\n")
    # The dumped settings (echo off) are on the new pty: the typed line is not echoed back.
    if out != b"echo:after\r\n":
        fail(f"unexpected output on the new pty: {out!r}")
    if not quiet(old_master):
        fail(f"the old pty got output: {os.read(old_master, 4096)!r}")
    os.kill(pid, signal.SIGTERM)
    wait_for(result, 30)
    verdict = open(result).read().strip()
    if verdict != "PASS":
        fail(verdict)

def decode(path):
    r = run(["crit", "decode", "-i", path])
    if r.returncode:
        fail(f"crit decode {path}: {r.stderr}")
    return json.loads(r.stdout)["entries"]

# 1. --external tty[RDEV:DEV] at dump, --inherit-fd at restore.
m1, s1, p, result = start("ext")
key, img = key_of(s1), f"{work}/ext"
os.mkdir(img)
r = run([crshim, "dump", "-t", p.pid, "-D", img, "-o", "dump.log", "-v4"])
if r.returncode == 0 or "--external " + key not in r.stderr:
    fail(f"a pty slave without its master was dumped, or the error does not name its key {key}: {r.stderr}")
r = run([crshim, "dump", "-t", p.pid, "-D", img, "-o", "dump.log", "-v4", "--external", key])
if r.returncode:
    fail("dump --external failed: " + r.stderr)
p.wait()
infos = decode(f"{img}/tty-info.img")
if len(infos) != 1 or infos[0]["type"] != "EXT_TTY" or "pty" in infos[0] or infos[0]["sid"] != p.pid:
    fail(f"tty-info.img: {infos}")
st = os.fstat(s1)
if int(str(infos[0]["rdev"]), 0) != st.st_rdev or int(str(infos[0]["dev"]), 0) != st.st_dev:
    fail(f"tty-info.img rdev/dev {infos[0]['rdev']}/{infos[0]['dev']}, the pty is {st.st_rdev:#x}/{st.st_dev:#x}")
ttys = [e for e in decode(f"{img}/files.img") if e["type"] == "TTY"]
if not ttys or any("regf_id" in e["tty"] for e in ttys):
    fail(f"files.img TTY entries: {ttys}")
m2, s2 = os.openpty()
r = run([crshim, "restore", "-D", img, "-o", "restore.log", "-v4", "-d"])
if r.returncode == 0 or key not in r.stderr or "--inherit-fd" not in r.stderr:
    fail("restore without the terminal: " + r.stderr)
restore_onto(img, key, s2, "restore --inherit-fd")
check_restored(p.pid, m1, m2, result)
print(f"ok: {key} dumped as EXT_TTY, restored onto /dev/pts/{os.minor(os.fstat(s2).st_rdev)}, talked to it")

# 2. A pty dumped in full (its master outside: --orphan-pts-master) is taken from --inherit-fd by key.
m1, s1, p, result = start("orphan")
key, img = key_of(s1), f"{work}/orphan"
os.mkdir(img)
r = run([crshim, "dump", "-t", p.pid, "-D", img, "-o", "dump.log", "-v4", "--orphan-pts-master"])
if r.returncode:
    fail("dump --orphan-pts-master failed: " + r.stderr)
p.wait()
if [e["type"] for e in decode(f"{img}/tty-info.img")] != ["PTY"]:
    fail("the pty was not dumped as one")
m2, s2 = os.openpty()
restore_onto(img, key, s2, "restore of a dumped pty with --inherit-fd")
check_restored(p.pid, m1, m2, result)
print(f"ok: dumped pty {key} served by --inherit-fd")
EOF
[[ -f "$WORK/target.pid" ]] && TARGET_PID=$(cat "$WORK/target.pid")
((rc == 0)) || fail "see above"
decode_all "$WORK/ext"
