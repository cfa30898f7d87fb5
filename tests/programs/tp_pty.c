/* A pty pair held across a checkpoint: this process keeps master and slave (raw termios with VMIN 7,
 * a 33x101 window, packet mode on the master, the slave exclusive, bytes queued both ways); a child session leader holds only the slave as its
 * controlling terminal, and a grandchild's process group is the terminal's foreground group.
 * After restore every part is checked: termios, window, the queued bytes, both directions, isatty,
 * the controlling tty (/proc/self/stat tty_nr) and tcgetpgrp() in the session. */
#include "tp.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static const char kToSlave[] = "queued for the slave\n";
static const char kToMaster[] = "queued for the master";
static volatile sig_atomic_t go;
static int report_fd = -1;
static pid_t g_leader, g_fg;

/* Fails the test, taking the session (waiting for a signal that will not come) down too. */
static void pty_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void pty_fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_fg > 0) kill(g_fg, SIGKILL);
  if (g_leader > 0) kill(g_leader, SIGKILL);
  tp_fail("%s", msg);
}

static void on_usr1(int sig) {
  (void)sig;
  go = 1;
}

/* A child's failure: a message for the parent, then exit 1. */
static void child_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
  va_end(ap);
  if (n > 0 && write(report_fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0) _exit(2);
  _exit(1);
}

static int encode_tty_nr(dev_t d) {
  unsigned ma = major(d), mi = minor(d);
  return (int)((mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12));
}

static void wait_for_go(void) {
  sigset_t none;
  sigemptyset(&none);
  while (!go) sigsuspend(&none);
}

/* Checks run in the session leader (who == "leader") and the foreground member. */
static void check_session_member(int s, const char* who, pid_t leader, pid_t fg) {
  struct stat st;
  if (!isatty(s)) child_fail("%s: the slave is no tty after restore", who);
  if (fstat(s, &st) < 0) child_fail("%s: fstat slave: %s", who, strerror(errno));
  int nr = tp_tty_nr();
  if (nr != encode_tty_nr(st.st_rdev))
    child_fail("%s: controlling tty_nr %#x is not the slave's %#x", who, nr, encode_tty_nr(st.st_rdev));
  if (getsid(0) != leader) child_fail("%s: session %d, expected %d", who, getsid(0), leader);
  pid_t pg = tcgetpgrp(s);
  if (pg != fg) child_fail("%s: tcgetpgrp %d, expected %d (%s)", who, pg, fg, strerror(errno));
  int t = open("/dev/tty", O_RDWR | O_NOCTTY);
  if (t < 0) child_fail("%s: open /dev/tty: %s", who, strerror(errno));
  close(t);
}

static void read_exact(int fd, char* buf, size_t len, const char* what) {
  size_t got = 0;
  while (got < len) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) pty_fail("%s: only %zu of %zu bytes arrived", what, got, len);
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) pty_fail("%s: read: %s", what, n < 0 ? strerror(errno) : "EOF");
    got += (size_t)n;
  }
}

static void expect_bytes(int fd, const char* want, const char* what) {
  char buf[256];
  size_t len = strlen(want);
  read_exact(fd, buf, len, what);
  if (memcmp(buf, want, len) != 0) pty_fail("%s: got '%.*s', expected '%s'", what, (int)len, buf, want);
  int more = 0;
  if (ioctl(fd, FIONREAD, &more) == 0 && more > 0) pty_fail("%s: %d unexpected extra bytes", what, more);
}

int main(int argc, char** argv) {
  tp_init(argc, argv);
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) pty_fail("posix_openpt: %s", strerror(errno));
  int s = open(ptsname(m), O_RDWR | O_NOCTTY);
  if (s < 0) pty_fail("open slave: %s", strerror(errno));
  struct termios want;
  if (tcgetattr(s, &want) < 0) pty_fail("tcgetattr: %s", strerror(errno));
  want.c_iflag &= ~(tcflag_t)(ICRNL | IXON | BRKINT | INPCK | ISTRIP);
  want.c_oflag &= ~(tcflag_t)OPOST;
  want.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
  want.c_cc[VMIN] = 7;
  want.c_cc[VTIME] = 3;
  if (tcsetattr(s, TCSANOW, &want) < 0) pty_fail("tcsetattr: %s", strerror(errno));
  struct winsize ws = {33, 101, 0, 0};
  if (ioctl(m, TIOCSWINSZ, &ws) < 0) pty_fail("TIOCSWINSZ: %s", strerror(errno));

  int rep[2];
  if (pipe(rep) < 0) pty_fail("pipe: %s", strerror(errno));
  report_fd = rep[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);

  int sync[2];
  if (pipe(sync) < 0) pty_fail("pipe: %s", strerror(errno));
  pid_t leader = fork();
  g_leader = leader;
  if (leader < 0) pty_fail("fork: %s", strerror(errno));
  if (leader == 0) {
    close(m);
    close(rep[0]);
    close(sync[0]);
    if (setsid() < 0) child_fail("setsid: %s", strerror(errno));
    if (ioctl(s, TIOCSCTTY, 0) < 0) child_fail("TIOCSCTTY: %s", strerror(errno));
    pid_t fg = fork();
    if (fg < 0) child_fail("fork: %s", strerror(errno));
    if (fg == 0) {
      close(sync[1]);
      setpgid(0, 0);
      wait_for_go();
      check_session_member(s, "foreground member", getppid(), getpid());
      _exit(0);
    }
    setpgid(fg, fg);
    if (tcsetpgrp(s, fg) < 0) child_fail("tcsetpgrp: %s", strerror(errno));
    char fgbuf[32];
    int len = snprintf(fgbuf, sizeof fgbuf, "%d\n", (int)fg);
    if (write(sync[1], fgbuf, (size_t)len) != len) child_fail("sync: %s", strerror(errno));
    close(sync[1]);
    wait_for_go();
    check_session_member(s, "session leader", getpid(), fg);
    kill(fg, SIGUSR1);
    int status;
    if (waitpid(fg, &status, 0) != fg || !WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(1);
    _exit(0);
  }
  close(sync[1]);
  char fgbuf[32] = {0};
  if (read(sync[0], fgbuf, sizeof fgbuf - 1) <= 0) pty_fail("the session leader did not set up the terminal");
  pid_t fg = atoi(fgbuf);
  g_leader = leader;
  g_fg = fg;
  close(sync[0]);
  close(rep[1]);

  /* Queued both ways, unread until after the checkpoint. */
  if (write(m, kToSlave, strlen(kToSlave)) != (ssize_t)strlen(kToSlave)) pty_fail("write master: %s", strerror(errno));
  if (write(s, kToMaster, strlen(kToMaster)) != (ssize_t)strlen(kToMaster)) pty_fail("write slave: %s", strerror(errno));
  usleep(20000);
  int on = 1;
  if (ioctl(m, TIOCPKT, &on) < 0 || ioctl(s, TIOCEXCL) < 0) pty_fail("TIOCPKT/TIOCEXCL: %s", strerror(errno));
  tp_ready(argv);
  tp_wait_for_term(NULL);

  struct termios got;
  if (tcgetattr(s, &got) < 0) pty_fail("tcgetattr after restore: %s", strerror(errno));
  if (got.c_iflag != want.c_iflag || got.c_oflag != want.c_oflag || got.c_lflag != want.c_lflag ||
      got.c_cflag != want.c_cflag || got.c_cc[VMIN] != 7 || got.c_cc[VTIME] != 3)
    pty_fail("termios changed: iflag %#x/%#x oflag %#x/%#x lflag %#x/%#x cflag %#x/%#x VMIN %d VTIME %d", got.c_iflag,
            want.c_iflag, got.c_oflag, want.c_oflag, got.c_lflag, want.c_lflag, got.c_cflag, want.c_cflag,
            got.c_cc[VMIN], got.c_cc[VTIME]);
  struct winsize gw;
  if (ioctl(s, TIOCGWINSZ, &gw) < 0 || gw.ws_row != 33 || gw.ws_col != 101)
    pty_fail("window size %dx%d, expected 33x101", gw.ws_row, gw.ws_col);
  if (!isatty(m) || !isatty(s)) pty_fail("master or slave is no tty");
  struct stat sst, pst;
  if (fstat(s, &sst) < 0 || stat(ptsname(m), &pst) < 0 || sst.st_rdev != pst.st_rdev)
    pty_fail("the slave fd is not the slave of the master fd (%s)", ptsname(m));
  if (tp_tty_nr() != 0) pty_fail("this process got a controlling terminal: tty_nr %#x", tp_tty_nr());

  int pkt = 0, excl = 0;
  if (ioctl(m, TIOCGPKT, &pkt) < 0 || !pkt) pty_fail("packet mode of the master lost (%d)", pkt);
  if (ioctl(s, TIOCGEXCL, &excl) < 0 || !excl) pty_fail("the slave is no longer exclusive (%d)", excl);
  int off = 0;
  if (ioctl(m, TIOCPKT, &off) < 0) pty_fail("TIOCPKT off: %s", strerror(errno));
  expect_bytes(m, kToMaster, "bytes queued for the master");
  expect_bytes(s, kToSlave, "bytes queued for the slave");
  const char ping[] = "ping-1234", pong[] = "pong-5678";
  if (write(m, ping, strlen(ping)) < 0) pty_fail("write master: %s", strerror(errno));
  expect_bytes(s, ping, "master -> slave");
  if (write(s, pong, strlen(pong)) < 0) pty_fail("write slave: %s", strerror(errno));
  expect_bytes(m, pong, "slave -> master");

  kill(leader, SIGUSR1);
  int status;
  if (waitpid(leader, &status, 0) != leader) pty_fail("waitpid session leader: %s", strerror(errno));
  g_leader = g_fg = 0; /* gone: never signal those pids again */
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char msg[512] = {0};
    fcntl(rep[0], F_SETFL, O_NONBLOCK);
    if (read(rep[0], msg, sizeof msg - 1) < 0) strcpy(msg, "no message");
    pty_fail("session (leader %d, foreground %d) failed: %s", leader, fg, msg);
  }
  tp_pass();
}
